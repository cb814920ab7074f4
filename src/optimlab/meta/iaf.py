"""``BlockIAFMap``: the blockwise inverse-autoregressive flow used as the mirror map in the official code of Zhang,
Li, Giannakis (arXiv:2312.13486; extended arXiv:2509.02418), after Kingma et al.'s IAF (arXiv:1606.04934).

Adapted tensors, in order, form blocks of ``block_size`` consecutive tensors (4 = conv W, conv b, BN γ, BN β; use
2 for Linear layers); the last block holds the rest. For dual displacements u:
* block 1: h(u) = exp(a) ⊙ u + b (a = b = 0 at init; 2 parameters per element);
* block l > 1: c_l = A_l(concat_{j<l} e_j(u_j)), one dense Linear over the embeddings of all earlier blocks, split per
  tensor τ of block l, each slice shaped as τ shrunk ``levels`` times; decoder of τ: ReLU, then ``levels`` − 1
  expanding mode-wise layers each followed by ReLU up to τ shrunk once (a trunk shared by two heads), and the heads
  S_τ, T_τ (one mode-wise layer each to τ's full shape, zero-initialised); h_τ = exp(clamp(S_τ, −10, 10)) ⊙ u_τ + T_τ.
* encoder e_j of each tensor outside the last block: ``levels`` shrinking mode-wise layers, each followed by ReLU.
A mode-wise layer n_1×⋯×n_r → m_1×⋯×m_r is X ×₁ W_1 ⋯ ×_r W_r + C, C of the full output shape; a 4-D weight is
reshaped to (o, i, kh·kw); shrinking maps every mode n ↦ max(⌊n/shrink⌋, 1). The Jacobian is block lower-triangular
with positive diagonal blocks: invertible in closed form block by block, not symmetric, so not the gradient of a
convex potential (``is_gradient_field = False``); within one block exactly Meta-SGD, so a one-tensor model gains
nothing. The clamp of S is this library's safety addition (the official code has none).
Checked: the structure follows the official code as summarised in this library's design notes; the papers' method
sections are UNVERIFIED, and the extended paper's "provably valid distance" network is not implemented.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from optimlab._random import check_generator
from optimlab._validation import Interval, check
from optimlab.meta.maps import LOG_CLAMP, MirrorMap, key


def mode_shape(shape: torch.Size) -> tuple[int, ...]:
    """Modes of a tensor: 4-D (o, i, kh, kw) → (o, i, kh·kw); 0-D → (1,); else the shape."""
    if len(shape) == 0:
        return (1,)
    if len(shape) == 4:
        return (shape[0], shape[1], shape[2] * shape[3])
    return tuple(shape)


def shrink_shape(modes: tuple[int, ...], shrink: int) -> tuple[int, ...]:
    return tuple(max(n // shrink, 1) for n in modes)


class ModeLinear(nn.Module):
    """X ×₁ W_1 ⋯ ×_r W_r + C (Tucker-style mode products), W_j ∈ R^{m_j×n_j}, C of the full output shape."""

    def __init__(self, n: tuple[int, ...], m: tuple[int, ...], *, zero: bool = False, dtype=None, device=None,
                 generator=None) -> None:
        super().__init__()
        self.n, self.m = tuple(n), tuple(m)
        self.weights = nn.ParameterList()
        for a, b in zip(self.m, self.n):
            w = torch.zeros(a, b, dtype=dtype, device=device)
            if not zero:  # kaiming_uniform(a = √5): bound 1/√fan_in
                w.uniform_(-1 / math.sqrt(b), 1 / math.sqrt(b), generator=generator)
            self.weights.append(nn.Parameter(w))
        self.bias = nn.Parameter(torch.zeros(self.m, dtype=dtype, device=device))

    def forward(self, x: Tensor) -> Tensor:
        for j, w in enumerate(self.weights):
            x = torch.movedim(torch.tensordot(x, w, dims=([j], [1])), -1, j)
        return x + self.bias


class BlockIAFMap(MirrorMap):
    """The authors' blockwise flow (module docstring). ``exclude``: tensor names left out of the flow and given a
    plain diagonal-affine map exp(a) ⊙ u + b (e.g. the classifier, whose decoders dominate the count)."""

    is_gradient_field = False
    owner = "BlockIAFMap"

    def __init__(self, named_shapes, *, block_size: int = 4, shrink: int = 2, levels: int = 3, exclude=(),
                 dtype=torch.float32, device=None, generator=None) -> None:
        super().__init__(named_shapes)
        generator = check_generator(generator)  # int seed, generator, or None (fresh OS seed)
        self.block_size = check(Interval(1, None, integer=True), block_size, "block_size", owner=self.owner)
        self.shrink = check(Interval(1, None, integer=True), shrink, "shrink", owner=self.owner)
        self.levels = check(Interval(1, None, integer=True), levels, "levels", owner=self.owner)
        unknown = set(exclude) - set(self.names)
        if unknown:
            raise ValueError(f"{self.owner}: exclude names {sorted(unknown)} are not among {self.names}")
        self.excluded = [n for n in self.names if n in set(exclude)]
        flow = [n for n in self.names if n not in set(exclude)]
        self.blocks = [flow[i:i + self.block_size] for i in range(0, len(flow), self.block_size)]
        kw = {"dtype": dtype, "device": device}
        affine = (self.blocks[0] if self.blocks else []) + self.excluded
        self.a = nn.ParameterDict({key(n): nn.Parameter(torch.zeros(self.shapes[n], **kw)) for n in affine})
        self.b = nn.ParameterDict({key(n): nn.Parameter(torch.zeros(self.shapes[n], **kw)) for n in affine})
        self.modes = {n: mode_shape(self.shapes[n]) for n in self.names}
        self.shrunk = {}
        for n in flow:
            s = [self.modes[n]]
            for _ in range(self.levels):
                s.append(shrink_shape(s[-1], self.shrink))
            self.shrunk[n] = s  # s[0] full modes, s[k] shrunk k times
        self.encoders = nn.ModuleDict()
        for blk in self.blocks[:-1]:
            for n in blk:
                s = self.shrunk[n]
                self.encoders[key(n)] = nn.ModuleList(ModeLinear(s[k], s[k + 1], generator=generator, **kw)
                                                      for k in range(self.levels))
        self.A, self.trunks, self.heads_s, self.heads_t = (nn.ModuleList(), nn.ModuleDict(), nn.ModuleDict(),
                                                           nn.ModuleDict())
        width = 0
        for lvl, blk in enumerate(self.blocks):
            if lvl > 0:
                out = sum(math.prod(self.shrunk[n][-1]) for n in blk)
                lin = nn.Linear(width, out, **kw)
                bound = 1 / math.sqrt(width)
                with torch.no_grad():
                    lin.weight.uniform_(-bound, bound, generator=generator)
                    lin.bias.zero_()
                self.A.append(lin)
                for n in blk:
                    s = self.shrunk[n]
                    self.trunks[key(n)] = nn.ModuleList(ModeLinear(s[k], s[k - 1], generator=generator, **kw)
                                                        for k in range(self.levels, 1, -1))
                    self.heads_s[key(n)] = ModeLinear(s[1], s[0], zero=True, **kw)
                    self.heads_t[key(n)] = ModeLinear(s[1], s[0], zero=True, **kw)
            width += sum(math.prod(self.shrunk[n][-1]) for n in blk) if lvl < len(self.blocks) - 1 else 0

    def _affine(self, n: str) -> tuple[Tensor, Tensor]:
        return self.a[key(n)].clamp(-LOG_CLAMP, LOG_CLAMP).exp(), self.b[key(n)]

    def _encode(self, n: str, u: Tensor) -> Tensor:
        x = u.reshape(self.modes[n])
        for layer in self.encoders[key(n)]:
            x = torch.relu(layer(x))
        return x.reshape(-1)

    def _scale_shift(self, lvl: int, blk: list[str], emb: list[Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        c = self.A[lvl - 1](torch.cat(emb))
        out, start = {}, 0
        for n in blk:
            size = math.prod(self.shrunk[n][-1])
            x = torch.relu(c[start:start + size].reshape(self.shrunk[n][-1]))
            start += size
            for layer in self.trunks[key(n)]:
                x = torch.relu(layer(x))
            s = self.heads_s[key(n)](x).reshape(self.shapes[n]).clamp(-LOG_CLAMP, LOG_CLAMP)
            out[n] = (s.exp(), self.heads_t[key(n)](x).reshape(self.shapes[n]))
        return out

    def _run(self, values: dict[str, Tensor], inverse: bool) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for n in self.excluded + (self.blocks[0] if self.blocks else []):
            scale, shift = self._affine(n)
            out[n] = (values[n] - shift) / scale if inverse else scale * values[n] + shift
        emb: list[Tensor] = []
        for lvl, blk in enumerate(self.blocks):
            if lvl > 0:
                for n, (scale, shift) in self._scale_shift(lvl, blk, emb).items():
                    out[n] = (values[n] - shift) / scale if inverse else scale * values[n] + shift
            if lvl < len(self.blocks) - 1:
                dual = out if inverse else values
                emb.extend(self._encode(n, dual[n]) for n in blk)
        return out

    def forward(self, u):
        return self._run(u, inverse=False)

    def to_dual(self, delta):
        """Closed-form inverse, block by block (block l's scale and shift depend only on earlier dual blocks)."""
        return self._run(delta, inverse=True)

    def slope_bounds(self):
        """Range of the Jacobian's diagonal at the probe point."""
        with torch.no_grad():
            u = self._probe()
            scales = [self._affine(n)[0] for n in self.excluded + (self.blocks[0] if self.blocks else [])]
            emb: list[Tensor] = []
            for lvl, blk in enumerate(self.blocks):
                if lvl > 0:
                    scales += [s for s, _ in self._scale_shift(lvl, blk, emb).values()]
                if lvl < len(self.blocks) - 1:
                    emb.extend(self._encode(n, u[n]) for n in blk)
        return min(float(s.min()) for s in scales), max(float(s.max()) for s in scales)

    def part_counts(self) -> dict[str, int]:
        """Parameter counts: ``block1`` (a, b of the first block and excluded tensors), ``encoders``, ``A``,
        ``decoders`` (trunks and heads)."""
        count = lambda mods: sum(p.numel() for m in mods for p in m.parameters())
        return {"block1": sum(p.numel() for p in (*self.a.values(), *self.b.values())),
                "encoders": count(self.encoders.values()), "A": count(self.A),
                "decoders": count(self.trunks.values()) + count(self.heads_s.values()) + count(self.heads_t.values())}


__all__ = ["BlockIAFMap", "ModeLinear", "mode_shape", "shrink_shape"]
