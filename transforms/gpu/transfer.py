"""Moving columns between Arrow (Polars) and the device, in chunks.

- :func:`host_column` takes a numeric Polars column as zero-copy NumPy views of
  its Arrow buffers: the values and the packed validity bitmap (None without nulls).
- :func:`chunk_rows` sizes row chunks from the device's free memory
  (``cudaMemGetInfo``) with a safety margin, for two chunks in flight.
- :class:`Stager` moves chunks through pinned host buffers on two CUDA streams
  (chunk ``k`` uses slot ``k % 2``), so the copy of one chunk overlaps the kernels
  and the copy back of the other. With NumPy (the CPU stand-in) it hands the views
  through unchanged.
- :func:`to_series` builds the result column as an Arrow array with a validity
  bitmap, then a Polars Series, without pandas.

>>> import polars as pl
>>> col = host_column(pl.Series("x", [1.0, None, 3.0]))
>>> col.values.tolist(), np.unpackbits(col.bits, bitorder="little")[:3].tolist()
([1.0, 0.0, 3.0], [1, 0, 1])
>>> to_series("x", "Float64", col.values, np.array([True, False, True])).to_list()
[1.0, None, 3.0]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from transforms.gpu.array import free_bytes, is_numpy
from transforms.gpu.kernels import NUMPY_DTYPES

#: fraction of free device memory that chunks may use (the rest: CuPy's pool, the kernels' scratch)
MEMORY_MARGIN = 0.5
#: rows per chunk of the NumPy stand-in (small enough to exercise the chunking)
NUMPY_CHUNK_ROWS = 1 << 20


@dataclass(frozen=True)
class HostColumn:
    """A numeric column on the host: ``values`` and packed ``bits`` (LSB first; None: no nulls)."""

    name: str
    dtype: str
    values: np.ndarray
    bits: np.ndarray | None

    def __len__(self) -> int:
        return len(self.values)

    def chunk(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Values and bitmap bytes of rows ``[start, stop)``; ``start`` must be a multiple of 8."""
        if start % 8:
            raise ValueError("chunks start at a multiple of 8 rows (whole bitmap bytes)")
        bits = None if self.bits is None else self.bits[start // 8 : (stop + 7) // 8]
        return self.values[start:stop], bits


def host_column(series: pl.Series) -> HostColumn:
    """Zero-copy views of a numeric Series' Arrow buffers (one copy if it has several chunks)."""
    dtype = type(series.dtype).__name__
    np_dtype = np.dtype(NUMPY_DTYPES[dtype])
    arr = series.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n, off = len(arr), arr.offset
    validity, data = arr.buffers()[:2]
    values = np.frombuffer(data, dtype=np_dtype)[off : off + n] if data is not None else np.empty(0, np_dtype)
    bits = None
    if arr.null_count:
        raw = np.frombuffer(validity, dtype=np.uint8)
        if off % 8 == 0:
            bits = raw[off // 8 : off // 8 + (n + 7) // 8]
        else:
            bits = np.packbits(np.unpackbits(raw, bitorder="little")[off : off + n], bitorder="little")
    return HostColumn(series.name, dtype, values, bits)


def chunk_rows(n: int, bytes_per_row: int, xp: ModuleType, *, requested: int | None = None) -> int:
    """Rows per chunk: ``requested``, or what fits twice in ``MEMORY_MARGIN`` of free memory.

    Always a multiple of 8 (whole validity bytes) and at least 8.

    >>> chunk_rows(100, 16, np, requested=13)
    16
    """
    if requested is not None:
        rows = requested
    elif is_numpy(xp):
        rows = NUMPY_CHUNK_ROWS
    else:
        rows = int(free_bytes(xp) * MEMORY_MARGIN) // (2 * max(bytes_per_row, 1))
    rows = max(8, min(rows, max(n, 8)))
    return (rows + 7) // 8 * 8


class Stager:
    """Double-buffered host<->device copies: two slots, each with a CUDA stream and pinned buffers.

    Use per chunk: ``begin(slot)`` (waits for that slot's previous chunk and
    delivers its results), ``upload``, run kernels inside ``stream(slot)``,
    ``download``; ``close()`` at the end delivers the rest. With NumPy every
    call is a plain view or copy.
    """

    def __init__(self, xp: ModuleType, slots: int = 2) -> None:
        self.xp = xp
        self.numpy = is_numpy(xp)
        self.streams = [] if self.numpy else [xp.cuda.Stream(non_blocking=True) for _ in range(slots)]
        self._pinned: dict[tuple[int, str], np.ndarray] = {}
        self._pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {i: [] for i in range(slots)}

    def _buffer(self, slot: int, key: str, like: np.ndarray) -> np.ndarray:
        buf = self._pinned.get((slot, key))
        if buf is None or buf.nbytes < like.nbytes or buf.dtype != like.dtype:
            mem = self.xp.cuda.alloc_pinned_memory(max(like.nbytes, 1))
            buf = np.frombuffer(mem, dtype=like.dtype, count=max(like.nbytes, 1) // like.dtype.itemsize)
            self._pinned[(slot, key)] = buf
        return buf[: like.size]

    @contextlib.contextmanager
    def stream(self, slot: int) -> Iterator[None]:
        """Kernels launched inside run on the slot's stream."""
        if self.numpy:
            yield
            return
        with self.streams[slot]:
            yield

    def begin(self, slot: int) -> None:
        """Wait for the slot's previous chunk and copy its results to their destinations."""
        if self.numpy:
            return
        self.streams[slot].synchronize()
        for buf, out in self._pending[slot]:
            np.copyto(out, buf)
        self._pending[slot].clear()

    def upload(self, slot: int, key: str, host: np.ndarray) -> Any:
        """The device copy of ``host`` (asynchronous on the slot's stream)."""
        if self.numpy:
            return host
        staged = self._buffer(slot, f"in:{key}", host)
        np.copyto(staged, host)
        dev = self.xp.empty(host.shape, dtype=host.dtype)
        dev.set(staged, stream=self.streams[slot])
        return dev

    def download(self, slot: int, key: str, dev: Any, out: np.ndarray) -> None:
        """Copy ``dev`` into ``out``; complete after the slot's next :meth:`begin` or :meth:`close`."""
        if self.numpy:
            out[...] = dev
            return
        staged = self._buffer(slot, f"out:{key}", out)
        dev.get(stream=self.streams[slot], out=staged, blocking=False)
        self._pending[slot].append((staged, out))

    def close(self) -> None:
        """Finish every slot."""
        for slot in range(len(self.streams)):
            self.begin(slot)


def to_series(name: str, dtype: str, values: np.ndarray, valid: np.ndarray | None) -> pl.Series:
    """A Polars Series from values and a validity mask (None: no nulls), through Arrow."""
    if dtype == "Boolean":
        return pl.Series(name, values, dtype=pl.Boolean)
    n = len(values)
    values = np.ascontiguousarray(values, dtype=NUMPY_DTYPES[dtype])
    if valid is None or bool(valid.all()):
        return pl.Series(name, values)
    bitmap = np.packbits(valid, bitorder="little")
    pa_type = pa.from_numpy_dtype(values.dtype)
    nulls = n - int(np.count_nonzero(valid))
    arr = pa.Array.from_buffers(pa_type, n, [pa.py_buffer(bitmap), pa.py_buffer(values)], null_count=nulls)
    out = pl.from_arrow(arr)
    assert isinstance(out, pl.Series)
    return out.alias(name)
