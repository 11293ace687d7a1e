"""Distributed runs on a real Dask cluster: partition discovery, mirrored output, worker failures.

One ``LocalCluster`` (2 worker processes on 127.0.0.1) serves the whole session;
each flow run connects to it by address, as ``--dask-address`` does.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines import commands, partitions
from pipelines.errors import EXIT_DATA, EXIT_USAGE, DataError, UsageError, exit_code

PARTS = 6


def _warm() -> None:
    import flows.distributed  # noqa: F401  (Prefect, Polars and the engine, imported once per worker)


@pytest.fixture(scope="module")
def dask_cluster():
    """One LocalCluster for the session (start ~4 s, against ~13 s per flow run that starts its own).

    Its workers import prefect and the engine in the background while the Prefect
    test server starts (list this fixture before ``prefect_server``).
    """
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, processes=True, host="127.0.0.1", dashboard_address=None) as cluster,
        Client(cluster.scheduler_address, set_as_default=False) as client,
    ):
        warming = [client.submit(_warm, pure=False, workers=[w]) for w in client.scheduler_info()["workers"]]
        yield cluster.scheduler_address, client
        del warming


@pytest.fixture(scope="module")
def loans_parts(tmp_path_factory: pytest.TempPathFactory, loans_source) -> dict[str, Any]:
    """The loans data (with an ``id`` row key) as 6 Hive partitions, its spec, and a fit made on one machine."""
    text, frame = loans_source
    folder = tmp_path_factory.mktemp("loans-parts")
    data = write_partitions(folder / "in", frame(3000).with_row_index("id"))
    spec = folder / "loans.yaml"
    spec.write_text(text)
    fitted = folder / "fitted.json"
    commands.fit(spec, data, fitted)
    single = commands.apply(fitted, data, folder / "single.parquet")
    return {"spec": spec, "input": data, "fitted": fitted, "single": folder / "single.parquet", "report": single}


def write_partitions(root: Path, df: pl.DataFrame, parts: int = PARTS) -> Path:
    """``df`` as Hive partitions ``region=a|b/part-<i>.parquet`` (the key lives in the folder names)."""
    size = -(-df.height // parts)
    for i in range(parts):
        folder = root / f"region={'ab'[i % 2]}"
        folder.mkdir(parents=True, exist_ok=True)
        df.slice(i * size, size).write_parquet(folder / f"part-{i}.parquet")
    return root


@pytest.fixture
def partitioned(tmp_path: Path, loans_parts: dict[str, Any]) -> dict[str, Any]:
    """``loans_parts`` and a fresh folder for this test's outputs."""
    return {**loans_parts, "dir": tmp_path}


def read_folder(folder: Path) -> pl.DataFrame:
    return pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=True).collect().sort("id")


def assert_complete(out: Path, layout: partitions.Layout) -> None:
    """Every partition exactly once at its mirrored path, no temporary file a reader could see, _SUCCESS."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted([*(p.relative for p in layout.partitions), partitions.SUCCESS])


# --- discovery (no cluster) -------------------------------------------------------------------------


def test_discovery_orders_partitions_and_reads_hive_keys_as_one_machine_does(tmp_path: Path) -> None:
    df = pl.DataFrame({"id": range(12), "x": np.linspace(0, 1, 12)})
    for i, (year, month) in enumerate([(2026, 11), (2025, 1), (2026, 1), (2025, 11)]):
        folder = tmp_path / "in" / f"year={year}" / f"month={month:02d}"
        folder.mkdir(parents=True)
        df.slice(3 * i, 3).write_parquet(folder / "part-0.parquet")
    (tmp_path / "in" / "_SUCCESS").write_text("")  # ignored, as Hive and Spark do
    layout = partitions.discover(tmp_path / "in")
    assert [p.relative for p in layout.partitions] == [
        "year=2025/month=01/part-0.parquet",
        "year=2025/month=11/part-0.parquet",
        "year=2026/month=01/part-0.parquet",
        "year=2026/month=11/part-0.parquet",
    ]
    assert layout.keys == ("year", "month")
    whole = pl.read_parquet(tmp_path / "in" / "**" / "*.parquet", hive_partitioning=True).sort("id")
    assert_frame = layout.scan().collect().sort("id")
    assert assert_frame.equals(whole) and assert_frame.schema == whole.schema
    assert layout.partitions[0].output(tmp_path / "out") == tmp_path / "out/year=2025/month=01/part-0.parquet"
    by_glob = partitions.discover(str(tmp_path / "in" / "year=2026" / "*" / "*.parquet"))
    assert [p.relative for p in by_glob.partitions] == ["month=01/part-0.parquet", "month=11/part-0.parquet"]


@pytest.mark.parametrize(
    ("make", "error", "code", "words"),
    [
        (lambda d: d.mkdir(), UsageError, EXIT_USAGE, "no .parquet files"),
        (lambda d: (d / "notes.csv").write_text("a\n1\n"), UsageError, EXIT_USAGE, "notes.csv: is not a .parquet"),
        (lambda d: (d / "b.parquet").write_text("a,b\n1,2\n"), DataError, EXIT_DATA, "is not a Parquet file"),
        (
            lambda d: pl.DataFrame({"x": ["1"], "y": [1.0]}).write_parquet(d / "b.parquet"),
            DataError,
            EXIT_DATA,
            "partition b.parquet: column 'x' is String, but Float64 in a.parquet",
        ),
        (
            lambda d: pl.DataFrame({"x": [1.0]}).write_parquet(d / "b.parquet"),
            DataError,
            EXIT_DATA,
            "partition b.parquet has no column 'y'",
        ),
        (
            lambda d: (d / "k=1").mkdir() or pl.DataFrame({"x": [1.0], "y": [1.0]}).write_parquet(d / "k=1/c.parquet"),
            DataError,
            EXIT_DATA,
            "mixed Hive layouts",
        ),
    ],
    ids=["empty", "csv", "not-parquet", "dtype", "missing-column", "mixed-hive"],
)
def test_discovery_errors_name_the_file_and_column(tmp_path: Path, make, error, code, words) -> None:
    folder = tmp_path / "in"
    if code != EXIT_USAGE or "csv" in words:
        folder.mkdir()
        pl.DataFrame({"x": [1.0], "y": [2.0]}).write_parquet(folder / "a.parquet")
    make(folder)
    with pytest.raises(error) as info:
        partitions.discover(folder)
    assert words in str(info.value)
    assert exit_code(info.value) == code


def test_output_folder_is_checked_before_any_work(partitioned: dict[str, Path]) -> None:
    layout = partitions.discover(partitioned["input"])
    with pytest.raises(UsageError, match="inside, or holds the input"):
        partitions.check_output_folder(partitioned["input"] / "out", layout)
    foreign = partitioned["dir"] / "busy"
    foreign.mkdir()
    (foreign / "keep.parquet").write_text("")
    with pytest.raises(UsageError, match=r"holds files this run would not write \(keep.parquet\)"):
        partitions.check_output_folder(foreign, layout)
    _, q = partitions.check_output_folder(partitioned["dir"] / "out", layout)
    assert q == partitioned["dir"] / "out.quarantine"


# --- on the cluster ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("dask_cluster", "prefect_server")
def test_distributed_apply_equals_the_single_machine_apply(partitioned: dict[str, Path], dask_cluster) -> None:
    from flows.distributed import preprocess_partitioned

    address, _ = dask_cluster
    d = partitioned["dir"]
    single = partitioned["report"]
    started = time.perf_counter()
    report = preprocess_partitioned(
        partitioned["spec"],
        partitioned["input"],
        d / "out",
        fitted=partitioned["fitted"],
        report=d / "report.json",
        mode="apply",
        dask_address=address,
    )
    seconds = time.perf_counter() - started
    layout = partitions.discover(partitioned["input"])
    assert_complete(d / "out", layout)
    expected = pl.read_parquet(partitioned["single"]).sort("id")
    got = read_folder(d / "out").select(expected.columns)
    assert got.equals(expected), "distributed output differs from the single-machine output"
    q_single = pl.read_parquet(partitioned["single"].with_name("single.quarantine.parquet")).sort("id").drop("__row")
    q_dist = read_folder(d / "out.quarantine").select(q_single.columns)
    assert q_dist.equals(q_single)
    assert report["rows"] == single["rows"]
    assert report["quarantine"]["reasons"] == single["quarantine"]["reasons"]
    assert [s["rows_out"] for s in report["steps"]] == [s["rows_out"] for s in single["steps"]]
    assert [s.get("imputed") for s in report["steps"]] == [s.get("imputed") for s in single["steps"]]
    assert {item["worker"] for item in report["partitions"]["items"]} == set(
        dask_cluster[1].scheduler_info()["workers"]
    )
    assert json.loads((d / "report.json").read_text())["rows"] == report["rows"]
    print(f"distributed apply of {PARTS} partitions: {seconds:.1f} s")


def _pause_first_writer(marker: str, output: str) -> None:
    """On a worker: the first write under ``output`` starts a temporary file, records its pid in ``marker``, hangs."""
    from pipelines import partitions as parts

    original = getattr(parts, "_test_original_write", parts.write_atomic)
    parts._test_original_write = original  # type: ignore[attr-defined]

    def write(frames: Any) -> None:
        if any(str(t).startswith(output) for t in frames):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                target = Path(next(iter(frames)))
                target.parent.mkdir(parents=True, exist_ok=True)
                parts._tmp_path(target)  # a half-written partition, as a killed writer leaves it
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                time.sleep(120)  # killed meanwhile
        original(frames)

    parts.write_atomic = write


def _restore_writer() -> None:
    from pipelines import partitions as parts

    parts.write_atomic = getattr(parts, "_test_original_write", parts.write_atomic)


@pytest.mark.slow
@pytest.mark.usefixtures("dask_cluster", "prefect_server")
def test_a_worker_killed_mid_run_is_replaced_and_every_partition_is_written_once(
    partitioned: dict[str, Path], dask_cluster
) -> None:
    from flows.distributed import preprocess_partitioned

    address, client = dask_cluster
    d = partitioned["dir"]
    marker = d / "paused.pid"
    client.run(_pause_first_writer, str(marker), str(d / "out"))
    killed: list[int] = []

    def kill_when_paused() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text():
                pid = int(marker.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_paused, daemon=True)
    killer.start()
    try:
        report = preprocess_partitioned(
            partitioned["spec"],
            partitioned["input"],
            d / "out",
            fitted=partitioned["fitted"],
            mode="apply",
            dask_address=address,
        )
    finally:
        killer.join(timeout=5)
        client.run(_restore_writer)
    assert killed, "no worker was paused and killed"
    layout = partitions.discover(partitioned["input"])
    assert_complete(d / "out", layout)
    expected = pl.read_parquet(partitioned["single"]).sort("id")
    assert read_folder(d / "out").select(expected.columns).equals(expected)
    assert report["rows"] == partitioned["report"]["rows"]
    assert len(report["partitions"]["items"]) == PARTS
    assert [Path(p).name.split("-")[2].split(".")[0] for p in report["partitions"]["removed_temp_files"]] == [
        str(killed[0])
    ]  # the killed writer's temporary file, removed before _SUCCESS
    assert not report["partitions"]["stray_temp_files"]


def test_the_cluster_comes_from_the_options_then_the_spec(partitioned: dict[str, Any]) -> None:
    from flows import distributed as dist
    from pipelines.errors import SpecError

    spec = partitioned["dir"] / "dask.yaml"
    spec.write_text(partitioned["spec"].read_text() + "engine: {executor: dask, address: tcp://10.1.2.3:8786}\n")
    assert dist.executor(str(spec)) == ("tcp://10.1.2.3:8786", 2)
    assert dist.executor(str(spec), "tcp://127.0.0.1:9999", 3) == ("tcp://127.0.0.1:9999", 3)
    assert dist.task_runner("tcp://10.1.2.3:8786").address == "tcp://10.1.2.3:8786"
    local = dist.task_runner(None, 3)
    assert local.address is None and local.cluster_kwargs["n_workers"] == 3
    assert local.cluster_kwargs["host"] == "127.0.0.1" and local.cluster_kwargs["processes"] is True
    augment = partitioned["dir"] / "augment.yaml"
    augment.write_text(partitioned["spec"].read_text() + "  - {kind: augment, method: oversample, seed: 1}\n")
    with pytest.raises(SpecError, match="cannot run partition by partition"):
        dist.plan(str(augment), str(partitioned["input"]), str(partitioned["dir"] / "o"))
    with pytest.raises(UsageError, match="needs a fitted path"):
        dist.plan(str(spec), str(partitioned["input"]), str(partitioned["dir"] / "o"), mode="apply")


def test_partial_statistics_of_flat_and_hive_partitions_agree(tmp_path: Path, loans_source) -> None:
    """The worker side of the fit: the engine's ``partial_for_partition``, or the Hive-aware read, same numbers."""
    from flows.distributed import _hive_partial, partial_stats
    from pipelines.spec import load_spec
    from transforms.chunked import ChunkOptions, group_task

    text, frame = loans_source
    (tmp_path / "in").mkdir()
    frame(400).write_parquet(tmp_path / "in" / "part-0.parquet")
    spec = tmp_path / "s.yaml"
    spec.write_text(text.split("steps:")[0] + "steps: [{kind: scale, method: standard, columns: [age, income]}]\n")
    task = group_task([], 0, 1, ChunkOptions())
    (part,) = partitions.discover(tmp_path / "in").partitions
    raw = json.dumps({k: v for k, v in load_spec(spec).raw.items()})
    by_engine = partial_stats.fn(raw, str(spec), json.dumps(task), part)
    assert by_engine == _hive_partial(load_spec(spec), task, part)
    assert json.loads(json.dumps(by_engine)) == by_engine  # plain JSON


class _Future:
    """A stand-in task future: lost (cancelled, as by ``client.restart()``) on its first ``lose`` results."""

    def __init__(self, value: Any, lost: bool) -> None:
        self.value, self.lost = value, lost

    def result(self) -> Any:
        if self.lost:
            from concurrent.futures import CancelledError

            raise CancelledError
        return self.value


def test_gather_submits_lost_tasks_again_and_keeps_the_order() -> None:
    from flows import distributed as dist

    calls: list[str] = []

    def submit(item: str) -> _Future:
        calls.append(item)
        return _Future(item.upper(), lost=item == "b" and calls.count("b") < 3)

    assert dist.gather(submit, ["a", "b", "c"], str) == ["A", "B", "C"]
    assert calls == ["a", "b", "c", "b", "b"]
    with pytest.raises(DataError, match="lost 4 times"):
        dist.gather(lambda item: _Future(item, lost=True), ["x"], str)


RUN_STEPS = """\
steps:
  - {kind: impute, method: mean, columns: [age]}
  - {kind: impute, method: median, columns: [income]}
  - {kind: outliers, method: zscore, columns: [age], threshold: 2.5, action: drop}
  - {kind: scale, method: standard, columns: [age]}
  - {kind: scale, method: robust, columns: [income]}
  - {kind: encode, method: onehot, columns: [city]}
"""


def _rank_window(values: np.ndarray, x: float) -> tuple[float, float]:
    """The normalised ranks ``x`` can stand for in ``values``: [share below, share at or below]."""
    return float(np.mean(values < x)), float(np.mean(values <= x))


def _within(values: np.ndarray, x: float, q: float, bound: float) -> bool:
    low, high = _rank_window(values, x)
    return low - bound <= q <= high + bound


@pytest.mark.slow
@pytest.mark.usefixtures("dask_cluster", "prefect_server")
def test_flow_run_cli_fits_on_the_cluster_like_one_machine(partitioned: dict[str, Any], dask_cluster) -> None:
    """``flow-run --dask-address``: moments equal to 1e-9, quantiles within the KLL bound, same rows."""
    from flows.cli import app

    address, _ = dask_cluster
    d = partitioned["dir"]
    spec = d / "run.yaml"
    spec.write_text(partitioned["spec"].read_text().split("steps:")[0] + RUN_STEPS)
    single = commands.run(spec, partitioned["input"], d / "single.parquet", fitted_path=d / "single.json")
    out = d / "out"
    args = ["flow-run", str(spec), "-i", str(partitioned["input"]), "-o", str(out), "--fitted", str(d / "dist.json")]
    started = time.perf_counter()
    done = CliRunner().invoke(app, [*args, "--dask-address", address, "--json"])
    seconds = time.perf_counter() - started
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert report["rows"] == single["rows"] and report["quarantine"]["reasons"] == single["quarantine"]["reasons"]
    assert report["engine"]["regime"] == "distributed" and report["engine"]["fit_method"]["quantiles"] == "kll"
    assert_complete(out, partitions.discover(partitioned["input"]))

    fitted = {s["method"]: s["state"] for s in json.loads((d / "dist.json").read_text())["steps"]}
    exact = {s["method"]: s["state"] for s in json.loads((d / "single.json").read_text())["steps"]}
    method = json.loads((d / "dist.json").read_text())["fit_method"]
    assert method["regime"] == "distributed" and method["quantiles"] == "kll"
    for name, keys in {"mean": ["values"], "zscore": ["lower", "upper"], "standard": ["center", "scale"]}.items():
        for key in keys:
            np.testing.assert_allclose(fitted[name][key], exact[name][key], rtol=1e-9, err_msg=f"{name}.{key}")
    assert fitted["onehot"] == exact["onehot"]

    expected = pl.read_parquet(d / "single.parquet").sort("id")
    got = read_folder(out).select(expected.columns)
    assert got["id"].to_list() == expected["id"].to_list()  # the same rows kept, dropped and quarantined
    moments = [c for c in expected.columns if c not in ("income", "region")]
    for c in moments:
        np.testing.assert_allclose(got[c].to_numpy(), expected[c].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=c)

    bound = method["rank_error"]
    raw = pl.scan_parquet(partitioned["input"] / "**" / "*.parquet", hive_partitioning=True).collect()
    clean = raw.join(pl.read_parquet(d / "single.quarantine.parquet").select("id"), on="id", how="anti")
    incomes = clean["income"].drop_nulls().to_numpy()  # the median imputer's input
    assert _within(incomes, fitted["median"]["values"][0], 0.5, bound)
    kept = raw.join(expected.select("id"), on="id", how="semi")["income"].to_numpy()  # the robust scaler's input
    assert _within(kept, fitted["robust"]["center"][0], 0.5, bound)
    q = lambda p: float(np.quantile(kept, min(max(p, 0.0), 1.0), method="inverted_cdf"))  # noqa: E731
    low, high = q(0.75 - bound) - q(0.25 + bound), q(0.75 + bound) - q(0.25 - bound)
    assert low - 1e-9 <= fitted["robust"]["scale"][0] <= high + 1e-9
    print(f"distributed run (fit + transform) of {PARTS} partitions: {seconds:.1f} s; rank error bound {bound:.4f}")
