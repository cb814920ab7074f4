"""Criteria made of criteria: :class:`AllChecks` (every part must hold) and :class:`Gate` (a precondition).

Inputs are handed to a part by one rule (:func:`apply`): a ``tuple`` is spread as positional arguments, a
``dict`` as keyword arguments, anything else (a number, a list of per-seed differences) is the one argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optimlab.evidence.criteria import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, Criterion, Outcome, _text

__all__ = ["Agreement", "AllChecks", "Gate", "apply"]


def apply(criterion: Criterion, given: Any) -> Outcome:
    """``criterion.evaluate`` on ``given``: a tuple → ``*given``, a dict → ``**given``, else the one argument."""
    if isinstance(given, tuple):
        return criterion.evaluate(*given)
    if isinstance(given, dict):
        return criterion.evaluate(**given)
    return criterion.evaluate(given)


def _check_criterion(name: str, value: Any) -> Criterion:
    if not isinstance(value, Criterion):
        raise ValueError(f"{name} must be a Criterion, got {type(value).__name__}")
    return value


class AllChecks(Criterion):
    """Several named criteria that must all hold, e.g.
    ``AllChecks(trace=PairedSign(...), lambda_max=PairedSign(...))`` (or ``AllChecks({"trace": ..., ...})``).

    ``evaluate(**inputs)``: ``inputs[name]`` is the argument of the part ``name`` (see :func:`apply`); every part
    needs one. ``holds`` if every part holds; ``does not hold`` if any part does not hold; else ``inconclusive``.
    Details: each part's details as ``<name>_<key>`` and its verdict as ``<name>_verdict``.
    ``min_seeds`` is the largest of the parts'.
    """

    def __init__(self, parts: Mapping[str, Criterion] | None = None, /, **named: Criterion) -> None:
        merged = {**(dict(parts) if parts is not None else {}), **named}
        if parts is not None and set(parts) & set(named):
            raise ValueError(f"parts named twice: {sorted(set(parts) & set(named))}")
        if not merged:
            raise ValueError("parts must name at least one criterion")
        for name, part in merged.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"parts must be named by identifiers, got {name!r}")
            _check_criterion(f"parts[{name!r}]", part)
        self._parts = merged

    @property
    def parts(self) -> dict[str, Criterion]:
        return dict(self._parts)

    @property
    def min_seeds(self) -> int:  # type: ignore[override]
        return max(p.min_seeds for p in self._parts.values())

    def __repr__(self) -> str:
        return f"AllChecks({', '.join(f'{k}={v!r}' for k, v in self._parts.items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AllChecks) and other._parts == self._parts

    def __hash__(self) -> int:
        return hash(tuple(self._parts.items()))

    def requirement(self) -> str:
        return " and ".join(p.requirement() for p in self._parts.values())

    def describe(self) -> str:
        items = "; ".join(f"({i}) {name}: {p.describe()}" for i, (name, p) in enumerate(self._parts.items(), 1))
        return (f"all of {len(self._parts)} checks — {items}. Holds if every check holds; does not hold if any "
                f"does not hold; inconclusive otherwise")

    def evaluate(self, **inputs: Any) -> Outcome:
        missing = [k for k in self._parts if k not in inputs]
        extra = [k for k in inputs if k not in self._parts]
        if missing or extra:
            raise ValueError(f"AllChecks needs one input per check {list(self._parts)}; missing {missing}, "
                             f"unknown {extra}")
        outcomes = {name: apply(part, inputs[name]) for name, part in self._parts.items()}
        details: dict[str, float | int | str] = {}
        for name, out in outcomes.items():
            details[f"{name}_verdict"] = out.verdict
            details.update({f"{name}_{k}": v for k, v in out.details.items()})
        verdicts = [o.verdict for o in outcomes.values()]
        if all(v == HOLDS for v in verdicts):
            verdict = HOLDS
        elif DOES_NOT_HOLD in verdicts:
            verdict = DOES_NOT_HOLD
        else:
            verdict = INCONCLUSIVE
        reason = "; ".join(f"{name}: {o.reason}" for name, o in outcomes.items() if o.reason)
        return Outcome(verdict, details, reason)


class Gate(Criterion):
    """A precondition in front of a criterion: ``Gate(condition, then, why=...)``.

    ``evaluate(condition_input, then_input)``: when ``condition`` does not hold, the verdict is ``inconclusive``
    with ``why`` as the reason (e.g. "sharpness is only comparable at a similar training loss"); otherwise it
    is ``then``'s outcome. Both inputs follow :func:`apply`. Details: ``then``'s details, the condition's as
    ``gate_<key>``, and ``gate_verdict``. ``min_seeds`` is ``then``'s.
    """

    def __init__(self, condition: Criterion, then: Criterion, *, why: str) -> None:
        self.condition = _check_criterion("condition", condition)
        self.then = _check_criterion("then", then)
        if not isinstance(why, str) or not why.strip():
            raise ValueError(f"why must be a non-empty string, got {why!r}")
        self.why = why

    @property
    def min_seeds(self) -> int:  # type: ignore[override]
        return self.then.min_seeds

    def __repr__(self) -> str:
        return f"Gate({self.condition!r}, {self.then!r}, why={self.why!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Gate) and (other.condition, other.then, other.why) == (
            self.condition, self.then, self.why)

    def __hash__(self) -> int:
        return hash((self.condition, self.then, self.why))

    def requirement(self) -> str:
        return f"{self.condition.requirement()} and {self.then.requirement()}"

    def describe(self) -> str:
        return f"{self.then.describe()}; inconclusive unless {self.condition.requirement()} ({self.why})"

    def evaluate(self, condition_input: Any, then_input: Any) -> Outcome:
        gate = apply(self.condition, condition_input)
        then = apply(self.then, then_input)
        details = {**then.details, "gate_verdict": gate.verdict, **{f"gate_{k}": v for k, v in gate.details.items()}}
        if gate.verdict != HOLDS:
            why = f"precondition not met: {self.why}" + (f" ({gate.reason})" if gate.reason else "")
            return Outcome(INCONCLUSIVE, details, f"{why}; the comparison alone gave: {then.verdict}")
        return Outcome(then.verdict, details, then.reason)


class Agreement(Criterion):
    """One criterion (``part``) applied to each of several named arms: ``Agreement(part, arms=("snr", ...),
    what="InfoSAM arm")``.

    ``evaluate(**inputs)``: ``inputs[arm]`` is the argument of ``part`` for that arm (a tuple is spread, a dict passed
    as keywords, anything else is the one argument). The verdict is the arms' common verdict; ``inconclusive`` if
    they differ. Details: each arm's details as ``<arm>_<key>`` and its verdict as ``<arm>_verdict``.
    ``min_seeds`` is the part's.
    """

    def __init__(self, part: Criterion, *, arms: Sequence[str], what: str) -> None:
        if not isinstance(part, Criterion):
            raise ValueError(f"part must be a Criterion, got {type(part).__name__}")
        arms = tuple(arms)
        if not arms or any(not isinstance(a, str) or not a.isidentifier() for a in arms) or len(set(arms)) < len(arms):
            raise ValueError(f"arms must be distinct identifiers, at least one, got {arms!r}")
        self.part, self.arms, self.what = part, arms, _text("what", what)

    @property
    def min_seeds(self) -> int:  # type: ignore[override]
        return self.part.min_seeds

    def __repr__(self) -> str:
        return f"Agreement({self.part!r}, arms={self.arms!r}, what={self.what!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Agreement) and (other.part, other.arms, other.what) == (
            self.part, self.arms, self.what)

    def __hash__(self) -> int:
        return hash((self.part, self.arms, self.what))

    def describe(self) -> str:
        return (f"for each {self.what} ({', '.join(self.arms)}): {self.part.describe()}. The verdict is the common "
                f"verdict of the {len(self.arms)} arm(s); inconclusive if they differ")

    def evaluate(self, **inputs: Any) -> Outcome:
        if set(inputs) != set(self.arms):
            raise ValueError(f"Agreement needs one input per arm {list(self.arms)}, got {sorted(inputs)}")
        outcomes = {arm: apply(self.part, inputs[arm]) for arm in self.arms}
        details: dict[str, float | int | str] = {}
        for arm, out in outcomes.items():
            details[f"{arm}_verdict"] = out.verdict
            details.update({f"{arm}_{k}": v for k, v in out.details.items()})
        verdicts = {o.verdict for o in outcomes.values()}
        verdict = next(iter(verdicts)) if len(verdicts) == 1 else INCONCLUSIVE
        reasons = [f"{arm}: {o.reason}" for arm, o in outcomes.items() if o.reason]
        if len(verdicts) > 1:
            reasons.append("the arms disagree (" + ", ".join(f"{a}: {o.verdict}" for a, o in outcomes.items()) + ")")
        return Outcome(verdict, details, "; ".join(reasons))
