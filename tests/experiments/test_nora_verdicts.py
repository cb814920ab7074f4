"""Verdict logic of the ``nora.*`` claims and the ``matfac.*`` benchmarks on hand-made numbers (no training): each
reaches holds, does not hold and inconclusive (docs/DESIGN.md, adding a claim)."""

import math

import pytest
import torch

from optimlab.bench.matfac import INIT_CRITERION, STEP_CRITERION, init_verdict, memory_bound, step_verdict
from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from optimlab.experiments.nora import (
    ASYM_ONE_STEP,
    SENSITIVITY,
    SYM_QUADRATIC,
    UP_LINEAR,
    asym_one_step_verdict,
    require_float64,
    sensitivity_verdict,
    sym_quadratic_verdict,
    tail_floor,
    up_linear_verdict,
)
from optimlab.matfac import SymmetricMF

NAN = math.nan
INITS = ("nystrom", "random_1e-3", "random_1/sqrt(m)")


# ------------------------------------------------------------------------------------------ nora.sym_quadratic
def cell(name, *, tail=(3, 30), n12=(8, 600), n10=(7, 30), quad=(0.5, 5.0), floor=None, seeds=5):
    """Per-seed numbers of one cell: (Nystrom, both random inits) for each statistic."""
    out = {}
    for init in INITS:
        i = 0 if init == "nystrom" else 1
        for key, pair in (("tail", tail), ("N1e-12", n12), ("N1e-10", n10), ("max (e+/e^2)/B_t", quad)):
            out[f"{name} {key} {init}"] = [pair[i]] * seeds
    if floor is not None:
        out[f"{name} tail eps0 -> 100 eps kappa nystrom"] = [floor] * seeds
    return out


CELLS = {"r=5,kappa=10": (5, 10.0), "r=10,kappa=10": (10, 10.0)}


def good():
    return {**cell("r=5,kappa=10", n12=(8, 40)), **cell("r=10,kappa=10")}


def test_sym_quadratic_holds_on_reference_like_numbers():
    out = sym_quadratic_verdict(good(), CELLS, scale="quick")
    assert out.verdict == HOLDS
    assert out.details["nystrom_tail_value"] == 3 and out.details["n12_exact_value"] == 5.0
    assert out.details["n12_op_value"] == 75.0 and out.details["random_not_quadratic_value"] == 5.0


@pytest.mark.parametrize("change", [
    lambda n: n.update(cell("r=10,kappa=10", tail=(7, 30))),  # Nystrom tail 7 > 6 in one cell
    lambda n: n.update(cell("r=10,kappa=10", tail=(3, 14))),  # random tail below 15
    lambda n: n.update(cell("r=5,kappa=10", n12=(8, 11))),  # exact N12 ratio 1.375 < 1.5
    lambda n: n.update(cell("r=10,kappa=10", n12=(8, 72))),  # OP N12 ratio 9 < 10
    lambda n: n.update(cell("r=10,kappa=10", n10=(7, 10))),  # N10 ratio 1.43 < 1.5
    lambda n: n.update(cell("r=5,kappa=10", n12=(8, 40), quad=(1.01, 5.0))),  # a Nystrom step above B_t
    lambda n: n.update(cell("r=10,kappa=10", quad=(NAN, 5.0))),  # a cell with no iterate in the window fails
    lambda n: n.update(cell("r=10,kappa=10", quad=(0.5, 0.9))),  # random looks quadratic
])
def test_sym_quadratic_one_failing_check_gives_does_not_hold(change):
    numbers = good()
    change(numbers)
    assert sym_quadratic_verdict(numbers, CELLS, scale="quick").verdict == DOES_NOT_HOLD


def test_sym_quadratic_window_seeds_and_nan():
    numbers = good()
    numbers["r=5,kappa=10 max (e+/e^2)/B_t nystrom"][:4] = [NAN] * 4  # one seed measured is enough
    numbers["r=5,kappa=10 max (e+/e^2)/B_t random_1e-3"] = [NAN] * 5  # no window: counts as not quadratic
    assert sym_quadratic_verdict(numbers, CELLS, scale="quick").verdict == HOLDS
    numbers["r=5,kappa=10 tail random_1e-3"][0] = NAN  # a broken measurement
    out = sym_quadratic_verdict(numbers, CELLS, scale="quick")
    assert out.verdict == INCONCLUSIVE and out.details["random_tail_verdict"] == INCONCLUSIVE


def test_sym_quadratic_kappa_1e4_rule_applies_at_full_scale_and_only_to_that_cell():
    cells = {**CELLS, "r=5,kappa=10000": (5, 1e4)}
    numbers = {**good(), **cell("r=5,kappa=10000", tail=(8, 30), n12=(8, 40), floor=3)}
    assert sym_quadratic_verdict(numbers, cells, scale="full").verdict == HOLDS
    assert sym_quadratic_verdict(numbers, cells, scale="quick").verdict == DOES_NOT_HOLD
    numbers.update(cell("r=5,kappa=10", tail=(8, 30), n12=(8, 40), floor=3))  # not a kappa = 1e4 cell
    assert sym_quadratic_verdict(numbers, cells, scale="full").verdict == DOES_NOT_HOLD


# ------------------------------------------------------------------------------------------ nora.sym_init_sensitivity
def sensitivity(**override):
    base = {"xi=0.001": (3, 12), "xi=1": (3, 8), "xi=1000": (3, 14), "perturbed 1e-3 relative": (24, 40),
            "perturbed 1e-3 absolute": (200, 600), "eta=0.3": (25, 35)}
    base.update(override)
    return {f"{g} {stat} {v}": [pair[i]] * 5 for g in ("exact", "OP") for v, pair in base.items()
            for i, stat in enumerate(("tail", "N"))}


@pytest.mark.parametrize("override, verdict", [
    ({}, HOLDS),
    ({"xi=1000": (7, 20)}, DOES_NOT_HOLD),  # (a) tail
    ({"xi=0.001": (3, 41)}, DOES_NOT_HOLD),  # (a) a run needs more than 40 iterations
    ({"perturbed 1e-3 relative": (14, 40)}, DOES_NOT_HOLD),  # (b), the project's form
    ({"perturbed 1e-3 absolute": (14, 40)}, DOES_NOT_HOLD),  # (b), the paper's form alone fails
    ({"eta=0.3": (19, 30)}, DOES_NOT_HOLD),  # (c) below the band
    ({"eta=0.3": (33, 40)}, DOES_NOT_HOLD),  # (c) above the band
    ({"perturbed 1e-3 absolute": (NAN, 40)}, INCONCLUSIVE),
])
def test_sensitivity_verdict(override, verdict):
    assert sensitivity_verdict(sensitivity(**override)).verdict == verdict


# ------------------------------------------------------------------------------------------ nora.asym_one_step
def asym(**override):
    numbers = {"exact one-step error": [1e-14] * 5, "OP one-step error": [3e-14] * 5,
               "UP one-step error": [0.30] * 5, "UP range-finder error": [0.30 + 1e-13] * 5,
               "UP Eckart-Young error": [0.178] * 5, "exact random best-eta iterations": [34] * 5,
               "OP random best-eta iterations": [50] * 5}
    numbers.update(override)
    return numbers


@pytest.mark.parametrize("override, verdict", [
    ({}, HOLDS),
    ({"OP one-step error": [3e-14] * 4 + [2e-10]}, DOES_NOT_HOLD),  # every seed must be <= 1e-10
    ({"UP range-finder error": [0.31] * 5}, DOES_NOT_HOLD),
    ({"UP one-step error": [0.17] * 5, "UP range-finder error": [0.17] * 5}, DOES_NOT_HOLD),  # below Eckart-Young
    ({"exact random best-eta iterations": [19] * 5}, DOES_NOT_HOLD),
    ({"exact one-step error": [NAN] + [1e-14] * 4}, INCONCLUSIVE),
])
def test_asym_one_step_verdict(override, verdict):
    assert asym_one_step_verdict(asym(**override)).verdict == verdict


# ------------------------------------------------------------------------------------------ nora.up_linear
RHO = {"gap=2": 0.75, "gap=1.1": 0.9545}


def up(**override):
    numbers = {}
    for g, r in RHO.items():
        for init in ("nystrom", "random_1e-3"):
            numbers[f"{g} contraction {init}"] = [r + 0.001] * 5
            numbers[f"{g} N {init}"] = [100] * 5
    numbers.update(override)
    return numbers


@pytest.mark.parametrize("override, verdict", [
    ({}, HOLDS),
    ({"gap=1.1 contraction random_1e-3": [0.92] * 5}, DOES_NOT_HOLD),  # only the random init misses rho
    ({"gap=2 contraction nystrom": [0.5] * 5}, DOES_NOT_HOLD),
    ({"gap=2 N nystrom": [151] * 5}, DOES_NOT_HOLD),  # ratio 1.51 > 1.5
    ({"gap=2 N nystrom": [66] * 5}, DOES_NOT_HOLD),  # ratio 0.66 < 0.67
    ({"gap=2 contraction nystrom": [NAN] * 5}, INCONCLUSIVE),
])
def test_up_linear_verdict(override, verdict):
    assert up_linear_verdict(up(**override), RHO).verdict == verdict


# ------------------------------------------------------------------------------------------ texts, float64, benches
def test_sym_quadratic_criterion_states_the_declared_kappa_1e4_window():
    text = SYM_QUADRATIC.describe()
    assert "DECLARED CHANGE, at full scale in the kappa = 10000 cells only" in text
    assert "from eps0 = lambda_min/(2||A||_F) to max(1e-12, 100·eps·kappa) = 2.2e-10" in text
    assert "0.01 -> 1e-12 tail of those cells is reported beside it under '<cell> median tail nystrom'" in text
    assert tail_floor(1e4) == pytest.approx(100 * torch.finfo(torch.float64).eps * 1e4) and tail_floor(10.0) == 1e-12
    assert "perturb_mode" in SENSITIVITY.describe() and "absolute" in SENSITIVITY.describe()


def test_criteria_render_their_constants_and_need_five_seeds():
    text = SYM_QUADRATIC.describe()
    assert "≤ 6 iterations" in text and "≥ 15 iterations" in text and "≥ 10×" in text and "> 1" in text
    assert "≥ 20 iterations" in SENSITIVITY.describe()
    assert "≤ 32 iterations" in SENSITIVITY.describe() and "≤ 40 iterations" in SENSITIVITY.describe()
    assert ASYM_ONE_STEP.parts["one_step"].threshold == 1e-10 and "≤ 0.02" in UP_LINEAR.describe()
    assert all(p.describe() in ASYM_ONE_STEP.describe() for p in ASYM_ONE_STEP.parts.values())
    assert {c.min_seeds for c in (SYM_QUADRATIC, SENSITIVITY, ASYM_ONE_STEP, UP_LINEAR)} == {5}


def test_claims_refuse_float32_problems():
    with pytest.raises(ValueError, match="float64"):
        require_float64(SymmetricMF.random(10, 2, generator=0, dtype=torch.float32))
    require_float64(SymmetricMF.random(10, 2, generator=0))


def test_bench_verdicts():
    its = {"nystrom iterations": [8, 9, 10], "random iterations": [30] * 3, "spectral iterations": [25] * 3}
    assert init_verdict(its).verdict == HOLDS
    assert init_verdict({**its, "spectral iterations": [9] * 3}).verdict == DOES_NOT_HOLD  # a tie is not faster
    assert "> 1" in INIT_CRITERION.describe()
    shapes = {"symmetric": (2000, 2000), "asymmetric": (2000, 1500)}
    summary = {f"{k} {s}": 1.1 for k in shapes for s in ("scaledgd/gd", "torch/numpy")}
    small = {k: 0.5 * memory_bound(*shapes[k], 10) for k in shapes}
    assert step_verdict(summary, small, shapes).verdict == HOLDS
    assert step_verdict({**summary, "asymmetric scaledgd/gd": 1.31}, small, shapes).verdict == DOES_NOT_HOLD
    assert step_verdict(summary, {**small, "symmetric": 2000 * 2000}, shapes).verdict == DOES_NOT_HOLD
    assert step_verdict({**summary, "symmetric torch/numpy": NAN}, small, shapes).verdict == INCONCLUSIVE
    assert "≤ 1.3" in STEP_CRITERION.describe() and "≤ 1.5" in STEP_CRITERION.describe()
