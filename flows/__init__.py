"""Prefect flows that run prepflow pipelines (see DESIGN.md).

``preprocess`` is the flow; ``build_deployment`` turns a spec's ``schedule`` and
``parameters`` into a deployment. Both are imported on first use, so importing
``flows`` (as the ``prepflow`` console script does) does not import Prefect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.deployments import build_deployment
    from flows.flow import preprocess

__all__ = ["build_deployment", "preprocess"]


def __getattr__(name: str) -> Any:
    if name == "preprocess":
        from flows.flow import preprocess

        return preprocess
    if name == "build_deployment":
        from flows.deployments import build_deployment

        return build_deployment
    raise AttributeError(f"module 'flows' has no attribute {name!r}")
