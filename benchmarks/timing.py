"""Where a variant's read ends: the worker splits a run into reading and computing.

A variant's ``work`` calls :func:`loaded` right after it has read its input (in case 7
also its fitted artifact). The worker then reports ``load_s`` (from the start of the
work to the mark), ``compute_s`` (from the mark to the end: fit and transform on data
in memory) and ``rss_loaded`` (the resident set at the mark) beside ``work_s``. The
split shows what reading costs each variant: scikit-learn reads raw ``.npy``, the
others decode (uncompressed) Parquet, so the whole run compares formats as well as
engines. A variant that does not call it (the scan, the floor) has no split.

>>> start()
>>> loaded()
>>> sorted(mark())
['loaded_at', 'rss_loaded']
"""

from __future__ import annotations

import os
import time

_mark: dict[str, float] = {}


def rss_now() -> int:
    """Current resident set size in bytes (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def start() -> None:
    """Forget the last mark (the worker calls this before each run of the work)."""
    _mark.clear()


def loaded() -> None:
    """Mark the end of the read: the input is in memory, computing starts."""
    _mark["loaded_at"] = time.perf_counter()
    _mark["rss_loaded"] = rss_now()


def mark() -> dict[str, float]:
    """The mark of the current run (empty when the work did not call :func:`loaded`)."""
    return dict(_mark)
