"""The array module (``xp``): CuPy on a CUDA device, NumPy as the CPU stand-in; device detection.

Nothing here raises when CuPy is missing or sees no device: :func:`detect` says
why in :attr:`Device.reason`, and callers decide (the engine errors for
``backend: cupy``, falls back to Polars for ``auto``).

>>> dev = detect()
>>> isinstance(dev.available, bool) and (dev.available or bool(dev.reason))
True
>>> array_module("numpy").__name__
'numpy'
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

XpName = Literal["numpy", "cupy"]

INSTALL_HINT = "install the GPU extra: pip install 'prepflow[gpu]' (CuPy for CUDA 12)"


@dataclass(frozen=True)
class Device:
    """What :func:`detect` found: a usable CUDA device, or why there is none."""

    available: bool
    reason: str = ""
    name: str | None = None
    total_bytes: int = 0
    free_bytes: int = 0
    cupy_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports."""
        return {
            "available": self.available,
            "reason": self.reason or None,
            "name": self.name,
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "cupy": self.cupy_version,
        }


def _cupy() -> ModuleType | None:
    try:
        return importlib.import_module("cupy")
    except Exception:  # ImportError, or a CuPy build that fails to load its CUDA libraries
        return None


@functools.cache
def detect() -> Device:
    """Find a CUDA device through CuPy; never raises (the result is cached per process)."""
    cp = _cupy()
    if cp is None:
        return Device(False, f"CuPy is not installed or cannot load; {INSTALL_HINT}")
    try:
        count = cp.cuda.runtime.getDeviceCount()
        if count < 1:
            return Device(False, "CuPy sees no CUDA device", cupy_version=cp.__version__)
        free, total = cp.cuda.runtime.memGetInfo()
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        name = props["name"].decode() if isinstance(props.get("name"), bytes) else str(props.get("name"))
    except Exception as exc:  # CUDARuntimeError without a driver, and the like
        return Device(False, f"CuPy cannot use a CUDA device: {exc}", cupy_version=getattr(cp, "__version__", None))
    return Device(True, "", name, int(total), int(free), cp.__version__)


def array_module(name: XpName) -> ModuleType:
    """``numpy`` or ``cupy`` (the latter only where :func:`detect` found a device)."""
    if name == "numpy":
        return np
    dev = detect()
    if not dev.available:
        raise RuntimeError(dev.reason)
    return importlib.import_module("cupy")


def is_numpy(xp: ModuleType) -> bool:
    """Whether ``xp`` is NumPy (the CPU stand-in)."""
    return xp is np


def to_host(xp: ModuleType, arr: Any) -> np.ndarray:
    """A NumPy array of ``arr`` (a copy from the device with CuPy)."""
    return arr if is_numpy(xp) else xp.asnumpy(arr)


def free_bytes(xp: ModuleType) -> int:
    """Memory a chunk may use: the device's free memory plus what CuPy's pool holds, or host memory for NumPy."""
    if is_numpy(xp):
        import psutil

        return int(psutil.virtual_memory().available)
    free, _ = xp.cuda.runtime.memGetInfo()
    return int(free) + int(xp.get_default_memory_pool().free_bytes())


def synchronize(xp: ModuleType) -> None:
    """Wait for the device (a no-op for NumPy); used around timings."""
    if not is_numpy(xp):
        xp.cuda.Device().synchronize()
