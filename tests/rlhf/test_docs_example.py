"""The guide's plain online-DPO loop runs as written, in docs/rlhf.md and in the README's copy."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "rlhf.md"
HEADING = "## Plugging the source selector into your own online DPO loop"
README_HEADING = "## Online RLHF: plugging the source selector into your own online DPO loop"


def _blocks(section: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.parametrize(("path", "heading"), [(DOC, HEADING), (ROOT / "README.md", README_HEADING)],
                         ids=["guide", "readme"])
def test_plain_loop_example_runs(capsys, path, heading):
    text = path.read_text()
    assert heading in text
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    (code,) = _blocks(section)
    scope: dict = {}
    exec(compile(code, str(path), "exec"), scope)
    sel = scope["sel"]
    assert sel.counts.sum() > 0 and sel.counts[sel.null_arm] > 0
    assert "plays per arm" in capsys.readouterr().out


def test_quick_start_runs():
    text = DOC.read_text()
    code = _blocks(text.split("## Quick start", 1)[1].split("\n## ", 1)[0])[0]
    exec(compile(code.replace("T=300", "T=60"), str(DOC), "exec"), {})
