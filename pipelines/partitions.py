"""Partitioned Parquet inputs and outputs: discovery, Hive keys, mirrored paths, one partition's job.

A partitioned input is a folder of Parquet files (searched recursively, Hive
``key=value`` folders included), a glob of them, or one Parquet file. Each file
is a partition, named by its path relative to the input's root (the folder, or
the folder part of the glob before its first wildcard). Partitions come in a
deterministic order: sorted by that relative path.

Files and folders whose names start with ``_`` or ``.`` are ignored (``_SUCCESS``
markers, ``_temporary``, ``.crc`` files, prepflow's own temporary files), as
Hive and Spark do. Anything else that is not ``.parquet`` is an error that names
the file, and so is an empty folder, a file that is not Parquet, a partition
whose columns or dtypes differ from the first one's (naming both partitions and
the column), and a mix of Hive layouts.

The output mirrors the input: partition ``year=2026/month=11/part-0.parquet``
is written to ``<output>/year=2026/month=11/part-0.parquet``, its quarantined
rows (if any) to ``<quarantine>/year=2026/month=11/part-0.parquet``, where the
quarantine folder defaults to ``<output>.quarantine`` beside the output (never
inside it: a reader of ``<output>/**/*.parquet`` must see data partitions only).
Hive key columns live in the folder names, as Hive writes them, and are not
repeated inside the output files; reading the output folder back (with Hive
partitioning, as ``prepflow`` reads folders) gives them back.

Each partition is written atomically (a temporary file named
``.prepflow-tmp-*.partial``, which no ``*.parquet`` reader picks up, then a
rename), its quarantine before its output; ``_SUCCESS`` is written last, once
every partition is in place exactly once (:func:`commit`).

>>> import tempfile, pathlib, polars as pl
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for year in (2025, 2026):
...     (root / f"year={year}").mkdir()
...     pl.DataFrame({"x": [1.0, 2.0]}).write_parquet(root / f"year={year}" / "part-0.parquet")
>>> layout = discover(root)
>>> [p.relative for p in layout.partitions], layout.keys
(['year=2025/part-0.parquet', 'year=2026/part-0.parquet'], ('year',))
>>> layout.partitions[1].read().to_dicts()
[{'x': 1.0, 'year': 2026}, {'x': 2.0, 'year': 2026}]
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import polars as pl

from pipelines import commands, engine, io
from pipelines.errors import DataError, SchemaMismatchError, UsageError
from pipelines.spec import parse_edges
from transforms.atomic import TMP_PREFIX
from transforms.pipeline import FittedPipeline

SUCCESS = "_SUCCESS"
TMP_SUFFIX = ".partial"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
IGNORED = ("_", ".")


@dataclass(frozen=True)
class Partition:
    """One input partition: a Parquet file, its path relative to the input root, its Hive keys."""

    path: str
    relative: str
    #: Hive keys and values of the relative folders, in order (``None`` for Hive's null partition)
    keys: tuple[tuple[str, str | None], ...] = ()
    #: dtypes of every Hive key Polars reads from this file's path (the input's, inferred over all partitions)
    hive_schema: tuple[tuple[str, pl.DataType], ...] = ()
    #: the input's columns and dtypes, in order (every partition is read in this order)
    columns: tuple[str, ...] = ()

    def scan(self) -> pl.LazyFrame:
        """A lazy scan of the partition, with its Hive columns typed as in the whole input."""
        if self.hive_schema:
            lf = pl.scan_parquet(self.path, hive_partitioning=True, hive_schema=pl.Schema(dict(self.hive_schema)))
        else:
            lf = pl.scan_parquet(self.path, hive_partitioning=False)
        return lf.select(self.columns) if self.columns else lf

    def read(self) -> pl.DataFrame:
        """The partition in memory, as the same rows of the whole input read on one machine."""
        p = Path(self.path)
        if not p.is_file():
            raise UsageError(f"{p}: partition {self.relative} not found (was the input changed during the run?)")
        io._check_parquet_magic(p)
        try:
            return self.scan().collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{p}: cannot be read as Parquet: {io.first_line(exc)}") from exc

    def output(self, root: str | os.PathLike[str]) -> Path:
        """Where this partition goes under an output (or quarantine) folder: the same relative path."""
        return Path(root, *self.relative.split("/"))


@dataclass(frozen=True)
class Layout:
    """A partitioned input: its root, partitions (sorted), Hive keys and the schema they share."""

    input: str
    root: Path
    partitions: tuple[Partition, ...]
    keys: tuple[str, ...] = ()
    schema: dict[str, str] = field(default_factory=dict)

    def outputs(self, root: str | os.PathLike[str]) -> dict[str, Path]:
        """Each partition's mirrored path under ``root``, by relative path."""
        return {p.relative: p.output(root) for p in self.partitions}

    def scan(self) -> pl.LazyFrame:
        """All partitions as one lazy frame, in partition order (what a single machine reads)."""
        return pl.concat([p.scan() for p in self.partitions], how="vertical")


def is_partitioned(path: str | os.PathLike[str]) -> bool:
    """True for a folder or a glob: inputs that a distributed run splits into partitions."""
    text = str(path)
    return glob.has_magic(text) or Path(text).is_dir()


def _ignored(relative: Path) -> bool:
    return any(part.startswith(IGNORED) for part in relative.parts)


def _static_prefix(pattern: str) -> Path:
    parts = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path()


def _files(input: str) -> tuple[Path, list[Path]]:
    """The input's root and its Parquet files (not yet sorted); errors name what is wrong."""
    p = Path(input)
    if glob.has_magic(input):
        root = _static_prefix(input)
        matched = [Path(m) for m in glob.glob(input, recursive=True)]
        files = [m for m in matched if m.is_file() and not _ignored(m.relative_to(root))]
        if not files:
            raise UsageError(f"{input}: no file matches this pattern")
    elif p.is_dir():
        root, files = p, []
        for folder, dirs, names in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith(IGNORED))
            files.extend(Path(folder, n) for n in names if not n.startswith(IGNORED))
        if not files:
            raise UsageError(
                f"{p}: is a folder with no .parquet files (a partitioned input holds Parquet files; "
                f"names starting with '_' or '.' are ignored)"
            )
    elif p.is_file():
        root, files = p.parent, [p]
    else:
        raise UsageError(f"{p}: input not found")
    for f in files:
        if f.suffix.lower() != ".parquet":
            raise UsageError(
                f"{f}: is not a .parquet file; a partitioned input holds Parquet files only "
                f"(convert it, move it out of {root}, or rename it to start with '_' to ignore it)"
            )
    return root, files


def _hive_keys(relative: Path) -> tuple[tuple[str, str | None], ...]:
    keys = []
    for part in relative.parent.parts:
        name, eq, value = part.partition("=")
        if eq and name:
            text = unquote(value)
            keys.append((unquote(name), None if text == HIVE_NULL else text))
    return tuple(keys)


def _path_keys(path: Path) -> list[str]:
    """Every ``key=`` folder name in an absolute path: Polars reads each as a Hive column."""
    return [unquote(part.split("=", 1)[0]) for part in path.parent.parts if "=" in part]


def _schema_of(f: Path, relative: str) -> dict[str, pl.DataType]:
    if f.stat().st_size == 0:
        raise DataError(f"{f}: the file is empty (partition {relative})")
    io._check_parquet_magic(f)
    try:
        return dict(pl.read_parquet_schema(f))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{f}: cannot be read as Parquet: {io.first_line(exc)}") from exc


def _compare(first: Partition, schema0: dict[str, Any], other: Partition, schema: dict[str, Any]) -> None:
    for name, dtype in schema0.items():
        if name not in schema:
            raise DataError(
                f"{other.path}: partition {other.relative} has no column {name!r}, which {first.relative} has; "
                "every partition must have the same columns and dtypes"
            )
        if schema[name] != dtype:
            raise DataError(
                f"{other.path}: partition {other.relative}: column {name!r} is {schema[name]}, but {dtype} in "
                f"{first.relative}; every partition must have the same columns and dtypes"
            )
    for name in schema:
        if name not in schema0:
            raise DataError(
                f"{other.path}: partition {other.relative} has a column {name!r} that {first.relative} lacks; "
                "every partition must have the same columns and dtypes"
            )


def discover(input: str | os.PathLike[str]) -> Layout:
    """The partitions of a folder, glob or Parquet file, sorted by relative path, schemas checked.

    Reads each file's footer (schema), never its data.
    """
    text = str(input)
    root, files = _files(text)
    found = sorted(((f.relative_to(root).as_posix(), f) for f in files), key=lambda t: t[0])
    parts = [Partition(path=str(f.resolve()), relative=rel, keys=_hive_keys(Path(rel))) for rel, f in found]
    names = [tuple(k for k, _ in p.keys) for p in parts]
    if len(set(names)) > 1:
        other = next(i for i, n in enumerate(names) if n != names[0])
        raise DataError(
            f"{text}: mixed Hive layouts: {parts[0].relative} has partition keys ({', '.join(names[0]) or 'none'}) "
            f"but {parts[other].relative} has ({', '.join(names[other]) or 'none'}); every partition must sit "
            "at the same depth under the same key=value folders"
        )
    schema0 = _schema_of(Path(parts[0].path), parts[0].relative)
    for part in parts[1:]:
        _compare(parts[0], schema0, part, _schema_of(Path(part.path), part.relative))
    single = not is_partitioned(text)
    if single:
        reference = pl.Schema(schema0)
    else:
        try:
            reference = pl.scan_parquet([p.path for p in parts], hive_partitioning=True).collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{text}: the partitions' Hive folder names cannot be read: {io.first_line(exc)}") from exc
    path_keys = [] if single else [k for k in dict.fromkeys(_path_keys(Path(parts[0].path))) if k in reference]
    hive = tuple((k, reference[k]) for k in path_keys)
    columns = tuple(reference)
    layout_parts = tuple(Partition(p.path, p.relative, p.keys, hive, columns) for p in parts)
    return Layout(
        input=text,
        root=root,
        partitions=layout_parts,
        keys=names[0],
        schema={c: str(t) for c, t in reference.items()},
    )


# --- output folders ---------------------------------------------------------------------------


def default_quarantine(output: str | os.PathLike[str]) -> Path:
    """``<output>.quarantine``, a folder beside the output folder."""
    out = Path(output)
    return out.with_name(f"{out.name}.quarantine")


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def _is_temp(name: str) -> bool:
    return name.startswith(TMP_PREFIX)


def _listing(folder: Path) -> list[str]:
    """Every file under ``folder`` (relative, posix), prepflow's temporary files left out."""
    if not folder.is_dir():
        return []
    found = []
    for base, _dirs, names in os.walk(folder):
        found.extend(Path(base, n).relative_to(folder).as_posix() for n in names if not _is_temp(n))
    return sorted(found)


def check_output_folder(
    output: str | os.PathLike[str], layout: Layout, *, quarantine: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """Check the output and quarantine folders before any work; returns them.

    Each must be new, empty, or hold only what this run writes (a rerun over an
    earlier or failed run): the mirrored partitions and ``_SUCCESS``. Neither may
    be the input, inside it or around it.
    """
    out = Path(output)
    q = Path(quarantine) if quarantine is not None else default_quarantine(out)
    expected = {p.relative for p in layout.partitions}
    for folder, what in ((out, "output"), (q, "quarantine")):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder}: is a file; a partitioned run writes a folder of partitions ({what})")
        if not folder.parent.is_dir():
            raise UsageError(f"{folder}: the {what} folder's parent {folder.parent} does not exist")
        if _inside(folder, layout.root) or _inside(layout.root, folder):
            raise UsageError(
                f"{folder}: the {what} folder is, is inside, or holds the input folder {layout.root}; "
                "write partitions to a separate folder"
            )
        foreign = [name for name in _listing(folder) if name not in expected and name != SUCCESS]
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise UsageError(
                f"{folder}: the {what} folder holds files this run would not write ({shown}); "
                "give a new or empty folder, or remove them"
            )
    if _inside(out, q) or _inside(q, out):
        raise UsageError(f"{q}: the quarantine folder must be beside the output folder {out}, not in it")
    return out, q


def prepare_output_folder(output: Path, quarantine: Path) -> None:
    """Create the output folder and remove an earlier run's ``_SUCCESS``: the folder is about to change."""
    output.mkdir(exist_ok=True)
    (output / SUCCESS).unlink(missing_ok=True)
    for folder in (output, quarantine):
        remove_stale_temp_files(folder)


def _tmp_path(target: Path) -> Path:
    """``.prepflow-tmp-<pid>.<host>-<random>.partial`` beside ``target``: no ``*.parquet`` glob sees it."""
    while True:
        tmp = target.with_name(f"{TMP_PREFIX}{os.getpid()}.{io._HOST}-{secrets.token_hex(6)}{TMP_SUFFIX}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        return tmp


def write_atomic(frames: Mapping[Path, pl.DataFrame]) -> None:
    """Write each frame as Parquet to a temporary file, then rename all into place, the first one last."""
    tmps: list[Path] = []
    targets = list(frames)
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(_tmp_path(target))
            frames[target].write_parquet(tmps[-1], **io.PARQUET_OPTIONS)
            with open(tmps[-1], "rb+") as fh:
                os.fsync(fh.fileno())
        for tmp, target in reversed(list(zip(tmps, targets, strict=True))):
            os.replace(tmp, target)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise


def stray_temp_files(folder: Path) -> list[Path]:
    """prepflow temporary files under ``folder`` (left by killed writers, or being written now)."""
    if not folder.is_dir():
        return []
    found = []
    for base, _dirs, names in os.walk(folder):
        found.extend(Path(base, n) for n in names if _is_temp(n))
    return sorted(found)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove temporary files under ``folder`` whose writer, on this host, is gone; returns them."""
    removed = []
    for path in stray_temp_files(folder):
        m = io._TMP_NAME.match(path.name)
        if m and m["host"] == io._HOST and int(m["pid"]) != os.getpid() and not io._alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


# --- one partition's job ----------------------------------------------------------------------


def check_keys_untouched(fitted: FittedPipeline, layout: Layout) -> None:
    """Raise :class:`UsageError` when a step transforms a Hive key column (its values live in folder names)."""
    for i, f in enumerate(fitted.steps):
        touched = [k for k in layout.keys if k in f.columns]
        if touched:
            raise UsageError(
                f"steps[{i}] ({f.step.label}) transforms the partition column(s) {', '.join(touched)}, whose values "
                "are the output's folder names; list the step's columns without them"
            )


def apply_partition(
    fitted: FittedPipeline,
    partition: Partition,
    output: str | os.PathLike[str],
    quarantine: str | os.PathLike[str],
    *,
    train: bool,
    trusted_spec: bool = False,
) -> dict[str, Any]:
    """Transform one partition and write its output (and quarantine) partition atomically.

    The same engine as ``prepflow run``/``apply`` on one file: input validation
    (rows quarantined per the spec), the fitted steps, output validation, row
    conservation. ``trusted_spec`` allows the input schema to import a model
    (a spec file); a fitted artifact's never does. Returns a small report.
    """
    started = time.perf_counter()
    df = partition.read()
    input_spec, output_spec = parse_edges(fitted.spec, source=partition.path)
    validated = commands._validate_input(input_spec, df, partition.path, engine._quiet, allow_import=trusted_spec)
    try:
        ex = engine.execute(fitted, df, train=train, validated=validated)
    except SchemaMismatchError as exc:
        raise SchemaMismatchError(f"{partition.path}: {exc}") from exc
    commands._validate_output(output_spec, ex.output, engine._quiet, allow_import=trusted_spec)
    rows = engine.check_conservation(ex)
    out = ex.output
    for key, _value in partition.keys:  # the key's value lives in the folder name
        if key in out.columns:
            if df.height and key in df.columns and not out.get_column(key).eq_missing(df.get_column(key)[0]).all():
                raise UsageError(f"{partition.path}: the pipeline changed the partition column {key!r}")
            out = out.drop(key)
    target = partition.output(output)
    q_target = partition.output(quarantine)
    frames = {target: out}
    if ex.quarantine is not None and ex.quarantine.height:
        frames[q_target] = ex.quarantine
    write_atomic(frames)
    if q_target not in frames:
        q_target.unlink(missing_ok=True)  # an earlier run's quarantine of this partition
    return {
        "partition": partition.relative,
        "output": str(target),
        "quarantine": str(q_target) if q_target in frames else None,
        "rows": rows,
        "quarantine_summary": engine.quarantine_summary(ex.quarantine),
        "failures": _failure_counts(validated.failures) if validated is not None else None,
        "steps": ex.steps,
        "seconds": time.perf_counter() - started,
    }


def _failure_counts(failures: pl.DataFrame) -> list[dict[str, Any]]:
    """Input-schema failures: rows per column and check."""
    rows = failures.filter(pl.col("index").is_not_null()) if failures.height else failures
    if not rows.height:
        return []
    counts = rows.group_by("column", "check").agg(pl.col("index").n_unique().alias("rows")).sort("column", "check")
    return counts.to_dicts()


# --- merging the partitions' reports ------------------------------------------------------------


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _add(a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b])}
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)):
        return a
    return a + b


COUNTS = ("rows_in", "rows_out", "rows_dropped", "rows_added")


def merge_steps(per_partition: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-step metrics summed over partitions (every step metric is a count)."""
    if not per_partition:
        return []
    merged = [dict(s) for s in per_partition[0]]
    for steps in per_partition[1:]:
        for entry, other in zip(merged, steps, strict=True):
            for key, value in other.items():
                if key in ("index", "name", "kind", "method", "columns", "fit_group", "fit_group_seconds"):
                    continue
                entry[key] = _add(entry.get(key), value)
    return merged


def merge_quarantine(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows quarantined, per stage and per reason, summed over partitions."""
    total: dict[str, Any] = {"rows": 0, "stages": {}, "reasons": {}}
    for s in summaries:
        total = _add(total, s)
    total["reasons"] = dict(sorted(total["reasons"].items()))
    return total


def check_conservation(rows: Mapping[str, int]) -> None:
    """Rows in = out + quarantined - augmented, over all partitions."""
    if rows["in"] != rows["out"] + rows["quarantined"] - rows["augmented"]:
        raise engine.ConservationError(f"row conservation violated over the partitions (a bug in prepflow): {rows}")


def _rows_of(path: Path) -> int:
    return int(pl.scan_parquet(path, hive_partitioning=False).select(pl.len()).collect().item())


def merge_failures(per_partition: list[list[dict[str, Any]] | None]) -> list[dict[str, Any]]:
    """Input-schema failures (rows per column and check) summed over partitions."""
    total: dict[tuple[str, str], int] = {}
    for failures in per_partition:
        for f in failures or []:
            total[(f["column"], f["check"])] = total.get((f["column"], f["check"]), 0) + f["rows"]
    return [{"column": c, "check": k, "rows": n} for (c, k), n in sorted(total.items())]


def verify(layout: Layout, output: Path, quarantine: Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Check that every partition was written exactly once, as reported; clean up dead writers' temp files.

    Checks: one result per partition; the output folder holds exactly the
    mirrored partitions (none missing, none extra) with the row counts the
    tasks reported; likewise the quarantine folder. Temporary files of writers
    that died on this host are removed; any other is reported (their
    ``.partial`` names keep them out of ``*.parquet`` readers).
    """
    by_partition: dict[str, dict[str, Any]] = {}
    for r in results:
        if r["partition"] in by_partition:
            raise engine.ConservationError(f"partition {r['partition']} was reported twice (a bug in prepflow)")
        by_partition[r["partition"]] = r
    expected = [p.relative for p in layout.partitions]
    missing = [rel for rel in expected if rel not in by_partition]
    if missing or len(by_partition) != len(expected):
        raise engine.ConservationError(f"partition(s) without a result: {', '.join(missing[:5])}")
    removed = [*remove_stale_temp_files(output), *remove_stale_temp_files(quarantine)]
    problems = []
    on_disk = [n for n in _listing(output) if n != SUCCESS]
    if on_disk != sorted(expected):
        extra, gone = sorted(set(on_disk) - set(expected)), sorted(set(expected) - set(on_disk))
        problems.append(f"{output}: missing {gone[:5]}, unexpected {extra[:5]}")
    q_expected = sorted(rel for rel, r in by_partition.items() if r["quarantine"])
    if (q_on_disk := _listing(quarantine)) != q_expected:
        problems.append(f"{quarantine}: holds {q_on_disk[:5]}, expected {q_expected[:5]}")
    for rel in expected:
        r = by_partition[rel]
        if (n := _rows_of(Path(r["output"]))) != r["rows"]["out"]:
            problems.append(f"{r['output']}: {n} row(s) on disk, {r['rows']['out']} written")
        if r["quarantine"] and (n := _rows_of(Path(r["quarantine"]))) != r["quarantine_summary"]["rows"]:
            problems.append(f"{r['quarantine']}: {n} row(s) on disk, {r['quarantine_summary']['rows']} written")
    if problems:
        raise DataError("the partitioned output is not what the run wrote (was it changed?): " + "; ".join(problems))
    stray = [str(p) for p in (*stray_temp_files(output), *stray_temp_files(quarantine))]
    return {"removed_temp_files": [str(p) for p in removed], "stray_temp_files": stray}


def finish(output: Path, texts: Mapping[Path, str] | None = None, *, partitions: int) -> Path:
    """Write the side files (report, fitted artifact), then the ``_SUCCESS`` marker last; returns its path."""
    if texts:
        io.write_frames({}, dict(texts))
    marker = output / SUCCESS
    io.write_frames({}, {marker: json.dumps({"partitions": partitions, "written_at": time.time()}) + "\n"})
    return marker
