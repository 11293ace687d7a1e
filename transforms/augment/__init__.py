"""Augment steps."""

__all__: list[str] = []
