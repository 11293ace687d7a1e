"""Encode steps."""

__all__: list[str] = []
