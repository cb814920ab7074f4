"""The revised label-noise run group (experiments/_label_noise.py): the fit/validation split, the equal-budget tuning
and its isolation from the test set."""

import dataclasses
import math
import statistics

import pytest
import torch

import optimlab.experiments._label_noise as ln
from optimlab.evidence import all_claims, run_claims
from optimlab.experiments import infosam, sam, vasso


def test_settings_fixed_before_any_run():
    assert ln.EPOCHS["quick"] == 30 and ln.SEEDS["quick"] == 5 and ln.WIDTH["quick"] == 256
    assert ln.METHODS == ("sgd", "sam", "vasso", "infosam_snr", "infosam_invvar", "asam")
    assert ln.INFOSAM_ARMS == ("snr", "invvar") and ln.TUNING_SEED == 1000 and ln.NOISE_RATE == 0.5
    assert ln.LRS == (0.02, 0.05, 0.1) and ln.RHOS == (0.02, 0.05, 0.1) and ln.ASAM_RHOS == (0.2, 0.5, 1.0)
    assert ln.THETAS == (0.9, 0.4, 0.2) and ln.ASAM_ETA == 0.01 and ln.VALIDATION_FRACTION == 0.2


def test_fit_and_validation_split_the_noisy_training_part():
    d = ln.noisy_data(3)
    n_fit, n_val = len(d.y_fit), len(d.y_val)
    assert abs(n_val / (n_fit + n_val) - 0.2) < 0.01
    # Disjoint rows, noisy labels (about half of the fit labels flipped), a clean test set of 540 points.
    rows_fit = {tuple(r.tolist()) for r in d.X_fit}
    assert not any(tuple(r.tolist()) in rows_fit for r in d.X_val)
    assert 0.4 < float(d.flipped_fit.float().mean()) < 0.6
    assert len(d.y_test) == 540
    # Stratified on the noisy labels: every class's share is the same in both parts to within one sample.
    for c in range(d.n_classes):
        assert abs(int((d.y_val == c).sum()) - 0.25 * int((d.y_fit == c).sum())) <= 1.5
    again = ln.noisy_data(3)
    assert torch.equal(again.X_fit, d.X_fit) and torch.equal(again.y_val, d.y_val)
    assert not torch.equal(ln.noisy_data(4).y_fit[:50], d.y_fit[:50])


def test_grids_give_three_configurations_and_chain_the_choices():
    chosen = {"sgd": {"config": {"lr": 0.1}}, "sam": {"config": {"lr": 0.1, "rho": 0.02}}}
    assert ln.grids("sgd", {}) == [{"lr": 0.02}, {"lr": 0.05}, {"lr": 0.1}]
    assert ln.grids("sam", chosen) == [{"lr": 0.1, "rho": r} for r in (0.02, 0.05, 0.1)]
    assert ln.grids("infosam_invvar", chosen) == ln.grids("sam", chosen)
    assert ln.grids("asam", chosen) == [{"lr": 0.1, "rho": r} for r in (0.2, 0.5, 1.0)]
    assert ln.grids("vasso", chosen) == [{"lr": 0.1, "rho": 0.02, "theta": t} for t in (0.9, 0.4, 0.2)]


def test_select_takes_the_best_validation_accuracy_first_on_ties_and_scores_divergence_minus_inf(monkeypatch):
    score = {("sgd", 0.05): 50.0, ("sam", 0.1): 60.0, ("asam", 0.2): 55.0}

    def fake_train(method, config, X, y, **kw):
        key = (method, config.get("rho", config["lr"]) if method != "vasso" else config["theta"])
        if key == ("sgd", 0.1):
            raise FloatingPointError("diverged")
        return key, []

    monkeypatch.setattr(ln, "train_model", fake_train)
    monkeypatch.setattr(ln, "evaluate", lambda key, X, y: (0.0, score.get(key, 40.0)))
    x = torch.zeros(4, 2)
    chosen = ln.select((x, x), (x, x), n_classes=2, epochs=1, width=4)
    assert chosen["sgd"]["config"] == {"lr": 0.05} and chosen["sgd"]["val_acc"][2] == -math.inf
    assert chosen["sam"]["config"] == {"lr": 0.05, "rho": 0.1}
    assert chosen["vasso"]["config"] == {"lr": 0.05, "rho": 0.1, "theta": 0.9}  # a three-way tie: the first
    assert chosen["infosam_snr"]["config"]["rho"] == 0.02 and chosen["asam"]["config"]["rho"] == 0.2
    assert all(len(c["grid"]) == len(c["val_acc"]) == 3 for c in chosen.values())


def test_selection_receives_the_fit_and_validation_sets_only(monkeypatch):
    data = ln.noisy_data(ln.TUNING_SEED)
    corrupted = dataclasses.replace(data, y_test=(data.y_test + 1) % data.n_classes,
                                    X_test=torch.flip(data.X_test, dims=[0]))
    seen = []
    real = ln.select

    def recording(fit, val, **kw):
        seen.append([*fit, *val])
        return real(fit, val, **kw)

    monkeypatch.setattr(ln, "select", recording)
    clean_choice = ln.tune(data, "smoke")
    corrupted_choice = ln.tune(corrupted, "smoke")
    assert corrupted_choice == clean_choice  # every choice and every validation accuracy unchanged
    for d, tensors in zip((data, corrupted), seen):
        assert [t is s for t, s in zip(tensors, (d.X_fit, d.y_fit, d.X_val, d.y_val))] == [True] * 4
        assert not any(t is d.X_test or t is d.y_test for t in tensors)


# ---------------------------------------------------------------- full scale: a tuning and a verdict per condition
def test_full_scale_conditions_fixed_before_any_run():
    assert ln.CONDITIONS["smoke"] == ln.CONDITIONS["quick"] == (ln.PRIMARY,) == (("digits", 0.5),)
    full = ln.CONDITIONS["full"]
    assert full[0] == ln.PRIMARY and len(set(full)) == 6
    assert {r for d, r in full if d == "digits"} == {r for d, r in full if d == "make_classification"} == {
        0.25, 0.5, 0.75}
    assert ln.EPOCHS["full"] == 100 and ln.SEEDS["full"] == 20
    assert ln.MAKE_CLASSIFICATION == {"n_samples": 20000, "n_features": 64, "n_informative": 32, "n_classes": 10}
    assert not ln.per_condition("quick") and not ln.per_condition("smoke") and ln.per_condition("full")
    assert ln.condition_name(("make_classification", 0.25)) == "make_classification_rate25"


def test_noisy_data_takes_the_condition(monkeypatch):
    monkeypatch.setitem(ln.MAKE_CLASSIFICATION, "n_samples", 400)
    d = ln.noisy_data(2, dataset="make_classification", rate=0.25)
    assert d.n_classes == 10 and d.X_fit.shape[1] == 64 and len(d.y_test) == 120
    assert 0.15 < float(d.flipped_fit.float().mean()) < 0.35
    assert torch.equal(ln.noisy_data(2).y_fit, ln.noisy_data(2, dataset="digits", rate=0.5).y_fit)
    with pytest.raises(ValueError, match="dataset must be one of"):
        ln.noisy_data(2, dataset="mnist")


HOLD, FAIL, MIXED = [2.0] * 5, [-2.0] * 5, [2.0, -2.0, 2.0, -2.0, 0.0]


@pytest.mark.parametrize(("per_rate", "expected"), [
    ({"digits_rate25": HOLD, "digits_rate50": HOLD}, "holds"),
    ({"digits_rate25": FAIL, "digits_rate50": FAIL}, "does not hold"),
    ({"digits_rate25": HOLD, "digits_rate50": FAIL}, "inconclusive"),  # the rates differ
    ({"digits_rate25": HOLD, "digits_rate50": MIXED}, "inconclusive"),
])
def test_per_condition_verdict_is_the_common_verdict(per_rate, expected):
    for fn in (sam._label_noise_verdict_per_condition, vasso._label_noise_verdict_per_condition):
        outcome = fn(per_rate)
        assert outcome.verdict == expected
        for name, diffs in per_rate.items():
            assert outcome.details[f"{name}_median_diff"] == statistics.median(diffs)
            assert outcome.details[f"{name}_verdict"] == sam._label_noise_verdict(diffs).verdict
    arms = {name: {arm: {"vs_sam": d, "vs_asam": d} for arm in ln.INFOSAM_ARMS} for name, d in per_rate.items()}
    assert infosam._verdict_per_condition(arms).verdict == expected


def test_full_scale_runs_tune_and_judge_each_condition(tmp_path, monkeypatch):
    # A tiny injected full scale: 2 rates (digits at 0.5, make_classification at 0.75), 1 epoch, 2 seeds.
    conditions = (ln.PRIMARY, ("make_classification", 0.75))
    monkeypatch.setitem(ln.CONDITIONS, "full", conditions)
    monkeypatch.setitem(ln.EPOCHS, "full", 1)
    monkeypatch.setitem(ln.WIDTH, "full", 16)
    monkeypatch.setitem(ln.MAKE_CLASSIFICATION, "n_samples", 400)
    tuned = []
    real_tune = ln.tune

    def recording_tune(data, scale, progress=None):
        tuned.append((len(data.y_fit) + len(data.y_val), float(data.flipped_fit.float().mean())))
        return real_tune(data, scale, progress)

    monkeypatch.setattr(ln, "tune", recording_tune)
    claims = all_claims()
    ids = ["sam.label_noise", "vasso.label_noise", "infosam.label_noise"]
    summary = run_claims([claims[i] for i in ids], scale="full", seeds=2, device="cpu", out_dir=tmp_path)
    assert all(r.status == "ok" for r in summary.results), [r.error for r in summary.results]
    # One tuning per condition, on its own data set and noise rate.
    assert len(tuned) == 2 and tuned[1][0] == 280 and abs(tuned[1][1] - 0.75) < 0.1 and abs(tuned[0][1] - 0.5) < 0.1
    names = [ln.condition_name(c) for c in conditions]
    r = {x.claim_id: x for x in summary.results}
    for cid, a, b in (("sam.label_noise", "sam", "sgd"), ("vasso.label_noise", "vasso", "sam")):
        res = r[cid]
        assert res.verdict == "inconclusive"  # 2 seeds < 5: the runner's rule
        per = {n: res.numbers[f"{a}_minus_{b}_{n}"] for n in names}
        assert all(len(v) == 2 for v in per.values())
        assert per[names[0]] == res.numbers[f"{a}_minus_{b}"]  # the primary condition is the group's runs
        for n in names:
            assert res.summary[f"median_{a}_minus_{b}_{n}"] == statistics.median(per[n])
            criterion = sam.LABEL_NOISE_CRITERION if a == "sam" else vasso.LABEL_NOISE_CRITERION
            assert res.summary[f"{n}_verdict"] == criterion.verdict(per[n])
            assert f"chosen_lr_{n}" in res.summary
        assert "Per noise condition" in res.notes and names[1] in res.notes
    assert r["infosam.label_noise"].verdict == "inconclusive"
    assert all(f"median_snr_minus_asam_{n}" in r["infosam.label_noise"].summary for n in names)
