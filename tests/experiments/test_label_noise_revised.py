"""The revised label-noise run group (experiments/_label_noise.py): the fit/validation split, the equal-budget tuning
and its isolation from the test set."""

import dataclasses
import math

import torch

import optimlab.experiments._label_noise as ln


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
