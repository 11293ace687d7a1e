"""One fused elementwise kernel per column: a chain of step operations built into one program.

A :class:`Chain` is a column's operations from consecutive steps (impute, clip or
null-out, scale, log, power, ordinal lookup). :func:`build` turns it into a
:class:`Program` in the little language of :mod:`transforms.gpu.expr`, with the
column's value and validity threaded through every operation, so that:

- :meth:`Program.cuda` is the CUDA C of one CuPy ``ElementwiseKernel`` that reads
  the values once (and the Arrow validity bitmap), applies every step and writes
  values, validity, indicator/flag columns and event counters (imputed values,
  outliers, ...) in a single pass over device memory;
- :meth:`Program.run` runs it: compiled with CuPy on a device, or evaluated with
  NumPy on the CPU, where tests compare it with the Polars path.

>>> from transforms.gpu.ops import Affine
>>> chain = Chain("x", "Float64", (Affine(step=0, column="x", center=1.0, scale=2.0, shift=0.0, clip=None),))
>>> prog = build(chain)
>>> print(prog.cuda().operation)
const R t0 = ((R)(xin));
// step 0: Affine of 'x'
const R t1 = ((t0 - 0x1.0000000000000p+0) * 0x1.0000000000000p-1);
yout = t1;
>>> import numpy as np
>>> prog.run(np, {"xin": np.array([1.0, 5.0])}).outputs["yout"]
array([0., 2.])
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from transforms.gpu.expr import (
    COUNTS,
    PREAMBLE,
    Bit,
    Const,
    Count,
    Evaluation,
    Expr,
    Let,
    Note,
    Out,
    Stmt,
    Un,
    Var,
    and_,
    evaluate,
    not_,
    or_,
    select,
    to_cuda,
)

#: Polars dtype name -> NumPy dtype name, for the dtypes the GPU path handles
NUMPY_DTYPES = {
    "Float64": "float64",
    "Float32": "float32",
    "Int8": "int8",
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "UInt8": "uint8",
    "UInt16": "uint16",
    "UInt32": "uint32",
    "Boolean": "bool",
}
FLOATS = ("Float64", "Float32")

#: how a chain's input validity arrives: no nulls, an Arrow bitmap, or a byte mask
VALIDITY_MODES = ("none", "bits", "bytes")


class Unsupported(Exception):
    """An operation the GPU path does not implement for this input; the step runs on Polars."""


class ColumnOp(Protocol):
    """One step's operation on one column (see :mod:`transforms.gpu.ops`)."""

    step: int
    column: str

    def emit(self, b: Builder) -> None:
        """Append the operation's statements to ``b``."""


@dataclass(frozen=True)
class OutputSpec:
    """An output parameter: ``role`` is value, validity, indicator, flag or drop."""

    param: str
    dtype: str
    role: str
    column: str


@dataclass
class Builder:
    """The state threaded through a chain while it is built: current value, kind, dtype and validity.

    ``x`` is the value (kind ``f``: compute float, ``i``: int64), ``dtype`` the
    Polars dtype the value is stored in after the last step, ``ok`` true where it
    is not null, ``alive`` true for rows that no earlier ``drop`` removed (only
    those are counted).
    """

    real: str
    x: Expr
    kind: str
    dtype: str
    ok: Expr
    alive: Expr
    stmts: list[Stmt] = field(default_factory=list)
    counts: list[tuple[int, str]] = field(default_factory=list)
    outputs: list[OutputSpec] = field(default_factory=list)
    exprs: dict[str, Expr] = field(default_factory=dict)
    tables: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _n: int = 0

    def let(self, kind: str, expr: Expr) -> Expr:
        """Bind ``expr`` to a fresh name (constants and names are returned as they are)."""
        if isinstance(expr, (Var, Const)):
            return expr
        name = f"t{self._n}"
        self._n += 1
        self.stmts.append(Let(name, kind, expr))
        return Var(name)

    def real_value(self) -> Expr:
        """The value as the compute float (Polars ``cast(pl.Float64)``)."""
        return self.x if self.kind == "f" else self.let("f", Un("to_real", self.x))

    def is_nan(self, x: Expr) -> Expr:
        """``isnan(x)`` for float values, False for integers."""
        return Un("isnan", x) if self.kind == "f" else Const(False, "b")

    def missing(self) -> Expr:
        """True where the value is null, or NaN (``transforms.missing.is_missing``)."""
        return self.let("b", or_(not_(self.ok), self.is_nan(self.x)))

    def const(self, value: float) -> Const:
        """A float constant of the compute type."""
        return Const(float(value), "f")

    def stored_const(self, value: float) -> Const:
        """A float constant as Polars casts it to the current float dtype (Float32 rounds)."""
        return Const(float(np.float32(value)) if self.dtype == "Float32" else float(value), "f")

    def set_value(self, expr: Expr, kind: str, dtype: str) -> None:
        """The step's result, rounded to ``dtype`` as Polars' cast at the end of the step does."""
        if kind == "f" and dtype == "Float32" and self.real == "double":
            expr = Un("round_f32", expr)
        self.x, self.kind, self.dtype = self.let(kind, expr), kind, dtype

    def set_ok(self, ok: Expr) -> None:
        """New validity."""
        self.ok = self.let("b", ok)

    def cast(self, dtype: str) -> None:
        """Polars ``cast(dtype)`` of the value (int -> float, Float32 -> Float64)."""
        if dtype == self.dtype:
            return
        if dtype in FLOATS and self.kind == "i":
            self.set_value(Un("to_real", self.x), "f", dtype)
        elif dtype == "Float64" and self.dtype == "Float32":
            self.dtype = dtype
        else:
            raise Unsupported(f"cast from {self.dtype} to {dtype}")

    def count(self, step: int, key: str, cond: Expr) -> None:
        """Count rows (alive ones) where ``cond`` holds, as the step's metric ``key``."""
        self.counts.append((step, key))
        self.stmts.append(Count(len(self.counts) - 1, and_(self.alive, cond)))

    def output(self, role: str, column: str, expr: Expr, dtype: str) -> None:
        """An extra output column: an indicator, a flag, or a drop mask."""
        param = f"aux{len(self.outputs)}"
        self.outputs.append(OutputSpec(param, dtype, role, column))
        self.exprs[param] = expr

    def table(self, values: Sequence[int]) -> str:
        """A raw int64 lookup table parameter holding ``values`` (sorted)."""
        name = f"tab{len(self.tables)}"
        self.tables[name] = tuple(int(v) for v in values)
        return name


@dataclass(frozen=True)
class Chain:
    """A column's operations, in step order, fused into one kernel.

    ``validity``: how the input's nulls arrive (``none``, Arrow ``bits``, or
    ``bytes``); ``counted``: whether an ``alive`` mask (rows not dropped by an
    earlier step) limits the counters; ``precision``: ``float64`` or ``float32``
    compute.
    """

    column: str
    in_dtype: str
    ops: tuple[Any, ...]
    validity: str = "none"
    counted: bool = False
    precision: str = "float64"


@dataclass(frozen=True)
class KernelSource:
    """What ``cupy.ElementwiseKernel`` takes."""

    in_params: str
    out_params: str
    operation: str
    name: str
    preamble: str

    @property
    def text(self) -> str:
        """All of it, for inspection and as the cache key."""
        return "\n".join((self.preamble, self.in_params, self.out_params, self.operation))


@dataclass(frozen=True)
class Program:
    """A built chain: statements, parameters, outputs and what each counter counts."""

    chain: Chain
    stmts: tuple[Stmt, ...]
    inputs: tuple[tuple[str, str], ...]  # (name, numpy dtype); raw ones listed in ``raw``
    raw: frozenset[str]
    outputs: tuple[OutputSpec, ...]
    counts: tuple[tuple[int, str], ...]
    tables: Mapping[str, tuple[int, ...]]

    @property
    def real(self) -> str:
        """The C compute type."""
        return "float" if self.chain.precision == "float32" else "double"

    def cuda(self) -> KernelSource:
        """The CUDA C of the fused kernel (a CuPy ``ElementwiseKernel``)."""
        ins = ", ".join(f"{'raw ' if n in self.raw else ''}{t} {n}" for n, t in self.inputs)
        outs = [f"{NUMPY_DTYPES[o.dtype]} {o.param}" for o in self.outputs]
        outs.append(f"raw uint64 {COUNTS}")
        preamble = f"typedef {self.real} R;\n{PREAMBLE}"
        body = to_cuda(self.stmts, real=self.real)
        name = f"prepflow_{_ident(self.chain.column)}"
        return KernelSource(ins, ", ".join(outs), body, name, preamble)

    def run(self, xp: ModuleType, arrays: Mapping[str, Any], *, n: int | None = None) -> Evaluation:
        """Evaluate with ``xp`` (NumPy on the CPU): outputs converted to their dtypes.

        ``arrays`` maps input parameter names (``xin``, ``vbits``/``vin``, ``alive``)
        to arrays; lookup tables are added from the program.
        """
        env = dict(arrays)
        env.update({k: xp.asarray(np.asarray(v, dtype=np.int64)) for k, v in self.tables.items()})
        real = xp.float32 if self.chain.precision == "float32" else xp.float64
        n = len(arrays["xin"]) if n is None else n
        ev = evaluate(self.stmts, xp, env, real=real, n=n)
        ev.outputs = {o.param: ev.outputs[o.param].astype(NUMPY_DTYPES[o.dtype], copy=False) for o in self.outputs}
        return ev


def _ident(name: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in name)[:40]
    return out or "col"


def build(chain: Chain) -> Program:
    """Build the program of ``chain`` (see the module docstring).

    Raises :class:`Unsupported` when an operation cannot run on this input dtype.
    """
    if chain.in_dtype not in NUMPY_DTYPES or chain.in_dtype == "Boolean":
        raise Unsupported(f"dtype {chain.in_dtype}")
    if chain.validity not in VALIDITY_MODES:
        raise ValueError(f"validity must be one of {VALIDITY_MODES}")
    real = "float" if chain.precision == "float32" else "double"
    kind = "f" if chain.in_dtype in FLOATS else "i"
    inputs: list[tuple[str, str]] = [("xin", NUMPY_DTYPES[chain.in_dtype])]
    raw: set[str] = set()
    b = Builder(real=real, x=Var("xin"), kind=kind, dtype=chain.in_dtype, ok=Const(True, "b"), alive=Const(True, "b"))
    b.x = b.let(kind, Un("to_real" if kind == "f" else "to_int", Var("xin")))
    if chain.validity == "bits":
        inputs.append(("vbits", "uint8"))
        raw.add("vbits")
        b.ok = b.let("b", Bit("vbits"))
    elif chain.validity == "bytes":
        inputs.append(("vin", "bool"))
        b.ok = Var("vin")
    if chain.counted:
        inputs.append(("alive", "bool"))
        b.alive = Var("alive")
    for op in chain.ops:
        b.stmts.append(Note(f"step {op.step}: {type(op).__name__} of '{chain.column}'"))
        op.emit(b)
    for name in b.tables:
        inputs.append((name, "int64"))
        raw.add(name)
    zero = Const(0.0 if b.kind == "f" else 0, b.kind)
    outputs = [OutputSpec("yout", b.dtype, "value", chain.column)]
    stmts = list(b.stmts)
    stmts.append(Out("yout", select(b.ok, b.x, zero) if not isinstance(b.ok, Const) else b.x))
    if not isinstance(b.ok, Const):
        outputs.append(OutputSpec("vout", "Boolean", "validity", chain.column))
        stmts.append(Out("vout", b.ok))
    elif not b.ok.value:
        raise Unsupported("a column that is always null")
    for o in b.outputs:
        outputs.append(o)
        stmts.append(Out(o.param, b.exprs[o.param]))
    return Program(chain, tuple(stmts), tuple(inputs), frozenset(raw), tuple(outputs), tuple(b.counts), b.tables)


@functools.cache
def _compiled(source: KernelSource) -> Any:
    import cupy

    return cupy.ElementwiseKernel(
        source.in_params,
        source.out_params,
        source.operation,
        source.name,
        preamble=source.preamble,
        options=("--fmad=false",),
    )


def launch(program: Program, xp: ModuleType, arrays: Mapping[str, Any], counts: Any, n: int) -> dict[str, Any]:
    """Run ``program`` on ``n`` elements; add its counters into ``counts`` (an int64/uint64 array).

    With CuPy the fused kernel is compiled once per distinct source and launched on
    the current stream; with NumPy the same program is evaluated with arrays.
    Returns the output arrays by parameter name.
    """
    if xp.__name__ == "numpy":
        ev = program.run(xp, arrays, n=n)
        for slot, value in ev.counts.items():
            counts[slot] += value
        return ev.outputs
    kernel = _compiled(program.cuda())
    ins = [
        arrays[name] if name not in program.tables else _device_table(xp, program.tables[name])
        for name, _ in program.inputs
    ]
    outs = [xp.empty(n, dtype=NUMPY_DTYPES[o.dtype]) for o in program.outputs]
    kernel(*ins, *outs, counts)
    return {o.param: arr for o, arr in zip(program.outputs, outs, strict=True)}


def _device_table(xp: ModuleType, values: tuple[int, ...]) -> Any:
    # a table of length 0 is never read (Lookup is not emitted for it); CuPy needs a real buffer
    return xp.asarray(np.asarray(values or (0,), dtype=np.int64))
