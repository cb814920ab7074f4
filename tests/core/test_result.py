"""optimlab.result.IterativeResult: status constants, validation, history queries, frozen."""

import dataclasses
import math

import pytest

from optimlab.result import CONVERGED, MAX_ITER, STATUSES, IterativeResult


def test_converged_and_history_queries():
    r = IterativeResult(status=CONVERGED, iterations=3, seconds=0.5,
                        history={"rel_error": [1.0, 1e-2, 1e-5, 1e-9]}, certificate={"gap": 1e-10})
    assert r.converged
    assert r.iterations_to("rel_error", 1e-4) == 2
    assert r.iterations_to("rel_error", 1e-12) is None
    assert r.final("rel_error") == 1e-9
    assert not IterativeResult(status=MAX_ITER, iterations=0).converged
    assert math.isnan(IterativeResult(status=MAX_ITER, iterations=0, history={"x": []}).final("x"))


def test_bad_fields_and_unknown_keys():
    with pytest.raises(ValueError, match="status must be one of"):
        IterativeResult(status="done", iterations=1)
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="iterations must be an integer >= 0"):
            IterativeResult(status=CONVERGED, iterations=bad)
    r = IterativeResult(status=CONVERGED, iterations=1, history={"loss": [1.0]})
    with pytest.raises(ValueError, match=r"key must be one of \['loss'\]"):
        r.iterations_to("rel_error", 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status = MAX_ITER
    assert len(set(STATUSES)) == 7


def test_subclass_adds_solution_fields():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Sol(IterativeResult):
        x: float

    s = Sol(status=CONVERGED, iterations=2, x=1.5)
    assert s.x == 1.5 and s.converged
