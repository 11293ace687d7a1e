"""A tiny expression language for per-element kernels: printed as CUDA C, or evaluated with an array module.

A kernel body is a straight-line list of statements in SSA form: every
:class:`Let` binds a new name, :class:`Count` adds 1 to a counter where a condition
holds, :class:`Out` writes an output. There are no branches, only :class:`Select`
(``c ? a : b``), so the same program is

- printed as the body of a CuPy ``ElementwiseKernel`` (:func:`to_cuda`), and
- evaluated over whole arrays with ``xp`` = NumPy or CuPy (:func:`evaluate`),

and the two cannot drift apart. Kinds: ``"f"`` (the compute float type ``R``),
``"i"`` (``long long``), ``"b"`` (``bool``).

>>> prog = [Let("t0", "f", Bin("*", Var("x"), Const(2.0, "f"))), Out("y", Var("t0"))]
>>> print(to_cuda(prog, real="double"))
const R t0 = (x * 0x1.0000000000000p+1);
y = t0;
>>> import numpy as np
>>> evaluate(prog, np, {"x": np.array([1.0, 2.5])}, real=np.float64).outputs["y"]
array([2., 5.])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

Kind = str  # "f" | "i" | "b"

#: unary operators: name -> (CUDA C for a double argument, CUDA C for a float argument)
_UNARY_C = {
    "neg": ("(-{0})", "(-{0})"),
    "not": ("(!{0})", "(!{0})"),
    "isnan": ("isnan({0})", "isnan({0})"),
    "isinf": ("isinf({0})", "isinf({0})"),
    "abs": ("fabs({0})", "fabsf({0})"),
    "log1p": ("log1p({0})", "log1pf({0})"),
    "exp": ("exp({0})", "expf({0})"),
    "log": ("log({0})", "logf({0})"),
    "to_real": ("((R)({0}))", "((R)({0}))"),
    "to_int": ("((long long)({0}))", "((long long)({0}))"),
    "round_f32": ("((R)(float)({0}))", "((R)(float)({0}))"),
}
_BINARY = {"+", "-", "*", "/", "<", "<=", ">", ">=", "==", "!=", "&&", "||"}


@dataclass(frozen=True)
class Var:
    """A name: a kernel parameter or an earlier :class:`Let`."""

    name: str


@dataclass(frozen=True)
class Const:
    """A literal of kind ``f`` (compute float), ``i`` (int64) or ``b`` (bool)."""

    value: float | int | bool
    kind: Kind


@dataclass(frozen=True)
class Un:
    """A unary operation (see ``_UNARY_C`` for the names)."""

    op: str
    a: Expr


@dataclass(frozen=True)
class Bin:
    """A binary operation: arithmetic, comparison, ``&&`` or ``||``."""

    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Select:
    """``cond ? a : b``."""

    cond: Expr
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Lookup:
    """Position of ``x`` in the sorted int64 table parameter ``table`` of length ``n``, or -1."""

    table: str
    n: int
    x: Expr


@dataclass(frozen=True)
class Bit:
    """Bit ``i`` of the packed little-endian bitmap parameter ``bits`` (Arrow validity)."""

    bits: str


Expr = Var | Const | Un | Bin | Select | Lookup | Bit


@dataclass(frozen=True)
class Let:
    """``const T name = expr;`` with ``T`` given by ``kind``."""

    name: str
    kind: Kind
    expr: Expr


@dataclass(frozen=True)
class Count:
    """Add 1 to ``counts[slot]`` where ``cond`` holds."""

    slot: int
    cond: Expr


@dataclass(frozen=True)
class Out:
    """Write ``expr`` to the output parameter ``name`` (converted to its dtype)."""

    name: str
    expr: Expr


@dataclass(frozen=True)
class Note:
    """A comment in the generated source (which step an operation comes from); evaluates to nothing."""

    text: str


Stmt = Let | Count | Out | Note

#: the counters parameter of every kernel
COUNTS = "cnt"


# ---------------------------------------------------------------- small constructors that fold constants


def and_(a: Expr, b: Expr) -> Expr:
    """``a && b``, folding the constants True/False."""
    for x, y in ((a, b), (b, a)):
        if isinstance(x, Const):
            return y if x.value else Const(False, "b")
    return Bin("&&", a, b)


def or_(a: Expr, b: Expr) -> Expr:
    """``a || b``, folding the constants True/False."""
    for x, y in ((a, b), (b, a)):
        if isinstance(x, Const):
            return Const(True, "b") if x.value else y
    return Bin("||", a, b)


def not_(a: Expr) -> Expr:
    """``!a``, folding constants."""
    return Const(not a.value, "b") if isinstance(a, Const) else Un("not", a)


def select(cond: Expr, a: Expr, b: Expr) -> Expr:
    """``cond ? a : b``, folding a constant condition or equal branches."""
    if isinstance(cond, Const):
        return a if cond.value else b
    return a if a == b else Select(cond, a, b)


# ---------------------------------------------------------------- CUDA C


def _c_const(c: Const, real: str) -> str:
    if c.kind == "b":
        return "true" if c.value else "false"
    if c.kind == "i":
        v = int(c.value)
        return "(-9223372036854775807LL - 1LL)" if v == -(2**63) else f"{v}LL"
    v = float(c.value)
    if math.isnan(v):
        return "((R)PF_NAN)"
    if math.isinf(v):
        return "((R)PF_INF)" if v > 0 else "((R)(-PF_INF))"
    if real == "float":
        import numpy as np

        return f"{float(np.float32(v)).hex()}f"
    return v.hex()


def _c(e: Expr, real: str) -> str:
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Const):
        return _c_const(e, real)
    if isinstance(e, Un):
        template = _UNARY_C[e.op][1 if real == "float" else 0]
        return template.format(_c(e.a, real))
    if isinstance(e, Bin):
        return f"({_c(e.a, real)} {e.op} {_c(e.b, real)})"
    if isinstance(e, Select):
        return f"({_c(e.cond, real)} ? {_c(e.a, real)} : {_c(e.b, real)})"
    if isinstance(e, Lookup):
        return f"pf_lookup({e.table}, {e.n}LL, {_c(e.x, real)})"
    if isinstance(e, Bit):
        return f"((({e.bits}[i >> 3]) >> (i & 7)) & 1)"
    raise TypeError(f"not an expression: {e!r}")


_C_TYPES = {"f": "R", "i": "long long", "b": "bool"}


def to_cuda(program: Sequence[Stmt], *, real: str) -> str:
    """The statements as the ``operation`` of a CuPy ``ElementwiseKernel``.

    ``R`` names the compute type (a ``typedef`` of ``real`` in the kernel's
    preamble); float literals are written for ``real``.

    >>> print(to_cuda([Count(0, Var("m"))], real="double"))
    if (m) atomicAdd(&cnt[0], 1ULL);
    """
    lines = []
    for s in program:
        if isinstance(s, Let):
            ctype = _C_TYPES[s.kind]
            lines.append(f"const {ctype} {s.name} = {_c(s.expr, real)};")
        elif isinstance(s, Count):
            lines.append(f"if ({_c(s.cond, real)}) atomicAdd(&{COUNTS}[{s.slot}], 1ULL);")
        elif isinstance(s, Note):
            lines.append(f"// {s.text}")
        else:
            lines.append(f"{s.name} = {_c(s.expr, real)};")
    return "\n".join(lines)


#: device helpers the kernels use; ``R`` is defined before this by the kernel builder
PREAMBLE = """\
#define PF_INF __longlong_as_double(0x7ff0000000000000ULL)
#define PF_NAN __longlong_as_double(0x7ff8000000000000ULL)
template <typename Table>
__device__ long long pf_lookup(const Table& table, long long n, long long x) {
    long long lo = 0, hi = n;
    while (lo < hi) {
        long long mid = (lo + hi) >> 1;
        if (table[mid] < x) lo = mid + 1; else hi = mid;
    }
    return (lo < n && table[lo] == x) ? lo : -1LL;
}
"""


# ---------------------------------------------------------------- array evaluation


@dataclass
class Evaluation:
    """What :func:`evaluate` returns: the outputs (arrays) and the counters (ints)."""

    outputs: dict[str, Any] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)


def _dtype(kind: Kind, xp: ModuleType, real: Any) -> Any:
    return {"f": real, "i": xp.int64, "b": xp.bool_}[kind]


def _full(xp: ModuleType, n: int, value: Any, dtype: Any) -> Any:
    return xp.full(n, value, dtype=dtype)


class _Evaluator:
    def __init__(self, xp: ModuleType, env: Mapping[str, Any], real: Any, n: int) -> None:
        self.xp, self.real, self.n = xp, real, n
        self.env: dict[str, Any] = dict(env)

    def __call__(self, e: Expr) -> Any:
        xp = self.xp
        if isinstance(e, Var):
            return self.env[e.name]
        if isinstance(e, Const):
            return _full(xp, self.n, e.value, _dtype(e.kind, xp, self.real))
        if isinstance(e, Un):
            a = self(e.a)
            if e.op == "neg":
                return -a
            if e.op == "not":
                return ~a
            if e.op == "to_real":
                return a.astype(self.real)
            if e.op == "to_int":
                return a.astype(xp.int64)
            if e.op == "round_f32":
                return a.astype(xp.float32).astype(self.real)
            fn = {"isnan": xp.isnan, "isinf": xp.isinf, "abs": xp.abs, "log1p": xp.log1p, "exp": xp.exp}
            return (fn.get(e.op) or xp.log)(a)
        if isinstance(e, Bin):
            a, b = self(e.a), self(e.b)
            if e.op == "&&":
                return a & b
            if e.op == "||":
                return a | b
            ops = {
                "+": xp.add,
                "-": xp.subtract,
                "*": xp.multiply,
                "/": xp.true_divide,
                "<": xp.less,
                "<=": xp.less_equal,
                ">": xp.greater,
                ">=": xp.greater_equal,
                "==": xp.equal,
                "!=": xp.not_equal,
            }
            return ops[e.op](a, b)
        if isinstance(e, Select):
            return xp.where(self(e.cond), self(e.a), self(e.b))
        if isinstance(e, Lookup):
            table, x = self.env[e.table], self(e.x)
            if e.n == 0:
                return _full(xp, self.n, -1, xp.int64)
            pos = xp.minimum(xp.searchsorted(table, x), e.n - 1)
            return xp.where(table[pos] == x, pos.astype(xp.int64), -1)
        if isinstance(e, Bit):
            bits = self.env[e.bits]
            idx = xp.arange(self.n)
            return ((bits[idx >> 3] >> (idx & 7).astype(xp.uint8)) & 1).astype(xp.bool_)
        raise TypeError(f"not an expression: {e!r}")


def evaluate(
    program: Sequence[Stmt], xp: ModuleType, env: Mapping[str, Any], *, real: Any, n: int | None = None
) -> Evaluation:
    """Evaluate ``program`` over whole arrays: ``env`` maps parameter names to arrays (or tables).

    ``n`` is the number of elements (default: the length of the first array in ``env``).
    Outputs keep their compute dtype; the caller converts them.
    """
    if n is None:
        n = len(next(iter(env.values())))
    ev = _Evaluator(xp, env, real, n)
    result = Evaluation()
    errstate = getattr(xp, "errstate", None)
    ctx = errstate(all="ignore") if errstate is not None else _Null()
    with ctx:
        for s in program:
            if isinstance(s, Let):
                ev.env[s.name] = ev(s.expr)
            elif isinstance(s, Count):
                result.counts[s.slot] = result.counts.get(s.slot, 0) + int(xp.count_nonzero(ev(s.cond)))
            elif isinstance(s, Out):
                result.outputs[s.name] = ev(s.expr)
    return result


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
