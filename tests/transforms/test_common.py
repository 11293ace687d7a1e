"""Checks every registered step against the common contract (like sklearn's check_estimator).

Discovered from the registry, not a hand-kept list: a new step is checked as soon
as it registers. ``PARAMS`` only supplies what a step cannot default (a target,
a grouping column).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from transforms import FitError, Fitted, registry
from transforms.base import Step

PARAMS: dict[tuple[str, str], dict] = {
    ("impute", "group"): {"by": "city"},
    ("scale", "log"): {"columns": ["c"]},
    ("augment", "smote"): {"columns": ["c"]},
}
TARGET = "label"

ENTRIES = registry.entries()
IDS = [f"{e.kind}/{e.method}" for e in ENTRIES]


def make(entry: registry.Entry) -> Step:
    return entry.cls(**{**PARAMS.get((entry.kind, entry.method), {}), **entry.fixed})


@pytest.fixture
def frame() -> pl.DataFrame:
    rng = np.random.default_rng(7)
    n = 120
    a = rng.normal(0, 1, n)
    a[[4, 9]] = np.nan
    a[11] = 40.0
    return pl.DataFrame(
        {
            "a": a,
            "b": rng.lognormal(1, 0.5, n),
            "c": rng.integers(0, 50, n),
            "city": rng.choice(["x", "y", "z"], n).tolist(),
            "label": (np.arange(n) % 6 == 0).astype(np.int64),
        }
    ).with_columns(
        pl.when(pl.int_range(n) % 7 == 0).then(None).otherwise(pl.col("a")).alias("a"),
        pl.when(pl.int_range(n) % 10 == 0).then(None).otherwise(pl.col("city")).alias("city"),
    )


@pytest.fixture(params=ENTRIES, ids=IDS)
def entry(request) -> registry.Entry:
    return request.param


def test_registered_with_description_and_docstring(entry):
    assert entry.description
    assert entry.cls.__doc__ and ">>>" in (entry.cls.__doc__ or "") + (__import__(entry.cls.__module__).__doc__ or "")


def test_fit_returns_fitted_state(entry, frame):
    fitted = make(entry).fit(frame, target=TARGET)
    assert isinstance(fitted, Fitted) and isinstance(fitted, make(entry).fitted_class)
    assert fitted.step.kind == entry.kind and fitted.step.method == entry.method


def test_state_round_trips_through_plain_json(entry, frame):
    fitted = make(entry).fit(frame, target=TARGET)
    text = json.dumps(fitted.to_dict(), allow_nan=False)
    again = Fitted.from_dict(json.loads(text))
    assert again.to_dict() == fitted.to_dict()
    for train in (False, True):
        assert again.transform(frame, train=train).equals(fitted.transform(frame, train=train))


def test_lazy_in_lazy_out_without_collecting(entry, frame):
    fitted = make(entry).fit(frame, target=TARGET)
    calls = []

    def spy(s: pl.Series) -> pl.Series:
        calls.append(len(s))
        return s

    lf = frame.lazy().with_columns(pl.col("b").map_batches(spy, return_dtype=pl.Float64))
    for train in (False, True):
        out = fitted.transform(lf, train=train)
        assert isinstance(out, pl.LazyFrame)
        assert calls == [], f"transform(train={train}) executed the query"
        out.collect_schema()
        assert calls == []


def test_eager_equals_lazy(entry, frame):
    fitted = make(entry).fit(frame.lazy(), target=TARGET)
    for train in (False, True):
        assert fitted.transform(frame.lazy(), train=train).collect().equals(fitted.transform(frame, train=train))


def test_deterministic(entry, frame):
    one = make(entry).fit(frame, target=TARGET)
    two = make(entry).fit(frame, target=TARGET)
    assert one.to_dict() == two.to_dict()
    assert one.transform(frame, train=True).equals(two.transform(frame, train=True))


def test_keeps_rows_and_untouched_columns(entry, frame):
    fitted = make(entry).fit(frame, target=TARGET)
    out = fitted.transform(frame, train=False)
    if not fitted.changes_rows:
        assert out.height == frame.height
    if out.height == frame.height:
        touched = set(fitted.reads()) | set(fitted.columns)
        for c in frame.columns:
            if c not in touched and c in out.columns:
                assert out[c].equals(frame[c]), f"{c} changed although the step was not given it"


def test_does_not_modify_its_input(entry, frame):
    before = frame.clone()
    make(entry).fit_transform(frame, target=TARGET)
    assert frame.equals(before)


def test_empty_frame(entry, frame):
    empty = frame.head(0)
    try:
        fitted = make(entry).fit(empty, target=TARGET)
    except FitError:
        return  # refusing to fit on no data is allowed, with a clear error
    out = fitted.transform(empty)
    assert out.height == 0
