"""The spec's ``engine:`` block: how (not what) a pipeline runs.

Three regimes run the same steps and give the same fitted artifact:

- in memory (``streaming: false``, the default): exact statistics (``apply``
  streams when ``streaming`` is unset and nothing needs the whole table:
  :func:`pipelines.regime.serving_streams`);
- streaming on one machine (``streaming: true``, or ``auto`` when the input is
  large against available memory): bounded memory, quantiles from KLL sketches
  unless ``exact_quantiles: true``;
- distributed (``executor: dask``): one task per input partition on a Dask
  cluster, partial statistics merged.

``backend`` and ``precision`` choose the GPU (CuPy) path for steps that have one.

```yaml
engine: {streaming: auto, sketch_k: 800, executor: dask, address: tcp://10.0.0.5:8786}
```

>>> parse_engine_spec({"engine": {"streaming": True}}).streaming
True
>>> parse_engine_spec({}).executor
'local'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.errors import SpecError

ENGINE_KEYS = ("engine",)


class EngineSpec(BaseModel):
    """How a pipeline runs: memory regime, quantile method, executor, backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    streaming: bool | Literal["auto"] = Field(
        False, description="Stream the input in bounded memory: true, false, or auto (by input size vs memory)."
    )
    memory_fraction: float = Field(
        0.25,
        gt=0,
        le=1,
        description="With streaming: auto, stream when the input's in-memory size exceeds this "
        "fraction of available memory.",
    )
    exact_quantiles: bool = Field(
        False,
        description="In streaming/distributed fits, exact quantiles by one pass per column (memory ~ a column)"
        " instead of KLL sketches.",
    )
    sketch_k: int = Field(800, ge=8, le=65535, description="KLL sketch size k (800: normalised rank error <= 0.35%).")
    chunk_rows: int = Field(1_000_000, ge=1, description="Rows per batch in streaming fits.")
    executor: Literal["local", "dask"] = Field("local", description="local, or dask: one task per input partition.")
    address: str | None = Field(None, description="Dask scheduler address (tcp://host:port); none: a LocalCluster.")
    workers: int = Field(2, ge=1, le=1024, description="Workers of the LocalCluster started when no address is given.")
    backend: Literal["auto", "polars", "cupy"] = Field(
        "polars", description="polars, cupy (GPU; error without a device), or auto (GPU for large tables)."
    )
    precision: Literal["float64", "float32"] = Field("float64", description="GPU compute precision.")


def parse_engine_spec(data: Mapping[str, Any], *, source: str = "<spec>") -> EngineSpec:
    """The ``engine:`` block of a spec, validated; errors name the key."""
    try:
        return EngineSpec.model_validate(data.get("engine") or {})
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                parts.append(f"unknown key '{loc}'")
            else:
                parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r:.60})")
        raise SpecError(f"{source}: engine: {'; '.join(parts)}") from exc
