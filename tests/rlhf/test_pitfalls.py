"""Pitfalls of transfer in online RLHF: source scale, sampler anchoring, oracle mode, TRL adapter."""

import numpy as np
import pytest
import torch

from optimlab.rlhf import (
    BradleyTerryOracle,
    FixedPolicy,
    KLBanditEnv,
    SourceSelector,
    TabularReward,
    TabularSoftmaxPolicy,
    TransferPreferenceLearner,
    best_of_n,
    kl_optimal_logprobs,
)
from optimlab.rlhf.integrations.trl import TransferCompletions, as_reward_func

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_source_scale_changes_exact_transfer_but_not_best_of_n():
    env = KLBanditEnv.tabular(3, 6, seed=0)
    table = torch.as_tensor(env.source_tables[0])
    ref = torch.as_tensor(env.logp_ref)
    assert not torch.allclose(kl_optimal_logprobs(ref, table, 0.2), kl_optimal_logprobs(ref, 10 * table, 0.2))
    pol = FixedPolicy(ref)
    x = torch.arange(3).repeat(5)
    a = best_of_n(pol, TabularReward(table), x, n=8, generator=1)
    b = best_of_n(pol, TabularReward(10 * table), x, n=8, generator=1)
    assert torch.equal(a, b)  # rank-based: scale-free


def _learner(env, source_scale, sampler, seed=0):
    pol = TabularSoftmaxPolicy(env.n_prompts, env.n_responses)
    sources = [TabularReward(source_scale * torch.as_tensor(t)) for t in env.source_tables]
    return TransferPreferenceLearner(pol, env.ref_policy(), sources, BradleyTerryOracle(env.target_reward),
                                     torch.optim.SGD(pol.parameters(), lr=0.1), beta=env.beta, n_pool=8,
                                     selector=SourceSelector(len(sources), generator=seed),
                                     transfer_sampler=sampler, generator=seed)


def test_selector_choices_ignore_source_scale_with_best_of_n():
    env = KLBanditEnv.tabular(4, 6, seed=1)
    arms = []
    for scale in (1.0, 10.0):
        lr = _learner(env, scale, "best_of_n")
        g = torch.Generator().manual_seed(5)
        seq = []
        for _ in range(15):
            batch = lr.collect(torch.randint(4, (4,), generator=g))
            lr.step(batch)
            seq += batch["arms"]
        arms.append(seq)
    assert arms[0] == arms[1]


def test_exact_and_best_of_n_samplers_differ_and_both_run():
    """Best-of-n is anchored at pi_t, exact transfer samples pi_{r^w} (anchored at pi_ref)."""
    env = KLBanditEnv.tabular(2, 6, seed=2)
    for sampler in ("exact", "best_of_n"):
        lr = _learner(env, 1.0, sampler)
        assert lr.transfer_sampler == sampler
        lr.step(lr.collect(torch.tensor([0, 1])))
    x = torch.zeros(20000, dtype=torch.long)
    src = TabularReward(torch.as_tensor(env.source_tables[0]))
    pol = FixedPolicy(torch.zeros(2, 6))
    bon = torch.bincount(best_of_n(pol, src, x, n=4, generator=3), minlength=6).double() / len(x)
    exact = kl_optimal_logprobs(torch.as_tensor(env.logp_ref), torch.as_tensor(env.source_tables[0]), env.beta)[0]
    assert (bon - exact.exp()).abs().max() > 0.05


@pytest.mark.parametrize("deterministic", [False, True])
def test_both_oracle_modes_run(deterministic):
    env = KLBanditEnv.tabular(3, 5, seed=0)
    pol = TabularSoftmaxPolicy(3, 5)
    oracle = BradleyTerryOracle(env.target_reward, deterministic=deterministic, generator=0)
    lr = TransferPreferenceLearner(pol, env.ref_policy(), env.sources, oracle,
                                   torch.optim.SGD(pol.parameters(), lr=0.1), beta=0.2, n_pool=4, generator=0)
    batch = lr.collect(torch.tensor([0, 1, 2]))
    assert lr.step(batch)["n_pairs"] == 3 and oracle.n_calls == 3


def test_null_score_default_follows_k_and_n_transfer():
    env = KLBanditEnv.tabular(3, 8, seed=0)
    pol = TabularSoftmaxPolicy(3, 8)
    mk = lambda k, n: TransferPreferenceLearner(pol, env.ref_policy(), env.sources,
                                                BradleyTerryOracle(env.target_reward), torch.optim.SGD(
                                                    pol.parameters(), lr=0.1), k_online=k, n_transfer=n, n_pool=8)
    assert mk(2, 1).selector.null_score == pytest.approx(0.55)
    assert mk(8, 1).selector.null_score == pytest.approx(1 / 8 + 0.05)
    assert mk(8, 4).selector.null_score == pytest.approx(4 / 8 + 0.05)


def test_trl_adapter_helpers():
    gold = TabularReward(torch.tensor([[0.0, 1.0, 2.0]]))
    f = as_reward_func(gold)
    assert f(torch.tensor([0, 0]), torch.tensor([2, 1]), extra=1) == [2.0, 1.0]
    sel = SourceSelector(1, bonus_coef=0.0)
    tc = TransferCompletions(sel, [TabularReward(torch.tensor([[0.0, 0.0, 5.0]]))], n_pool=16)
    pol = FixedPolicy(torch.zeros(1, 3))
    out, arms = tc.swap(pol, [torch.tensor(0)], [[torch.tensor(0), torch.tensor(1)]], generator=0)
    assert arms == [0] and int(out[0][1]) == 2  # best of 16 under the source
    tc.credit(arms, [1.0])
    assert sel.counts[0] == 1 and sel.means()[0] == 1.0
    with pytest.raises(ValueError, match="sources"):
        TransferCompletions(SourceSelector(2), [gold])
    np.testing.assert_equal(sel.select(), 1)  # the unplayed null arm comes next
