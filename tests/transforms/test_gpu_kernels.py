"""The generated CUDA C of the fused kernels: structure, values, and (where a toolkit is present) compilation.

- structure: every step of a chain appears in the source, in pipeline order, with
  its constants;
- values: the kernel body is compiled as C++ for the host (g++, with the few CUDA
  names CuPy provides defined as plain C++) and run over the same arrays the NumPy
  evaluation of the program sees; outputs and counters must agree;
- compilation for a GPU: with ``nvcc`` and CuPy's headers (``PREPFLOW_CUPY_INCLUDE``
  or an installed CuPy), the kernel is wrapped the way CuPy wraps an
  ``ElementwiseKernel`` and compiled to PTX. Skipped otherwise.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from transforms import (
    IQROutliers,
    LogScaler,
    MinMaxScaler,
    OrdinalEncoder,
    Pipeline,
    PowerScaler,
    RobustScaler,
    SimpleImputer,
    ZScoreOutliers,
)
from transforms.gpu.execute import GpuSegment
from transforms.gpu.kernels import Program
from transforms.gpu.planner import plan_steps

_C = {
    "float64": "double",
    "float32": "float",
    "int8": "signed char",
    "int16": "short",
    "int32": "int",
    "int64": "long long",
    "uint8": "unsigned char",
    "uint16": "unsigned short",
    "uint32": "unsigned int",
    "bool": "bool",
    "uint64": "unsigned long long",
}


def _frame(n: int = 257) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, n)
    x[::9] = np.nan
    x[1], x[2] = np.inf, -np.inf
    y = rng.lognormal(0, 1, n).astype(np.float32)
    return pl.DataFrame(
        {"x": x, "y": pl.Series(y, dtype=pl.Float32), "k": rng.integers(0, 6, n), "z": rng.integers(-3, 40, n)}
    ).with_columns(
        pl.when(pl.int_range(pl.len()) % 4 == 0).then(None).otherwise(pl.col(c)).alias(c) for c in ("x", "y", "k", "z")
    )


def _programs(precision: str = "float64") -> list[Program]:
    df = _frame()
    steps = [
        SimpleImputer(columns=["x", "y", "z"], strategy="median", add_indicator=True),
        IQROutliers(columns=["x", "z"], k=0.5, action="clip"),
        ZScoreOutliers(columns=["y"], threshold=1.0, action="null"),
        RobustScaler(columns=["x"]),
        MinMaxScaler(columns=["z"], clip=True),
        PowerScaler(columns=["y"]),
        LogScaler(columns=["z"]),
        OrdinalEncoder(columns=["k"], missing_value=-9),
        ZScoreOutliers(columns=["x", "y"], threshold=1.2, action="drop"),
    ]
    fitted = Pipeline(steps).fit(df.with_columns(pl.col("z").abs()))
    plan = plan_steps(fitted, df.schema, backend="numpy", precision=precision)
    seg = GpuSegment([p.ops for p in plan.placements], df.schema, xp=np, precision=precision)  # type: ignore[misc]
    return [k.program for ks in seg.programs({"x": True, "y": True, "k": True, "z": True}) for k in ks]


def test_source_has_every_step_in_order() -> None:
    progs = {p.chain.column: p for p in _programs()}
    src = progs["x"].cuda()
    notes = [line for line in src.operation.splitlines() if line.startswith("// step")]
    assert notes == [
        "// step 0: Impute of 'x'",
        "// step 1: Bounds of 'x'",
        "// step 3: Affine of 'x'",
        "// step 8: Bounds of 'x'",
    ]
    assert "atomicAdd(&cnt[0], 1ULL)" in src.operation  # imputed:x
    assert src.in_params == "float64 xin, raw uint8 vbits"
    assert src.out_params.split(", ")[0] == "float64 yout"
    assert "raw uint64 cnt" in src.out_params
    # one kernel per column: the ordinal lookup table travels as a raw parameter
    k = progs["k"].cuda()
    assert "raw int64 tab0" in k.in_params and "pf_lookup(tab0" in k.operation
    assert "typedef double R;" in k.preamble
    y = progs["y"].cuda().operation
    assert y.index("Impute") < y.index("Bounds") < y.index("YeoJohnson")
    assert "log1p(" in y and "exp(" in y
    assert "typedef float R;" in _programs("float32")[0].cuda().preamble


def _host_cpp(prog: Program) -> str:
    src = prog.cuda()
    params, body = [], []
    for name, dtype in prog.inputs:
        if name in prog.raw:
            params.append(f"const {_C[dtype]}* {name}")
        else:
            params.append(f"const {_C[dtype]}* {name}_p")
            body.append(f"const {_C[dtype]} {name} = {name}_p[i];")
    for o in prog.outputs:
        t = _C[{"Float64": "float64", "Float32": "float32", "Boolean": "bool"}.get(o.dtype, o.dtype.lower())]
        params.append(f"{t}* {o.param}_p")
        body.append(f"{t}& {o.param} = {o.param}_p[i];")
    params.append("unsigned long long* cnt")
    return "\n".join(
        [
            "#include <cmath>",
            "#include <cstring>",
            "using std::isnan; using std::isinf;",
            "#define __device__",
            "static inline double __longlong_as_double(unsigned long long v) "
            "{ double d; std::memcpy(&d, &v, 8); return d; }",
            "static inline void atomicAdd(unsigned long long* p, unsigned long long v) { *p += v; }",
            src.preamble,
            f'extern "C" void run(long long n, {", ".join(params)}) {{',
            "  for (long long i = 0; i < n; ++i) {",
            *("    " + line for line in body),
            *("    " + line for line in src.operation.splitlines()),
            "  }",
            "}",
        ]
    )


def _inputs(prog: Program, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, dtype in prog.inputs:
        if name == "xin":
            if dtype.startswith("float"):
                v = rng.normal(2, 3, n)
                v[::7] = np.nan
                v[3], v[4] = np.inf, -np.inf
                arrays[name] = v.astype(dtype)
            else:
                arrays[name] = rng.integers(-5, 40, n).astype(dtype)
        elif name == "vbits":
            arrays[name] = np.packbits(rng.random(n) > 0.2, bitorder="little")
        elif name in ("vin", "alive"):
            arrays[name] = rng.random(n) > 0.2
    return arrays


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to run the generated C on the host")
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_generated_c_matches_numpy_evaluation(tmp_path: Path, precision: str) -> None:
    rng = np.random.default_rng(7)
    n = 301
    for j, prog in enumerate(_programs(precision)):
        src = tmp_path / f"k{j}.cpp"
        lib = tmp_path / f"k{j}.so"
        src.write_text(_host_cpp(prog))
        cmd = ["g++", "-std=c++17", "-O1", "-ffp-contract=off", "-shared", "-fPIC", str(src), "-o", str(lib)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        arrays = _inputs(prog, n, rng)
        expected = prog.run(np, arrays, n=n)
        outs = {o.param: np.zeros(n, dtype=expected.outputs[o.param].dtype) for o in prog.outputs}
        cnt = np.zeros(max(len(prog.counts), 1), dtype=np.uint64)
        args = [ctypes.c_longlong(n)]
        for name, _ in prog.inputs:
            arr = arrays[name] if name in arrays else np.asarray(prog.tables[name] or (0,), dtype=np.int64)
            arrays[name] = np.ascontiguousarray(arr)
            args.append(arrays[name].ctypes.data_as(ctypes.c_void_p))
        args += [outs[o.param].ctypes.data_as(ctypes.c_void_p) for o in prog.outputs]
        args.append(cnt.ctypes.data_as(ctypes.c_void_p))
        ctypes.CDLL(str(lib)).run(*args)
        valid = outs.get("vout", np.ones(n, dtype=bool))
        for o in prog.outputs:
            got, want = outs[o.param], expected.outputs[o.param]
            mask = valid if o.role == "value" else np.ones(n, dtype=bool)
            if got.dtype.kind == "f":
                # the host libm and NumPy's log1p/exp may differ in the last ulp
                close = np.isclose(
                    got[mask], want[mask], rtol=1e-12 if precision == "float64" else 2e-5, atol=0, equal_nan=True
                )
                bad = ~close
                assert close.all(), (prog.chain.column, o.param, got[mask][bad][:4], want[mask][bad][:4])
            else:
                assert np.array_equal(got[mask], want[mask]), (prog.chain.column, o.param)
        assert [int(cnt[s]) for s in range(len(prog.counts))] == [
            expected.counts.get(s, 0) for s in range(len(prog.counts))
        ]


def _cupy_include() -> Path | None:
    env = os.environ.get("PREPFLOW_CUPY_INCLUDE")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("cupy")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "_core" / "include"
    return path if path.exists() else None


@pytest.mark.skipif(shutil.which("nvcc") is None or _cupy_include() is None, reason="needs nvcc and CuPy's headers")
def test_generated_cuda_compiles_with_nvcc(tmp_path: Path) -> None:
    """Each kernel wrapped as CuPy wraps an ElementwiseKernel (CArray parameters, CUPY_FOR loop), compiled to PTX."""
    include = _cupy_include()
    for j, prog in enumerate(_programs() + _programs("float32")):
        src = prog.cuda()
        params, refs = [], []
        for name, dtype in prog.inputs:
            if name in prog.raw:
                params.append(f"CArray<{_C[dtype]}, 1, true, true> {name}")
            else:
                params.append(f"CArray<{_C[dtype]}, 1, true, true> _raw_{name}")
                refs.append(f"const {_C[dtype]} &{name} = _raw_{name}[_ind.get()];")
        for o in prog.outputs:
            t = _C[{"Float64": "float64", "Float32": "float32", "Boolean": "bool"}.get(o.dtype, o.dtype.lower())]
            params.append(f"CArray<{t}, 1, true, true> _raw_{o.param}")
            refs.append(f"{t} &{o.param} = _raw_{o.param}[_ind.get()];")
        params.append("CArray<unsigned long long, 1, true, true> cnt")
        params.append("CIndexer<1, true> _ind")
        code = "\n".join(
            [
                "#include <cupy/carray.cuh>",
                "#include <cupy/atomics.cuh>",
                src.preamble,
                f'extern "C" __global__ void {src.name}({", ".join(params)}) {{',
                "  CUPY_FOR(i, _ind.size()) {",
                "    _ind.set(i);",
                *("    " + r for r in refs),
                *("    " + line for line in src.operation.splitlines()),
                "  }",
                "}",
            ]
        )
        path = tmp_path / f"k{j}.cu"
        path.write_text(code)
        cmd = ["nvcc", "--ptx", "--fmad=false", "-std=c++17", f"-I{include}", str(path), "-o", str(tmp_path / "k.ptx")]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
