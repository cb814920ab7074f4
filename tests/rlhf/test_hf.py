"""HFCausalLMPolicy with a tiny random-init GPT-2 and the offline MiniLM tokenizer (skipped without them)."""

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def policy():
    from optimlab.data.pretrained import minilm_path
    from optimlab.rlhf.hf import HFCausalLMPolicy

    try:
        path = minilm_path()
    except ImportError as exc:
        pytest.skip(str(exc))
    tok = transformers.AutoTokenizer.from_pretrained(str(path))
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=256, n_layer=4, n_head=4,
                                  bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    with torch.random.fork_rng():  # GPT-2's init draws from the global RNG: fork it so nothing leaks
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(cfg).eval()
    return HFCausalLMPolicy(model, tok, max_new_tokens=6)


def test_log_prob_masks_prompt_and_matches_manual_loop(policy):
    prompts, responses = ["a short prompt", "hi"], [[2000, 2001, 102], [3000]]
    lp = policy.log_prob(prompts, responses)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids = policy.encode_prompt(p)
        total = 0.0
        for tok in r:
            with torch.no_grad():
                out = policy.model(input_ids=torch.tensor([ids])).logits[0, -1]
            total += float(torch.log_softmax(out.float(), -1)[tok])
            ids = ids + [tok]
        assert abs(float(lp[i].detach()) - total) <= 1e-5
    left = policy.log_prob(prompts, responses, left_pad=True)
    assert torch.allclose(lp, left, atol=1e-5)


def test_sample_is_seeded_and_scores(policy):
    a = policy.sample(["x y", "z"], 2, generator=torch.Generator().manual_seed(0))
    b = policy.sample(["x y", "z"], 2, generator=torch.Generator().manual_seed(0))
    assert a == b and len(a) == 2 and len(a[0]) == 2 and all(1 <= len(r) <= 6 for r in a[0])
    assert isinstance(policy.decode(a[0][0]), str)


def test_dpo_steps_leave_frozen_reference_unchanged(policy):
    from optimlab.rlhf import BradleyTerryOracle, SourceSelector, TransferPreferenceLearner

    pol = copy.deepcopy(policy)
    ref = copy.deepcopy(policy)
    for q in ref.parameters():
        q.requires_grad_(False)
    before = [q.clone() for q in ref.parameters()]
    gold = BradleyTerryOracle(lambda p, y: torch.tensor([float(len(r)) for r in y]), generator=0)
    source = lambda p, y: torch.tensor([-float(len(r)) for r in y])
    lr = TransferPreferenceLearner(pol, ref, [source], gold, torch.optim.Adam(pol.model.parameters(), lr=1e-3),
                                   n_pool=2, selector=SourceSelector(1), generator=0)
    for _ in range(5):
        stats = lr.step(lr.collect(["a", "b"]))
        assert stats["n_pairs"] == 2
    assert all(not q.requires_grad for q in ref.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, ref.parameters()))
    assert lr.counts["generations"] > 0 and lr.counts["oracle_calls"] == 10
