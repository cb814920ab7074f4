"""Bradley-Terry oracle, sources and the win-rate UCB selector."""

import math

import numpy as np
import pytest
import torch

from optimlab.rlhf import BradleyTerryOracle, NoisySource, SourceSelector, StandardizedReward, TabularReward

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _oracle(**kw):
    return BradleyTerryOracle(TabularReward(torch.tensor([[0.3, -0.4, 0.3]], dtype=torch.float64)), **kw)


def test_bt_frequency_matches_sigmoid():
    o = _oracle(generator=0)
    n = 20_000
    x, y1, y2 = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)
    freq = float(o.compare(x, y1, y2).mean())
    p = 1 / (1 + math.exp(-0.7))
    assert abs(freq - p) <= 4 * math.sqrt(p * (1 - p) / n)
    assert o.n_calls == n  # labels, not batches
    o.reset_counter()
    assert o.n_calls == 0


def test_bt_swap_symmetry_shift_invariance_and_reproducibility():
    o = _oracle()
    x, a, b = torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([1, 2])
    assert torch.allclose(o.probability(x, a, b) + o.probability(x, b, a), torch.ones(2, dtype=torch.float64))
    shifted = BradleyTerryOracle(TabularReward(o.reward.table + 5.0))
    assert torch.allclose(o.probability(x, a, b), shifted.probability(x, a, b))
    n = torch.zeros(100, dtype=torch.long)
    l1 = o.compare(n, n, n + 1, generator=torch.Generator().manual_seed(3))
    l2 = o.compare(n, n, n + 1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(l1, l2)


@pytest.mark.parametrize("tie, expect", [("first", 1.0), ("second", 0.0)])
def test_deterministic_ties_follow_tie_rule(tie, expect):
    o = _oracle(deterministic=True, tie=tie)
    z = torch.zeros(3, dtype=torch.long)
    assert torch.equal(o.compare(z, z, z + 2), torch.full((3,), expect, dtype=torch.float64))
    assert torch.equal(o.compare(z, z, z + 1), torch.ones(3, dtype=torch.float64))  # 0.3 > -0.4
    r = _oracle(deterministic=True, tie="random", generator=0).compare(torch.zeros(400, dtype=torch.long),
                                                                      torch.zeros(400, dtype=torch.long),
                                                                      torch.full((400,), 2))
    assert 0.35 < float(r.mean()) < 0.65


def test_noisy_source_correlation_and_standardized_scale():
    g = np.random.default_rng(0)
    target = g.standard_normal((30, 40))
    for rho in (0.9, 0.3, -0.5):
        src = NoisySource(target, rho, generator=1)
        assert abs(np.corrcoef(src.table.numpy().ravel(), target.ravel())[0, 1] - rho) <= 0.05
    src = NoisySource(target, 1.0)
    assert np.allclose(src.table.numpy(), target - target.mean())
    s1, s10 = StandardizedReward(TabularReward(target)), StandardizedReward(TabularReward(10 * target))
    assert torch.allclose(s1.table, s10.table)
    with pytest.raises(ValueError, match="rho"):
        NoisySource(target, 1.5)


def _play(sel, wins, n):
    arms = []
    for _ in range(n):
        a = sel.select()
        arms.append(a)
        sel.update(a, wins(a))
    return arms


def test_selector_round_robin_then_greedy_with_zero_bonus():
    sel = SourceSelector(3, bonus_coef=0.0, null_score=0.55)
    rates = {0: 0.2, 1: 0.9, 2: 0.4}
    arms = _play(sel, lambda a: rates.get(a, 0.0), 10)
    assert arms[:4] == [0, 1, 2, 3]
    assert arms[4:] == [1] * 6  # c = 0: greedy on the means (0.2, 0.9, 0.4, 0.55)
    assert sel.means()[3] == pytest.approx(0.55)  # null credited null_score per play


def test_selector_default_null_score_and_bad_input():
    assert SourceSelector(2).null_score == pytest.approx(0.55)
    assert SourceSelector(2, chance=4 / 8).null_score == pytest.approx(0.55)
    assert SourceSelector(2, chance=1 / 8).null_score == pytest.approx(0.175)
    for kw in ({"null_score": 1.5}, {"null_score": -0.1}, {"rule": "thompson"}, {"init": "random"},
               {"update_every": 0}, {"window": 0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            SourceSelector(2, **kw)


def test_selector_uniform_until_update():
    counts = np.zeros(4)
    for rep in range(2000):
        sel = SourceSelector(3, init="uniform_until_update", update_every=50, generator=rep)
        arms = _play(sel, lambda a: 1.0 if a == 2 else 0.0, 51)
        counts += np.bincount(arms[:50], minlength=4)
        if rep < 20:
            assert arms[50] == int(np.argmax(sel.scores()))
    n = 2000 * 50
    assert np.all(np.abs(counts / n - 0.25) <= 4 * math.sqrt(0.25 * 0.75 / n))


def test_selector_reset_and_window():
    sel = SourceSelector(2, bonus_coef=0.0, window=10, reset_each_iteration=True)
    stage = {"w": 0.9}
    _play(sel, lambda a: stage["w"] if a == 0 else 0.3, 40)
    assert sel.select() == 0
    stage["w"] = 0.1
    arms = _play(sel, lambda a: stage["w"] if a == 0 else 0.3, 10)
    assert arms[-1] != 0  # loses the arg-max within `window` plays
    sel.new_iteration()
    assert sel.counts.sum() == 0 and sel.select() == 0


def test_selector_state_dict_resumes_identically():
    rng = np.random.default_rng(0)
    stream = rng.random((200, 4))
    a = SourceSelector(3, init="uniform_until_update", update_every=5, window=20, generator=1)
    t = [0]

    def wins(arm):
        t[0] += 1
        return float(stream[t[0], arm] < 0.5 + 0.1 * arm)

    _play(a, wins, 37)
    state = a.state_dict()
    b = SourceSelector(3, init="uniform_until_update", update_every=5, window=20, generator=99)
    b.load_state_dict(state)
    t0 = t[0]
    seq_a = _play(a, wins, 100)
    t[0] = t0
    seq_b = _play(b, wins, 100)
    assert seq_a == seq_b


def test_select_batch_round_robin_then_argmax():
    sel = SourceSelector(3, bonus_coef=0.0)
    assert sel.select_batch(6) == [0, 1, 2, 3, 0, 0]  # unplayed first, then the arg-max (ties: lowest index)
    for a, w in zip(range(4), (0.1, 0.9, 0.2, 0.0)):
        sel.update(a, w)
    assert sel.select_batch(3) == [1, 1, 1]
    single = SourceSelector(3)
    assert single.select_batch(1) == [single.select()]
    uni = SourceSelector(3, init="uniform_until_update", update_every=10, generator=0)
    assert len(set(uni.select_batch(40))) == 4
