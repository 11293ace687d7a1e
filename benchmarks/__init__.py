"""Reproducible benchmarks of prepflow against scikit-learn, pandas and hand-written Polars.

Run ``python -m benchmarks --help``; see ``benchmarks/README.md``. This package
imports nothing heavy at import time: each measured variant runs in a fresh
subprocess (:mod:`benchmarks.worker`) that imports only its own libraries.
"""
