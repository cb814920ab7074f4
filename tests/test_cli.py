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
    md = (out / "report.md").read_text()
    assert "[fake.ok](#claim-fake.ok) **inconclusive**" in md and "- **commit:** " in md
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


def test_report_renders_existing_results_without_running(fakes, tmp_path, monkeypatch):
    claims, bench = tmp_path / "claims", tmp_path / "bench"
    assert runner.invoke(app, ["reproduce", "fake", "--scale", "smoke", "--out", str(claims)]).exit_code == 1
    assert runner.invoke(app, ["bench", "fake.cost", "--scale", "smoke", "--out", str(bench)]).exit_code == 0

    def never(*a, **kw):
        raise AssertionError("optimlab report must not run claims")

    monkeypatch.setattr("optimlab.cli.run_claims", never)
    md, page = tmp_path / "docs" / "results.md", tmp_path / "results.html"
    res = runner.invoke(app, ["report", str(claims), str(bench / "results.json"), "--markdown", str(md),
                              "--html", str(page)])
    assert res.exit_code == 0, res.output  # a crashed claim in the files is reported, not an error
    text = md.read_text()
    assert text.startswith("# optimlab results\n") and "## Paper claims" in text and "## Benchmarks" in text
    assert "- **results file:** [../claims/results.json](../claims/results.json)" in text
    assert "![fake.ok](../claims/figures/fake.ok.png)" in text and "**error**" in text
    html = page.read_text()
    assert "data:image/png;base64," in html and '<nav class="toc">' in html
    again = runner.invoke(app, ["report", str(claims), str(bench), "--markdown", str(md)])
    assert again.exit_code == 0 and md.read_text() == text  # same files, same bytes
    assert not [p for p in md.parent.iterdir() if p.name.endswith(".tmp")]


def test_report_to_stdout_and_usage_errors(fakes, tmp_path):
    runner.invoke(app, ["reproduce", "fake.ok", "--scale", "smoke", "--out", str(tmp_path / "run")])
    res = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0 and res.stdout.startswith("# optimlab report: paper claims")
    res = runner.invoke(app, ["report", str(tmp_path / "run"), "--markdown", "-", "--title", "My title"])
    assert res.exit_code == 0 and res.stdout.startswith("# My title\n")
    res = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "bad.json").write_text("{not json")
    res = runner.invoke(app, ["report", str(tmp_path / "bad.json"), "--html", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "not a results file" in res.output and not (tmp_path / "r.html").exists()
    assert runner.invoke(app, ["report"]).exit_code == 2


@pytest.mark.parametrize("args", [["--help"], ["list", "--help"], ["reproduce", "--help"], ["bench", "--help"],
                                  ["report", "--help"]])
def test_help(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "Usage" in res.output
