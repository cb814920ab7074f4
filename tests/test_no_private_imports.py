"""No module imports another package's private (``_name``) objects or modules (docs/DESIGN.md, Layout).

An AST scan of every ``.py`` under ``src/optimlab`` and ``tests``. A module of ``optimlab.<pkg>`` (or a test under
``tests/<pkg>/``) may import the privates of ``optimlab.<pkg>`` only. Allowed everywhere: the public names of the
core modules (``optimlab._validation``, ``_random``, ``_numerics``, ``_wrapper``), which are the package's shared
core. ``optimlab.experiments._fixtures`` (the claims' fixtures) may also be imported by ``optimlab.bench``.
What two packages share belongs in a core module or behind a public name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = {"optimlab._validation", "optimlab._random", "optimlab._numerics", "optimlab._wrapper"}
SHARED_HELPERS = {"optimlab.experiments._fixtures": {"optimlab.experiments", "optimlab.bench"}}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def owner_of(path: Path, root: Path = ROOT) -> tuple[str | None, str | None]:
    """``(owner package, the module's own dotted package for relative imports)``.

    ``src/optimlab/sam/base.py`` → ``("optimlab.sam", "optimlab.sam")``; ``src/optimlab/cli.py`` →
    ``("optimlab.cli", "optimlab")``; ``tests/sam/test_sam.py`` → ``("optimlab.sam", None)``; a test at the top of
    ``tests/`` owns nothing (``None``).
    """
    rel = path.relative_to(root).parts
    if rel[:2] == ("src", "optimlab"):
        inner = rel[2:]
        package = ".".join(("optimlab", *inner[:-1]))
        if len(inner) == 1:
            stem = Path(inner[0]).stem
            return ("optimlab" if stem == "__init__" else f"optimlab.{stem}"), package
        return f"optimlab.{inner[0]}", package
    if rel[0] == "tests" and len(rel) > 2:
        return f"optimlab.{rel[1]}", None
    return None, None


def _top(module: str) -> str:
    """``optimlab.sam.base`` → ``optimlab.sam``; ``optimlab`` → ``optimlab``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _allowed(owner: str | None, target: str, private_module: bool) -> bool:
    """May ``owner`` import something private whose module is ``target``?"""
    if owner is not None and (_top(target) == owner or target == owner):
        return True
    if private_module and target in CORE:
        return True
    return owner in SHARED_HELPERS.get(target, set())


def offences(source: str, owner: str | None, package: str | None) -> list[tuple[int, str]]:
    """``(line, text)`` for each import in ``source`` that takes another package's private name or module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if package is None:
                    continue
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            pairs = [(base, alias.name) for alias in node.names]
        else:
            continue
        for module, name in pairs:
            if module != "optimlab" and not module.startswith("optimlab."):
                continue
            parts = module.split(".")[1:]
            if name is not None and module == "optimlab" and _private(name):  # from optimlab import _random
                module, name = f"optimlab.{name}", None
                parts = module.split(".")[1:]
            private_module = next((".".join(["optimlab", *parts[: i + 1]]) for i, p in enumerate(parts)
                                   if _private(p)), None)
            if private_module is not None and not _allowed(owner, private_module, True):
                found.append((node.lineno, f"imports private module {private_module}"))
            elif name is not None and _private(name) and not _allowed(owner, module, False):
                found.append((node.lineno, f"imports private name {name} from {module}"))
    return found


def scan(root: Path = ROOT) -> list[str]:
    lines = []
    for folder in (root / "src" / "optimlab", root / "tests"):
        for path in sorted(folder.rglob("*.py")):
            owner, package = owner_of(path, root)
            try:
                source = path.read_text(encoding="utf-8")
                found = offences(source, owner, package)
            except (SyntaxError, UnicodeDecodeError) as e:  # a file mid-edit: not this test's business
                found = [(0, f"could not be parsed ({type(e).__name__})")]
            lines += [f"{path.relative_to(root)}:{line}: {text} (owner: {owner or 'none'})" for line, text in found]
    return lines


@pytest.mark.parametrize(("source", "owner", "package", "bad"), [
    ("from optimlab.matfac.problems import _BLOCK_ELEMENTS", "optimlab.bench", "optimlab.bench", True),
    ("from optimlab.matfac.problems import _BLOCK_ELEMENTS", "optimlab.matfac", "optimlab.matfac", False),
    ("from optimlab.experiments.nora import _require_float64", "optimlab.matfac", None, True),
    ("from optimlab.experiments.nora import _require_float64", "optimlab.experiments", None, False),
    ("from optimlab.metrics._model import flat", "optimlab.sam", "optimlab.sam", True),
    ("import optimlab.metrics._model", "optimlab.sam", "optimlab.sam", True),
    ("from optimlab.metrics import _model", "optimlab.sam", "optimlab.sam", True),
    ("from optimlab._validation import Interval", "optimlab.sam", "optimlab.sam", False),
    ("from optimlab import _random", "optimlab.zo", "optimlab.zo", False),
    ("from optimlab._random import _secret", "optimlab.zo", "optimlab.zo", True),
    ("from optimlab._random import _secret", None, None, True),
    ("from optimlab.experiments._fixtures import make_mlp", "optimlab.bench", "optimlab.bench", False),
    ("from optimlab.experiments._fixtures import make_mlp", "optimlab.sam", None, True),
    ("from optimlab.experiments._label_noise import runs", "optimlab.experiments", "optimlab.experiments", False),
    ("from optimlab.experiments._label_noise import runs", "optimlab.bench", "optimlab.bench", True),
    ("from ._model import flat", "optimlab.metrics", "optimlab.metrics", False),
    ("from ..matfac.problems import _X", "optimlab.bench", "optimlab.bench", True),
    ("from torch.utils._pytree import tree_leaves", "optimlab.bench", "optimlab.bench", False),
    ("from optimlab.sam import __version__", None, None, False),
    ("def f():\n    from optimlab.comm.hooks import _BucketStep", "optimlab.experiments", None, True),
])
def test_the_rule_on_examples(source, owner, package, bad):
    assert bool(offences(source, owner, package)) is bad


def test_owner_of_paths():
    assert owner_of(ROOT / "src/optimlab/sam/base.py") == ("optimlab.sam", "optimlab.sam")
    assert owner_of(ROOT / "src/optimlab/cli.py") == ("optimlab.cli", "optimlab")
    assert owner_of(ROOT / "tests/matfac/test_init.py") == ("optimlab.matfac", None)
    assert owner_of(ROOT / "tests/test_cli.py") == (None, None)


def test_no_module_imports_another_packages_privates():
    found = scan()
    if found:
        pytest.fail(f"{len(found)} import(s) of another package's private names or modules (make the name public, "
                    "or move what is shared into a core module):\n" + "\n".join(found), pytrace=False)
