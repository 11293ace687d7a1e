"""Pipelines: a list of steps fitted in order, and the fitted pipeline as one lazy plan.

>>> import polars as pl
>>> from transforms import Pipeline, SimpleImputer, StandardScaler
>>> pipe = Pipeline([SimpleImputer(columns=["x"], strategy="median"), StandardScaler(columns=["x"])])
>>> fitted = pipe.fit(pl.DataFrame({"x": [1.0, None, 3.0]}))
>>> fitted.transform(pl.DataFrame({"x": [None, 3.0]}))["x"].to_list()
[0.0, 1.224744871391589]
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from transforms import atomic
from transforms._version import __version__
from transforms.base import Fitted, Frame, Step, schema_of
from transforms.chunked import ChunkOptions, MapPartials, fit_steps_chunked
from transforms.compose import apply_steps
from transforms.errors import ArtifactError, SchemaMismatchError
from transforms.fitting import FitResult, fit_steps

FORMAT = "prepflow.fitted"
FORMAT_VERSION = 1


def spec_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


class Pipeline:
    """Steps to fit in order; each is fitted on the output of the ones before it.

    ``target`` is the label column: numeric steps leave it out of their default
    columns, and augmentation steps balance it.
    """

    def __init__(self, steps: Sequence[Step], *, target: str | None = None, name: str | None = None) -> None:
        self.steps = tuple(steps)
        self.target = target
        self.name = name
        for step in self.steps:
            if not isinstance(step, Step):
                raise TypeError(f"Pipeline steps must be Step instances, got {type(step).__name__}")

    def __repr__(self) -> str:
        return f"Pipeline({list(self.steps)!r}, target={self.target!r})"

    def to_spec(self) -> dict[str, Any]:
        """The pipeline as a plain spec dict (name, target, steps)."""
        steps = [{"kind": s.kind, "method": s.method, **s.params()} for s in self.steps]
        return {"name": self.name, "target": self.target, "steps": steps}

    def fit(self, frame: pl.DataFrame | pl.LazyFrame, *, spec: Mapping[str, Any] | None = None) -> FittedPipeline:
        """Fit every step; returns a :class:`FittedPipeline`.

        ``spec`` is recorded in the artifact (the YAML spec when run from one).
        """
        lf = frame.lazy()
        result = fit_steps(self.steps, lf, target=self.target)
        rows = frame.height if isinstance(frame, pl.DataFrame) else lf.select(pl.len()).collect().item()
        return self._fitted(lf, result, int(rows), spec, {"regime": "in_memory", "quantiles": "exact"})

    def fit_chunked(
        self,
        lf: pl.LazyFrame,
        *,
        options: ChunkOptions | None = None,
        map_partials: MapPartials | None = None,
        spec: Mapping[str, Any] | None = None,
        regime: str = "streaming",
        prepare: Callable[[], None] | None = None,
    ) -> FittedPipeline:
        """Fit in bounded memory from mergeable statistics (see :mod:`transforms.chunked`).

        ``lf`` is scanned once per fit group and never held in memory; with
        ``map_partials`` the statistics come from partitions (e.g. Dask workers),
        and ``prepare`` runs before ``lf`` is first read (if ever).
        The artifact records the regime and how quantiles were computed.

        >>> from transforms import RobustScaler
        >>> lf = pl.LazyFrame({"x": [float(i) for i in range(101)]})
        >>> Pipeline([RobustScaler()]).fit_chunked(lf).fit_method["quantiles"]
        'kll'
        """
        result = fit_steps_chunked(
            self.steps,
            lf,
            target=self.target,
            options=options or ChunkOptions(),
            map_partials=map_partials,
            prepare=prepare,
        )
        if result.rows is None:
            if prepare is not None:
                prepare()
            rows = lf.select(pl.len()).collect(engine="streaming").item()
        else:
            rows = result.rows
        return self._fitted(lf, result, int(rows), spec, {"regime": regime, **result.method})

    def _fitted(
        self, lf: pl.LazyFrame, result: FitResult, rows: int, spec: Mapping[str, Any] | None, method: dict[str, Any]
    ) -> FittedPipeline:
        return FittedPipeline(
            steps=result.fitted,
            target=self.target,
            name=self.name,
            input_schema={c: str(t) for c, t in lf.collect_schema().items()},
            fit_rows=rows,
            spec=dict(spec) if spec is not None else self.to_spec(),
            fit_groups=result.groups,
            fit_seconds=result.group_seconds,
            fit_method=method,
        )

    def fit_transform(self, frame: Frame) -> Frame:
        """Fit, then transform the same frame in training mode."""
        return self.fit(frame).transform(frame, train=True)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> FittedPipeline:
        """Load a fitted pipeline saved with :meth:`FittedPipeline.save`."""
        return FittedPipeline.load(path)


@dataclass(frozen=True)
class FittedPipeline:
    """A fitted pipeline: fitted steps plus what they were fitted on.

    ``transform`` builds one lazy plan of all steps. The JSON form (``save``) is a
    plain, versioned artifact that loads without running any code.
    """

    steps: tuple[Fitted, ...]
    target: str | None
    name: str | None
    input_schema: dict[str, str]
    fit_rows: int
    spec: dict[str, Any] = field(default_factory=dict)
    fit_groups: tuple[int, ...] = ()
    fit_seconds: tuple[float, ...] = ()
    #: how it was fitted: regime (in_memory, streaming, distributed), quantiles (exact, kll) and the sketch bound
    fit_method: dict[str, Any] = field(default_factory=dict)
    library_version: str = __version__

    def required_columns(self, *, train: bool = False) -> dict[str, str]:
        """Input columns the steps read, with the dtype they were fitted on."""
        created: set[str] = set()
        required: dict[str, str] = {}
        for f in self.steps:
            for c in f.reads(train=train):
                if c not in created and c in self.input_schema:
                    required.setdefault(c, self.input_schema[c])
            created |= {c for c in f.columns if c not in self.input_schema}
        return required

    def check_schema(self, schema: pl.Schema, *, train: bool = False) -> None:
        """Raise :class:`SchemaMismatchError` naming missing or retyped columns."""
        required = self.required_columns(train=train)
        missing = [c for c in required if c not in schema]
        changed = [
            f"{c} ({required[c]} -> {schema[c]})" for c in required if c in schema and str(schema[c]) != required[c]
        ]
        problems = []
        if missing:
            problems.append(f"missing column(s): {', '.join(missing)}")
        if changed:
            problems.append(f"changed dtype(s): {', '.join(changed)}")
        if problems:
            raise SchemaMismatchError(
                "input does not match the schema the pipeline was fitted on: " + "; ".join(problems)
            )

    def stages(self, lf: pl.LazyFrame, *, train: bool = False) -> list[pl.LazyFrame]:
        """The lazy frame before each step, and the output last (``len(steps) + 1`` plans)."""
        self.check_schema(lf.collect_schema(), train=train)
        out = [lf]
        for f in self.steps:
            out.append(f.apply(out[-1], train=train))
        return out

    def transform(self, frame: Frame, *, train: bool = False) -> Frame:
        """Apply every step: DataFrame in, DataFrame out; LazyFrame in, LazyFrame out."""
        self.check_schema(schema_of(frame), train=train)
        lf = apply_steps(self.steps, frame.lazy(), train=train)
        return lf.collect() if isinstance(frame, pl.DataFrame) else lf

    def to_dict(self) -> dict[str, Any]:
        """The plain-JSON artifact."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library_version": self.library_version,
            "name": self.name,
            "target": self.target,
            "spec": self.spec,
            "spec_hash": spec_hash(self.spec),
            "input_schema": self.input_schema,
            "fit_rows": self.fit_rows,
            "fit_method": self.fit_method,
            "steps": [f.to_dict() for f in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedPipeline:
        """Rebuild from :meth:`to_dict`; checks the format and version first."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ArtifactError(f'not a prepflow fitted artifact (expected "format": "{FORMAT}")')
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"fitted artifact has format_version {version!r}; this prepflow ({__version__}) reads "
                f"version {FORMAT_VERSION}: refit the pipeline"
            )
        try:
            steps = tuple(Fitted.from_dict(s) for s in data["steps"])
            return cls(
                steps=steps,
                target=data.get("target"),
                name=data.get("name"),
                input_schema=dict(data["input_schema"]),
                fit_rows=int(data["fit_rows"]),
                fit_method=dict(data.get("fit_method") or {}),
                spec=dict(data.get("spec") or {}),
                library_version=str(data.get("library_version", "")),
            )
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"fitted artifact is incomplete or malformed: {exc!r}") from exc

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact as JSON, atomically."""
        atomic.write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FittedPipeline:
        """Read an artifact written by :meth:`save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"{path}: not UTF-8 text") from exc
        try:
            return cls.from_dict(data)
        except ArtifactError as exc:
            raise ArtifactError(f"{path}: {exc}") from exc
