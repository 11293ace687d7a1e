"""Outliers steps."""

__all__: list[str] = []
