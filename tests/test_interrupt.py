"""Killing a benchmark run part-way loses no finished volume, and ``--resume`` completes the rest."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from samradbench.results import loads_strict
from samradbench.synthetic import write_default_data

BENCH_MODULE = Path(__file__).resolve().parents[1] / "benchmarks" / "test_segmentation.py"

SLOW_CONFTEST = '''
import time
from samradbench.generators.oracle import OracleGenerator

_generate = OracleGenerator.generate


def slow_generate(self, rgb, truth):
    time.sleep(0.25)
    return _generate(self, rgb, truth)


OracleGenerator.generate = slow_generate
'''


def _read(path: Path):
    try:
        return loads_strict(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_kill_mid_run_keeps_finished_volumes_and_resume_completes(tmp_path, sig):
    data = write_default_data(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    (work / "test_segmentation.py").write_text(BENCH_MODULE.read_text())
    (work / "conftest.py").write_text(SLOW_CONFTEST)
    results = work / "r.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--data-root", str(data),
           "--results-json", str(results), "--generators", "oracle", "-k", "prostate and pz"]

    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            doc = _read(results)
            if doc and len(doc["cases"]) >= 4:  # one volume: four heuristic rows
                break
            assert proc.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.05)
        else:
            pytest.fail("no volume finished within 120 s")
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()

    doc = loads_strict(results.read_text())  # strict parse: a valid document survives the kill
    # Ctrl-C and SIGTERM end the session in order; only SIGKILL cannot be caught
    assert doc["status"] == ("running" if sig == signal.SIGKILL else "interrupted")
    finished = {r["volume"] for r in doc["cases"]}
    assert 1 <= len(finished) < 3, f"expected an interrupted run, got {finished}"
    for volume in finished:
        assert {r["heuristic"] for r in doc["cases"] if r["volume"] == volume} == {"all", "best", "iou>0.25", "iou>0.5"}
    before = {(r["volume"], r["heuristic"]): r["dice"] for r in doc["cases"]}

    rerun = subprocess.run(cmd + ["--resume"], cwd=work, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert rerun.stdout.count("reused from the earlier run (--resume)") == len(finished)
    final = loads_strict(results.read_text())
    assert len({r["volume"] for r in final["cases"]}) == 3
    assert len(final["cases"]) == 3 * 4
    for key, dice in before.items():
        assert next(r["dice"] for r in final["cases"] if (r["volume"], r["heuristic"]) == key) == dice
