"""The installed console script on a real claim, as a user runs it (a subprocess, not CliRunner)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def optimlab_cmd():
    exe = Path(sys.executable).with_name("optimlab")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("optimlab")
    if found is None:
        pytest.skip("the optimlab console script is not installed")
    return [found]


def test_list_and_reproduce_a_real_claim_at_smoke_scale(tmp_path):
    listing = subprocess.run(optimlab_cmd() + ["list"], capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "sam.flat_minima" in listing.stdout
    out = tmp_path / "run"
    run = subprocess.run(optimlab_cmd() + ["reproduce", "sam.flat_minima", "--scale", "smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["claim_id"] for r in results] == ["sam.flat_minima"]
    assert results[0]["verdict"] == "inconclusive" and results[0]["status"] == "ok"
    report = (out / "report.md").read_text()
    assert "sam.flat_minima" in report and "sgd_trace" in report
    assert (out / "figures" / "sam.flat_minima.png").stat().st_size > 1000
    assert "data:image/png;base64," in (out / "report.html").read_text()
