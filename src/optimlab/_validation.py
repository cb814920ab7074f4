"""Declarative hyperparameter constraints with one ``ValueError`` style for the whole library.

A class declares its hyperparameters once::

    class SharpnessAware(WrappedOptimizer):
        _constraints = {**WrappedOptimizer._constraints, "rho": Interval(0, math.inf, closed="left")}

and the same table checks ``__init__``, ``add_param_group`` and per-group values after ``load_state_dict``
(modelled on scikit-learn's ``_parameter_constraints``). Rules shared by every constraint:

* booleans are never numbers (``rho=True`` is an error, not 1.0);
* a real interval accepts ints and floats and returns a ``float`` (``rho=1`` gives 1.0); an integer interval
  accepts only ints; NaN never passes;
* the error is a ``ValueError`` naming the owner and the argument, the allowed set, the value given, and the
  remedy where one is known.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["AnyOf", "Constraint", "Instance", "Interval", "Options", "check", "validate"]


class Constraint:
    """One allowed set. Subclasses implement :meth:`accepts` and :meth:`__str__` (the allowed set, in words)."""

    remedy: str = ""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def normalize(self, value: Any) -> Any:
        """The value as stored (``float`` for real intervals); called only on accepted values."""
        return value

    def check(self, value: Any, name: str, *, owner: str = "") -> Any:
        """Return the normalised value or raise ``ValueError`` naming ``name`` (and ``owner``)."""
        if not self.accepts(value):
            where = f"{owner}: " if owner else ""
            shown = f"{value!r} ({type(value).__name__})" if not isinstance(value, (int, float, str)) \
                or isinstance(value, bool) else repr(value)
            remedy = f"; {self.remedy}" if self.remedy else ""
            raise ValueError(f"{where}{name} must be {self}, got {shown}{remedy}")
        return self.normalize(value)


class Interval(Constraint):
    """A real (or integer) interval between ``low`` and ``high`` (``None`` or ±inf: unbounded).

    ``closed`` is ``"both"``, ``"left"``, ``"right"`` or ``"neither"``. Infinite endpoints are never included
    (``Interval(0, inf, closed="left")`` is [0, ∞) and rejects inf).
    """

    _CLOSED = ("both", "left", "right", "neither")

    def __init__(self, low: float | None, high: float | None, *, closed: str = "both", integer: bool = False,
                 remedy: str = "") -> None:
        if closed not in self._CLOSED:
            raise ValueError(f"Interval: closed must be one of {self._CLOSED}, got {closed!r}")
        self.low = -math.inf if low is None else low
        self.high = math.inf if high is None else high
        if self.low > self.high:
            raise ValueError(f"Interval: low must be <= high, got low={low!r}, high={high!r}")
        self.closed, self.integer, self.remedy = closed, integer, remedy

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.integer:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real):
            return False
        v = float(value)
        if not math.isfinite(v):
            return False
        left_ok = v >= self.low if self.closed in ("both", "left") else v > self.low
        right_ok = v <= self.high if self.closed in ("both", "right") else v < self.high
        return left_ok and right_ok

    def normalize(self, value: Any) -> Any:
        return int(value) if self.integer else float(value)

    def __str__(self) -> str:
        lb = "[" if self.closed in ("both", "left") and math.isfinite(self.low) else "("
        rb = "]" if self.closed in ("both", "right") and math.isfinite(self.high) else ")"
        kind = "an integer" if self.integer else "a finite number"
        fmt = (lambda x: str(int(x))) if self.integer else (lambda x: f"{x:g}")
        lo = "-inf" if self.low == -math.inf else fmt(self.low)
        hi = "inf" if self.high == math.inf else fmt(self.high)
        return f"{kind} in {lb}{lo}, {hi}{rb}"


class Options(Constraint):
    """One of the listed values (compared with ``==``; booleans and ints are never confused)."""

    def __init__(self, *values: Any, remedy: str = "") -> None:
        if not values:
            raise ValueError("Options: give at least one value")
        self.values, self.remedy = values, remedy

    def accepts(self, value: Any) -> bool:
        return any((type(value) is type(v) and value == v) or value is v for v in self.values)

    def __str__(self) -> str:
        return "one of (" + ", ".join(repr(v) for v in self.values) + ")"


class Instance(Constraint):
    """An instance of one of ``types`` (``callable`` is accepted as a type meaning "any callable")."""

    def __init__(self, *types: Any, remedy: str = "") -> None:
        if not types:
            raise ValueError("Instance: give at least one type")
        self.types, self.remedy = types, remedy

    def accepts(self, value: Any) -> bool:
        for t in self.types:
            if t is callable:
                if callable(value):
                    return True
            elif isinstance(value, t) and not (isinstance(value, bool) and t in (int, float, numbers.Real)):
                return True
        return False

    def __str__(self) -> str:
        names = ["a callable" if t is callable else f"a {getattr(t, '__name__', str(t))}" for t in self.types]
        return " or ".join(names)


class AnyOf(Constraint):
    """The union of several constraints (the first that accepts normalises the value)."""

    def __init__(self, *constraints: Constraint, remedy: str = "") -> None:
        if not constraints:
            raise ValueError("AnyOf: give at least one constraint")
        self.constraints, self.remedy = constraints, remedy

    def accepts(self, value: Any) -> bool:
        return any(c.accepts(value) for c in self.constraints)

    def normalize(self, value: Any) -> Any:
        return next(c for c in self.constraints if c.accepts(value)).normalize(value)

    def __str__(self) -> str:
        return " or ".join(str(c) for c in self.constraints)


def check(constraint: Constraint, value: Any, name: str, *, owner: str = "") -> Any:
    """Check one value; return it normalised (see :meth:`Constraint.check`)."""
    return constraint.check(value, name, owner=owner)


def validate(constraints: Mapping[str, Constraint], values: Mapping[str, Any], *, owner: str = "") -> dict[str, Any]:
    """Check every key of ``values`` that ``constraints`` declares; return the normalised values.

    Keys without a constraint are returned unchanged (they belong to someone else, e.g. a base optimizer).
    """
    return {k: (constraints[k].check(v, k, owner=owner) if k in constraints else v) for k, v in values.items()}
