"""Atomic outputs under faults: ``prepflow run`` killed with SIGKILL while it writes.

A killed run may leave its temporary files behind (nothing can run after
SIGKILL), but never a partial output: the output path either does not exist or
holds the complete file, byte-for-byte equal to a reference run's. The next
successful run in the folder removes the stale temporary files of killed runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines import io
from transforms.atomic import TMP_PREFIX

ROWS = 1_500_000
KILLS = 20
# min/max and an exact median are bit-reproducible; Polars' parallel float sums (mean, var) are not
# across processes (last-ulp differences), and this test compares outputs byte for byte
SPEC = "steps:\n  - {kind: scale, method: minmax, columns: [a, b]}\n  - {kind: impute, method: median, columns: [c]}\n"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and /proc semantics")


def prepflow_exe() -> str:
    exe = Path(sys.executable).with_name("prepflow")
    return str(exe) if exe.exists() else "prepflow"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX))


@dataclass(frozen=True)
class Setup:
    root: Path
    input: Path
    spec: Path
    input_sha: str
    reference: str  # sha256 of the complete output
    write_window: float  # seconds from the first temporary file to the output's rename


def _command(s: Setup, out_dir: Path) -> list[str]:
    return [prepflow_exe(), "run", str(s.spec), "--input", str(s.input), "--output", str(out_dir / "out.csv"),
            "--report", str(out_dir / "report.json"), "--quiet"]  # fmt: skip


def _start_and_watch(cmd: list[str], out_dir: Path, kill_after: float | None) -> tuple[int, float | None]:
    """Run ``cmd``; once its temporary file appears, SIGKILL it after ``kill_after`` seconds.

    Returns the exit status and the write phase seen: seconds from the temporary
    file appearing to the output appearing (or to the kill).
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mine = f"{TMP_PREFIX}{proc.pid}."
    seen: float | None = None
    written: float | None = None
    try:
        while proc.poll() is None:
            if seen is None and any(name.startswith(mine) for name in os.listdir(out_dir)):
                seen = time.perf_counter()
                if kill_after is not None:
                    time.sleep(kill_after)
                    proc.send_signal(signal.SIGKILL)
                    written = time.perf_counter()
                    break
            if seen is not None and written is None and (out_dir / "out.csv").exists():
                written = time.perf_counter()
            time.sleep(0.002)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, (written - seen) if seen is not None and written is not None else None


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("atomic")
    rng = np.random.default_rng(0)
    c = rng.normal(size=ROWS)
    c[::7] = np.nan
    pl.DataFrame(
        {"a": rng.normal(50, 10, ROWS), "b": rng.lognormal(3, 1, ROWS), "c": c, "k": rng.integers(0, 9, ROWS)}
    ).write_parquet(root / "in.parquet")
    (root / "spec.yaml").write_text(SPEC)
    ref_dir = root / "reference"
    ref_dir.mkdir()
    s = Setup(root, root / "in.parquet", root / "spec.yaml", _sha(root / "in.parquet"), "", 0.0)
    code, window = _start_and_watch(_command(s, ref_dir), ref_dir, None)
    assert code == 0 and window is not None
    assert _temps(ref_dir) == []
    return Setup(s.root, s.input, s.spec, s.input_sha, _sha(ref_dir / "out.csv"), window)


@pytest.mark.slow
def test_sigkill_during_write_never_leaves_a_partial_output(setup: Setup) -> None:
    rng = random.Random(20240531)
    folders = [setup.root / f"killed{i}" for i in range(2)]
    for f in folders:
        f.mkdir()
    # the write phase measured as the kills will run: two runs at once, on the machine's load now (the
    # fixture's lone run may have met another load: kills timed from it could all land too late)
    with ThreadPoolExecutor(max_workers=2) as pool:
        watched = list(pool.map(lambda f: _start_and_watch(_command(setup, f), f, None), folders))
    assert all(code == 0 and window is not None for code, window in watched), watched
    window = min(w for _, w in watched if w is not None)
    delays = [rng.uniform(0, window * 1.5) for _ in range(KILLS)]  # about two thirds inside it

    def one(i: int) -> tuple[int, float | None, bool, bool]:
        folder = folders[i % 2]
        for name in ("out.csv", "report.json"):
            (folder / name).unlink(missing_ok=True)
        code, after = _start_and_watch(_command(setup, folder), folder, delays[i])
        out, report = folder / "out.csv", folder / "report.json"
        if out.exists():  # complete, or not there at all
            assert _sha(out) == setup.reference, f"kill {i} after {delays[i]:.3f}s left a different output"
        if report.exists():
            assert json.loads(report.read_text())["rows"]["in"] == ROWS
        assert _sha(setup.input) == setup.input_sha
        return code, after, out.exists(), bool(_temps(folder))

    with ThreadPoolExecutor(max_workers=2) as pool:  # two folders, one run in each at a time
        results = []
        for start in range(0, KILLS, 2):
            results.extend(pool.map(one, range(start, min(start + 2, KILLS))))

    killed = [r for r in results if r[0] == -signal.SIGKILL]
    mid_write = sum(1 for r in killed if not r[2])
    print(  # shown with -s: how the kills landed
        f"{len(results)} runs, {len(killed)} killed, {mid_write} killed before the output appeared, "
        f"{sum(r[3] for r in results)} left temporary files; write window {window:.2f}s "
        f"({setup.write_window:.2f}s alone)"
    )
    assert len(results) >= 20
    # most kills land inside the write phase (the temporary file exists, no output yet)
    assert mid_write >= KILLS // 3, results
    assert any(r[3] for r in results), "no killed run left a temporary file: the kills missed the write phase"

    # a successful run in a folder with stale temporary files removes them, and leaves none of its own
    for folder in folders:
        code, _ = _start_and_watch(_command(setup, folder), folder, None)
        assert code == 0
        assert _temps(folder) == []
        assert _sha(folder / "out.csv") == setup.reference
    assert _sha(setup.input) == setup.input_sha


# --- the clean-up rule, in process ------------------------------------------------------------


def _tmp_name(pid: int, host: str | None = None) -> str:
    return f"{TMP_PREFIX}{pid}.{host or io._HOST}-0123456789ab.parquet"


def _old(p: Path) -> Path:
    p.write_bytes(b"partial")
    old = io._STARTED - 60
    os.utime(p, (old, old))
    return p


def test_cleanup_removes_only_stale_files_of_dead_processes(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = _old(tmp_path / _tmp_name(dead.pid))
        running = _old(tmp_path / _tmp_name(alive.pid))  # a concurrent run, still writing
        ours = _old(tmp_path / _tmp_name(os.getpid()))
        other_host = _old(tmp_path / _tmp_name(dead.pid, host="ffffffff"))
        legacy = _old(tmp_path / f"{TMP_PREFIX}abc123.parquet")  # transforms.atomic's names carry no pid
        fresh = tmp_path / _tmp_name(dead.pid).replace("0123", "9999")
        fresh.write_bytes(b"newer than this process")
        user = _old(tmp_path / "data.parquet")
        removed = io.clean_stale_temp_files(tmp_path)
    finally:
        alive.kill()
        alive.wait()
    assert removed == [stale]
    assert not stale.exists()
    assert all(p.exists() for p in (running, ours, other_host, legacy, fresh, user))


def test_write_frames_cleans_then_writes_all_or_nothing(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = _old(tmp_path / _tmp_name(dead.pid))
    df = pl.DataFrame({"a": [1, 2]})
    io.write_frames({tmp_path / "o.parquet": df, tmp_path / "q.csv": df}, {tmp_path / "r.json": "{}"})
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.parquet", "q.csv", "r.json"]

    class Boom(Exception):
        pass

    def fail(_df: pl.DataFrame, _p: Path) -> None:
        raise Boom

    io.WRITERS[".boom"] = fail
    try:
        with pytest.raises(Boom):
            io.write_frames({tmp_path / "new.parquet": df, tmp_path / "x.boom": df}, {tmp_path / "new.json": "{}"})
    finally:
        del io.WRITERS[".boom"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.parquet", "q.csv", "r.json"]
