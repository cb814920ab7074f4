"""The header of results.json: commit (with a dirty mark), scale and the machine; never fails outside git."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from optimlab.evidence import runner
from optimlab.evidence.runner import git_commit, run_metadata


def test_metadata_names_commit_scale_and_machine():
    meta = run_metadata("quick", "cpu")
    assert meta["scale"] == "quick" and meta["device"] == "cpu"
    for key in ("optimlab_version", "created", "commit", "torch", "threads", "platform", "cpu", "cpu_count",
                "python"):
        assert key in meta, key
    assert isinstance(meta["threads"], int) and meta["threads"] >= 1 and meta["commit"]


def test_git_commit_outside_a_checkout_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"


def test_git_commit_never_raises(monkeypatch):
    def broken(*a, **kw):
        raise FileNotFoundError("git")

    monkeypatch.setattr(runner.subprocess, "run", broken)
    assert git_commit() == "unknown"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_short_hash_and_dirty_mark(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("b")
    assert git_commit(tmp_path) == head + "+dirty"
