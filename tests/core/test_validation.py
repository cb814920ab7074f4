"""optimlab._validation: the one ValueError style, booleans never numbers, normalisation, unions."""

import math

import pytest

from optimlab._validation import AnyOf, Instance, Interval, Options, check, validate


@pytest.mark.parametrize(("closed", "inside", "outside"), [
    ("both", [0, 1, 0.5], [-1e-9, 1 + 1e-9]),
    ("left", [0, 0.999], [1, -0.1]),
    ("right", [1, 1e-12], [0, 1.1]),
    ("neither", [0.5], [0, 1]),
])
def test_interval_bounds(closed, inside, outside):
    c = Interval(0, 1, closed=closed)
    for v in inside:
        assert check(c, v, "x") == float(v)
    for v in outside:
        with pytest.raises(ValueError, match="x must be a finite number in"):
            check(c, v, "x")


def test_booleans_nan_inf_and_strings_are_never_numbers():
    c = Interval(0, math.inf, closed="left")
    for bad in (True, False, math.nan, math.inf, "0.1", None):
        with pytest.raises(ValueError) as err:
            check(c, bad, "rho", owner="SAM")
        msg = str(err.value)
        assert msg.startswith("SAM: rho must be a finite number in [0, inf)")
        assert repr(bad) in msg


def test_interval_normalises_and_integer_intervals_reject_floats():
    assert isinstance(check(Interval(0, None), 1, "rho"), float)
    c = Interval(1, None, integer=True)
    assert check(c, 3, "n") == 3 and isinstance(check(c, 3, "n"), int)
    for bad in (1.0, 0, True):
        with pytest.raises(ValueError, match="n must be an integer in"):
            check(c, bad, "n")


def test_options_distinguish_bools_ints_and_none():
    c = Options(None, "asam", 1)
    assert check(c, None, "c") is None and check(c, "asam", "c") == "asam" and check(c, 1, "c") == 1
    for bad in (True, "ASAM", 1.5):
        with pytest.raises(ValueError, match=r"c must be one of \(None, 'asam', 1\)"):
            check(c, bad, "c")


def test_instance_and_anyof_with_remedy():
    c = AnyOf(Options(None, "ema"), Instance(callable), remedy="see PreSAM")
    assert check(c, print, "objective") is print
    with pytest.raises(ValueError, match=r"objective must be one of \(None, 'ema'\) or a callable, got 'x'; see PreSAM"):
        check(c, "x", "objective")
    with pytest.raises(ValueError, match="a int"):
        check(Instance(int), True, "k")


def test_validate_checks_declared_keys_only_and_reports_the_owner():
    table = {"rho": Interval(0, None), "bn": Options("snapshot", "none")}
    assert validate(table, {"rho": 2, "lr": "anything"}, owner="SAM") == {"rho": 2.0, "lr": "anything"}
    with pytest.raises(ValueError, match="^SAM: bn must be one of"):
        validate(table, {"bn": "bogus"}, owner="SAM")


def test_constraint_constructors_validate_themselves():
    with pytest.raises(ValueError, match="closed"):
        Interval(0, 1, closed="open")
    with pytest.raises(ValueError, match="low must be <= high"):
        Interval(2, 1)
    with pytest.raises(ValueError):
        Options()
