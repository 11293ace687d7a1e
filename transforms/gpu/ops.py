"""Step descriptions: what each GPU-capable fitted step does to each column, as kernel operations.

:func:`describe` reads a :class:`~transforms.base.Fitted` (the same plain state
the Polars path applies) and returns one operation per column, or the reason the
step has no GPU implementation. Each operation's :meth:`emit` writes the step's
Polars semantics (null vs NaN, +/-inf, the dtype casts of ``apply``) into a
kernel :class:`~transforms.gpu.kernels.Builder`; the output dtypes come from
the step's own ``apply`` on an empty frame, so they never disagree with Polars.

GPU-capable: ``impute/mean|median|most_frequent|constant`` on numeric columns
(with ``add_indicator``), the univariate outlier detectors with every action,
the affine scalers, ``scale/log``, ``scale/power`` (Yeo-Johnson) and
``encode/ordinal`` of integer-coded categories.

>>> import polars as pl
>>> from transforms import MinMaxScaler
>>> fitted = MinMaxScaler(columns=["x"]).fit(pl.DataFrame({"x": [1.0, 3.0]}))
>>> describe(fitted, pl.Schema({"x": pl.Float64}), index=0).ops
(Affine(step=0, column='x', center=1.0, scale=2.0, shift=0.0, clip=None),)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from transforms.base import Fitted
from transforms.encode.ordinal import FittedOrdinal
from transforms.gpu.expr import Bin, Const, Expr, Lookup, Select, Un, and_, not_, or_, select
from transforms.gpu.kernels import FLOATS, NUMPY_DTYPES, Builder, Unsupported
from transforms.impute.simple import FittedSimpleImputer
from transforms.outliers.bounds import FittedBounds, flag_name
from transforms.scale.affine import FittedAffine
from transforms.scale.log import FittedLog
from transforms.scale.power import FittedPower

_EPS = float(np.finfo(np.float64).eps)
_INT_RANGE = {
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
}


def _clip(x: Expr, lo: Const, hi: Const) -> Expr:
    """Polars ``clip``: NaN and null stay as they are."""
    return select(Bin("<", x, lo), lo, select(Bin(">", x, hi), hi, x))


def _div(b: Builder, x: Expr, c: float) -> Expr:
    """Polars' division by a float literal: multiplication by its reciprocal (bitwise the same result)."""
    return Bin("*", x, b.const(1.0 / c))


def _after_nan_first(x: Expr, op: str, c: float) -> Expr:
    """Polars comparison of a float with a constant: NaN compares greater than every number."""
    return or_(Un("isnan", x), Bin(op, x, Const(c, "f")))


@dataclass(frozen=True)
class Impute:
    """``impute/*``: NaN -> null, cast, fill nulls with ``value`` (None: no fill); optional indicator."""

    step: int
    column: str
    value: float | int | None
    out_dtype: str
    indicator: str | None = None

    def emit(self, b: Builder) -> None:
        missing = b.missing()
        b.count(self.step, f"imputed:{self.column}", missing)
        if self.indicator is not None:
            b.output("indicator", self.indicator, missing, "Boolean")
        if self.value is None:
            b.cast(self.out_dtype)
            return
        b.set_ok(and_(b.ok, not_(b.is_nan(b.x))))
        b.cast(self.out_dtype)
        fill = _literal(self.value, self.out_dtype)
        b.set_value(select(b.ok, b.x, fill), b.kind, b.dtype)
        b.ok = Const(True, "b")


def _literal(value: float | int, dtype: str) -> Const:
    """``pl.lit(value).cast(dtype)`` as a kernel constant; raises :class:`Unsupported` when it does not fit."""
    if dtype in FLOATS:
        return Const(float(np.float32(value)) if dtype == "Float32" else float(value), "f")
    if isinstance(value, float):
        raise Unsupported(f"a float fill value for an {dtype} column")
    lo, hi = _INT_RANGE[dtype]
    if not lo <= value <= hi:
        raise Unsupported(f"fill value {value} outside the range of {dtype}")
    return Const(int(value), "i")


@dataclass(frozen=True)
class Bounds:
    """``outliers/*``: outlying = not missing and outside ``[lower, upper]``; then clip, null, flag or drop."""

    step: int
    column: str
    lower: float
    upper: float
    action: str
    flag: str | None = None

    def emit(self, b: Builder) -> None:
        d = b.real_value()
        outside = or_(Bin("<", d, b.const(self.lower)), Bin(">", d, b.const(self.upper)))
        outlying = b.let("b", and_(b.ok, and_(not_(b.is_nan(d)), outside)))
        b.count(self.step, f"outliers:{self.column}", outlying)
        if self.action == "clip":
            b.cast("Float64" if b.kind == "i" else b.dtype)
            lo, hi = b.stored_const(self.lower), b.stored_const(self.upper)
            b.set_value(_clip(b.x, lo, hi), "f", b.dtype)
        elif self.action == "null":
            b.set_ok(and_(b.ok, not_(outlying)))
        elif self.action == "flag":
            b.output("flag", self.flag or flag_name(self.column), outlying, "Boolean")
        elif self.action == "drop":
            b.output("drop", self.column, outlying, "Boolean")
        else:
            raise Unsupported(f"outlier action {self.action!r}")


@dataclass(frozen=True)
class Affine:
    """``scale/standard|minmax|robust|maxabs``: ``(x - center) / scale (+ shift)``, optional clip."""

    step: int
    column: str
    center: float
    scale: float
    shift: float
    clip: tuple[float, float] | None

    def emit(self, b: Builder) -> None:
        out_dtype = b.dtype if b.kind == "f" else "Float64"
        d = b.real_value()
        r: Expr = _div(b, Bin("-", d, b.const(self.center)), self.scale)
        if self.shift:
            r = Bin("+", r, b.const(self.shift))
        if self.clip is not None:
            r = b.let("f", r)
            r = _clip(r, b.const(self.clip[0]), b.const(self.clip[1]))
        b.set_value(r, "f", out_dtype)


@dataclass(frozen=True)
class Log1p:
    """``scale/log``: ``log1p(x)`` where ``x > -1`` (NaN included), null below; counts values <= -1."""

    step: int
    column: str

    def emit(self, b: Builder) -> None:
        out_dtype = b.dtype if b.kind == "f" else "Float64"
        d = b.real_value()
        b.count(
            self.step,
            f"invalid_log_input:{self.column}",
            and_(b.ok, and_(not_(b.is_nan(d)), Bin("<=", d, b.const(-1.0)))),
        )
        b.set_ok(and_(b.ok, _after_nan_first(d, ">", -1.0) if b.kind == "f" else Bin(">", d, b.const(-1.0))))
        b.set_value(Un("log1p", d), "f", out_dtype)


@dataclass(frozen=True)
class YeoJohnson:
    """``scale/power``: the Yeo-Johnson branches of :func:`transforms.scale.power.yeo_johnson`, then standardize."""

    step: int
    column: str
    lmbda: float
    mean: float
    scale: float
    standardize: bool

    def emit(self, b: Builder) -> None:
        out_dtype = b.dtype if b.kind == "f" else "Float64"
        d = b.real_value()
        lm, mu = self.lmbda, 2.0 - self.lmbda
        positive = b.let("b", _after_nan_first(d, ">=", 0.0))
        t = b.let("f", Un("log1p", Un("abs", d)))
        y = b.let("f", select(positive, Bin("*", t, b.const(lm)), Bin("*", t, b.const(mu))))
        u = b.let("f", Un("exp", y))
        one = b.const(1.0)
        um1 = Bin("-", u, one)
        # Kahan's expm1, exactly as the Polars path writes it
        e = b.let(
            "f",
            Select(
                Bin("==", u, one),
                y,
                Select(
                    Bin("==", um1, b.const(-1.0)),
                    b.const(-1.0),
                    Select(Un("isinf", u), u, Bin("*", um1, Bin("/", y, Un("log", u)))),
                ),
            ),
        )
        pos = t if abs(lm) < _EPS else _div(b, e, lm)
        neg = Un("neg", t) if abs(mu) <= _EPS else _div(b, Un("neg", e), mu)
        out: Expr = select(positive, pos, neg)
        if self.standardize:
            out = _div(b, Bin("-", b.let("f", out), b.const(self.mean)), self.scale)
        b.set_value(out, "f", out_dtype)


@dataclass(frozen=True)
class Ordinal:
    """``encode/ordinal`` of an integer column: position among the sorted categories, Int64."""

    step: int
    column: str
    categories: tuple[int, ...]
    unknown: int
    missing: int | None

    def emit(self, b: Builder) -> None:
        if b.kind != "i":
            raise Unsupported("ordinal encoding of a non-integer column")
        if self.categories:
            idx = b.let("i", Lookup(b.table(self.categories), len(self.categories), b.x))
            known = Bin(">=", idx, Const(0, "i"))
            coded: Expr = select(known, idx, Const(self.unknown, "i"))
            b.count(self.step, f"unknown:{self.column}", and_(b.ok, not_(known)))
        else:
            coded = Const(self.unknown, "i")
            b.count(self.step, f"unknown:{self.column}", b.ok)
        if self.missing is None:
            b.set_value(coded, "i", "Int64")
        else:
            b.set_value(select(b.ok, coded, Const(self.missing, "i")), "i", "Int64")
            b.ok = Const(True, "b")


ColumnOp = Impute | Bounds | Affine | Log1p | YeoJohnson | Ordinal


@dataclass(frozen=True)
class StepOps:
    """A GPU-capable fitted step: its operations (one per column, in column order)."""

    index: int
    fitted: Fitted
    ops: tuple[ColumnOp, ...]
    drops: bool = False

    @property
    def label(self) -> str:
        """The step's label, as in reports."""
        return self.fitted.step.label


def dtype_name(dtype: pl.DataType) -> str:
    """The Polars dtype's name (``Float64``, ``Int32``, ...)."""
    return type(dtype).__name__ if not isinstance(dtype, type) else dtype.__name__


def describe(fitted: Fitted, schema: pl.Schema, *, index: int) -> StepOps:
    """The GPU operations of ``fitted`` applied to a frame of ``schema``.

    Raises :class:`~transforms.gpu.kernels.Unsupported` with the reason when the
    step (or one of its columns) has no GPU implementation.
    """
    if not fitted.columns:
        raise Unsupported("a step with no columns")
    for c in fitted.columns:
        if c not in schema:
            raise Unsupported(f"column '{c}' is not in the input")
        name = dtype_name(schema[c])
        ok = name in NUMPY_DTYPES and name != "Boolean"
        if not ok:
            raise Unsupported(f"column '{c}' has dtype {schema[c]}; the GPU path handles numeric columns")
    ops = _ops(fitted, schema, index)
    drops = isinstance(fitted, FittedBounds) and fitted.action == "drop"
    return StepOps(index=index, fitted=fitted, ops=ops, drops=drops)


def _ops(fitted: Fitted, schema: pl.Schema, i: int) -> tuple[ColumnOp, ...]:
    cols = fitted.columns
    if isinstance(fitted, FittedSimpleImputer):
        out = fitted.apply(pl.LazyFrame(schema=schema)).collect_schema()
        indicator = getattr(fitted.step, "add_indicator", False)
        ops = []
        for c, v in zip(cols, fitted.values, strict=True):
            if isinstance(v, (bool, str)):
                raise Unsupported(f"fill value {v!r} of column '{c}'")
            ops.append(Impute(i, c, v, dtype_name(out[c]), f"{c}__missing" if indicator else None))
        return tuple(ops)
    if isinstance(fitted, FittedBounds):
        return tuple(
            Bounds(i, c, lo, hi, fitted.action, flag_name(c) if fitted.action == "flag" else None)
            for c, lo, hi in zip(cols, fitted.lower, fitted.upper, strict=True)
        )
    if isinstance(fitted, FittedAffine):
        return tuple(
            Affine(i, c, ce, sc, sh, tuple(fitted.clip) if fitted.clip is not None else None)  # type: ignore[arg-type]
            for c, ce, sc, sh in zip(cols, fitted.center, fitted.scale, fitted.shift, strict=True)
        )
    if isinstance(fitted, FittedLog):
        return tuple(Log1p(i, c) for c in cols)
    if isinstance(fitted, FittedPower):
        standardize = bool(getattr(fitted.step, "standardize", True))
        return tuple(
            YeoJohnson(i, c, lm, m, s, standardize)
            for c, lm, m, s in zip(cols, fitted.lambdas, fitted.mean, fitted.scale, strict=True)
        )
    if isinstance(fitted, FittedOrdinal):
        ops = []
        for c, cats in zip(cols, fitted.categories, strict=True):
            if dtype_name(schema[c]) in FLOATS or any(isinstance(v, bool) or not isinstance(v, int) for v in cats):
                raise Unsupported(f"ordinal column '{c}' is not integer-coded")
            step = fitted.step
            ops.append(Ordinal(i, c, tuple(cats), int(step.unknown_value), step.missing_value))  # type: ignore[attr-defined]
        return tuple(ops)
    raise Unsupported(f"{type(fitted).__name__} has no GPU implementation")
