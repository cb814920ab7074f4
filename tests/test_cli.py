"""The ``optimlab`` command line, on fake claims registered into the real registry."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from optimlab.cli import app
from optimlab.evidence import AtMost, RatioAtMost, RunContext, register_bench, register_claim, registry
from optimlab.report.plots import new_figure, save_figure
from optimlab.report.schema import ClaimResult

runner = CliRunner()


@pytest.fixture
def fakes(monkeypatch):
    """fake.ok (with a figure), fake.crash (raises) and bench fake.cost; removed again afterwards.

    The real claim modules are not imported (``_import_all`` is a no-op here): these tests do not depend on them.
    """
    monkeypatch.setattr(registry, "_import_all", lambda package: None)

    @register_claim(id="fake.ok", paper="Fake 2024", statement="The fake method always wins.", metric="m",
                    criterion=AtMost(1.0, what="gap"), paper_reported="no number in the paper (derived here)", headline=(("x", "x", ""),))
    def ok(ctx: RunContext) -> ClaimResult:
        fig, ax = new_figure()
        ax.plot([0, 1], [0, 1])
        path = save_figure(fig, ctx.figure_path("fake.ok"))
        return ClaimResult(claim_id="fake.ok", verdict="holds", numbers={"gap": [0.5] * len(ctx.seeds)},
                           summary={"gap": 0.5}, figure=ctx.relative(path))

    @register_claim(id="fake.crash", paper="Fake 2024", statement="This one crashes.", metric="m", criterion=AtMost(1.0, what="x"), paper_reported="no number in the paper (derived here)", headline=(("x", "x", ""),))
    def crash(ctx: RunContext) -> ClaimResult:
        raise RuntimeError("deliberate failure")

    @register_bench(id="fake.cost", paper="Fake", statement="Fake cost ratio.", metric="s", criterion=RatioAtMost(2.0, what="fake cost ratio"), paper_reported="no number in the paper (derived here)", headline=(("x", "x", ""),))
    def cost(ctx: RunContext) -> ClaimResult:
        return ClaimResult(claim_id="fake.cost", verdict="holds", summary={"ratio": 1.5})

    yield
    for cid in ("fake.ok", "fake.crash"):
        registry._CLAIMS.pop(cid, None)
    registry._BENCHES.pop("fake.cost", None)


def test_list_shows_fakes(fakes):
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0, res.output
    for text in ("Claims", "Benchmarks", "fake.ok", "fake.crash", "fake.cost"):
        assert text in res.output


def test_reproduce_writes_report(fakes, tmp_path):
    out = tmp_path / "tmp"
    res = runner.invoke(app, ["reproduce", "fake.ok", "--scale", "smoke", "--seeds", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "fake.ok" in res.output and "inconclusive" in res.output and "report.md" in res.output
    data = json.loads((out / "results.json").read_text())
    assert [r["claim_id"] for r in data["results"]] == ["fake.ok"] and data["scale"] == "smoke"
    assert "| fake.ok | inconclusive |" in (out / "report.md").read_text()
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_reproduce_crash_exit_1(fakes, tmp_path):
    res = runner.invoke(app, ["reproduce", "fake", "--scale", "smoke", "--out", str(tmp_path)])
    assert res.exit_code == 1, res.output
    assert "crashed" in res.output and "fake.crash" in res.output
    status = {r["claim_id"]: r["status"] for r in json.loads((tmp_path / "results.json").read_text())["results"]}
    assert status == {"fake.crash": "error", "fake.ok": "ok"}


def test_reproduce_usage_errors(fakes, tmp_path):
    res = runner.invoke(app, ["reproduce", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "nope" in res.output and "fake.ok" in res.output
    assert runner.invoke(app, ["reproduce", "fake.ok", "--seeds", "0", "--out", str(tmp_path)]).exit_code == 2
    assert runner.invoke(app, ["reproduce", "fake.ok", "--scale", "huge", "--out", str(tmp_path)]).exit_code == 2
    assert not (tmp_path / "results.json").exists()


def test_bench(fakes, tmp_path):
    res = runner.invoke(app, ["bench", "fake.cost", "--scale", "smoke", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "results.json").read_text())["results"][0]["kind"] == "bench"


def test_broken_claim_module_exit_1(fakes, monkeypatch):
    def broken(package):
        raise ImportError("no module named 'missing_dependency'")

    monkeypatch.setattr(registry, "_import_all", broken)
    res = runner.invoke(app, ["reproduce", "fake.ok"])
    assert res.exit_code == 1 and "failed to import" in res.output and "missing_dependency" in res.output


@pytest.mark.parametrize("args", [["--help"], ["list", "--help"], ["reproduce", "--help"], ["bench", "--help"]])
def test_help(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "Usage" in res.output
