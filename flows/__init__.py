"""Prefect flows that run prepflow pipelines (see DESIGN.md)."""
