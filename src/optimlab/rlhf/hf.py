"""``HFCausalLMPolicy``: a Hugging Face causal LM as a :class:`~optimlab.rlhf.policies.Policy` (``transformers``
is needed only by the model the caller builds; this module imports nothing from it).

Prompts are strings; responses are lists of token ids (``decode`` turns them into text), so that a sampled
response is scored exactly as sampled. log π(y|x) = Σ_{t ∈ response} log softmax(logits_{t−1})[y_t] in float32
(prompt and padding masked when ``response_only_logprob``). Sampling is a plain loop drawing from
``torch.multinomial`` with the caller's generator (``model.generate`` would use the global RNG), with
left padding and explicit position ids so that a padded row gives the same log-probabilities as an unpadded one.
Offline stand-in for the paper's T5 models: a tiny GPT-2 built from a config with the MiniLM tokenizer.
"""

from __future__ import annotations

from typing import Any

import torch

from optimlab._random import check_generator
from optimlab._validation import Interval, check

__all__ = ["HFCausalLMPolicy"]


class HFCausalLMPolicy(torch.nn.Module):
    """Wraps ``model`` (``forward(input_ids, attention_mask, position_ids).logits``) and ``tokenizer``."""

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int = 32, temperature: float = 1.0,
                 top_p: float = 1.0, response_only_logprob: bool = True) -> None:
        super().__init__()
        own = "HFCausalLMPolicy"
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens = check(Interval(1, None, integer=True), max_new_tokens, "max_new_tokens", owner=own)
        self.temperature = check(Interval(0, None, closed="neither"), temperature, "temperature", owner=own)
        self.top_p = check(Interval(0, 1, closed="right"), top_p, "top_p", owner=own)
        self.response_only_logprob = bool(response_only_logprob)
        tok = tokenizer
        self.bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        self.eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else self.eos
        if self.bos is None or self.eos is None:
            raise ValueError(f"{own}: the tokenizer needs a bos (or cls) and an eos (or sep) token")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_prompt(self, prompt: str) -> list[int]:
        return [self.bos, *self.tokenizer(prompt, add_special_tokens=False)["input_ids"]]

    def decode(self, response: list[int]) -> str:
        return self.tokenizer.decode([t for t in response if t != self.eos])

    def _batch(self, seqs: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        L = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), L), self.pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        for i, s in enumerate(seqs):
            sl = slice(L - len(s), L) if left else slice(0, len(s))
            ids[i, sl] = torch.tensor(s, dtype=torch.long)
            mask[i, sl] = 1
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    def log_prob(self, prompts: list[str], responses: list[list[int]], *, left_pad: bool = False) -> torch.Tensor:
        """Sequence log π(y|x) per pair, ``[B]`` (differentiable, float32)."""
        if len(prompts) != len(responses):
            raise ValueError(f"HFCausalLMPolicy: {len(prompts)} prompts but {len(responses)} responses")
        ps = [self.encode_prompt(p) for p in prompts]
        rs = [list(map(int, r)) for r in responses]
        seqs = [p + r for p, r in zip(ps, rs)]
        ids, mask, pos = self._batch(seqs, left_pad)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
        lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        L = ids.shape[1]
        keep = torch.zeros_like(lp, dtype=torch.bool)
        for i, (p, s) in enumerate(zip(ps, seqs)):
            off = L - len(s) if left_pad else 0
            first = len(p) if self.response_only_logprob else 1
            keep[i, off + first - 1: off + len(s) - 1] = True  # target positions t-1 predict token t
        return torch.where(keep, lp, torch.zeros_like(lp)).sum(-1)

    @torch.no_grad()
    def sample(self, prompts: list[str], n: int = 1, *, generator: Any = None) -> list[Any]:
        """``n`` responses per prompt (lists of token ids, ending with eos if it was drawn); a list for n = 1,
        else a list of lists."""
        n = check(Interval(1, None, integer=True), n, "n", owner="HFCausalLMPolicy")
        g = check_generator(generator)
        ps = [self.encode_prompt(p) for p in prompts for _ in range(n)]
        outs: list[list[int]] = [[] for _ in ps]
        done = [False] * len(ps)
        for _ in range(self.max_new_tokens):
            ids, mask, pos = self._batch([p + o for p, o in zip(ps, outs)], left=True)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].float()
            probs = torch.softmax(logits / self.temperature, dim=-1)
            if self.top_p < 1.0:
                sp, si = probs.sort(dim=-1, descending=True)
                cut = sp.cumsum(-1) - sp > self.top_p
                sp = sp.masked_fill(cut, 0.0)
                probs = torch.zeros_like(probs).scatter(-1, si, sp)
            nxt = torch.multinomial(probs.cpu(), 1, generator=g)[:, 0].tolist()
            for i, t in enumerate(nxt):
                if not done[i]:
                    outs[i].append(int(t))
                    done[i] = t == self.eos
            if all(done):
                break
        return outs if n == 1 else [outs[i * n:(i + 1) * n] for i in range(len(prompts))]
