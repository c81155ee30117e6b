"""Building blocks of the Wan DiT (``wan.modules.model.WanModel`` assembles them).

- ``sinusoidal_embedding``: the official float64 timestep sinusoid.
- ``rope_frequencies`` / ``apply_rope``: the 3D rotary embedding (complex64 table per latent grid,
  rotation of interleaved channel pairs in float32).
- ``linear_f32``: a linear layer evaluated in float32 whatever its weights' dtype; ``compute_dtype``:
  the dtype a linear computes in (its weights', or a quantised layer's ``compute_dtype``).
- ``RMSNorm``, ``SelfAttention`` (qk RMSNorm over the full dim, RoPE), ``CrossAttention``
  (unmasked, with ``project_context`` for the reusable text-side k/v) and ``ContextCache``.
- ``TimestepRuns`` / ``TimestepIndex``: how the per-timestep modulation tables are applied per token
  (a gather index, or a few contiguous runs of tokens sharing one timestep).
- ``WanAttentionBlock`` (one transformer block) and ``Head`` (the modulated output projection).

Attribute names and ``nn.Sequential`` indices give the official state-dict keys. Nothing here knows
``DiTConfig``: blocks take their sizes as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .attention import attention

__all__ = [
    "ROPE_THETA",
    "SINUSOID_MAX_PERIOD",
    "ContextCache",
    "CrossAttention",
    "Head",
    "RMSNorm",
    "SelfAttention",
    "TimestepIndex",
    "TimestepRuns",
    "WanAttentionBlock",
    "apply_rope",
    "compute_dtype",
    "linear_f32",
    "rope_frequencies",
    "sinusoidal_embedding",
]

ROPE_THETA = 10000.0
SINUSOID_MAX_PERIOD = 10000.0


# ----------------------------------------------------------------------------- math helpers


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """Official timestep sinusoid in float64: ``t [N] -> [N, dim]`` as ``[cos(t*w), sin(t*w)]``,
    ``w_i = 10000^(-i / (dim/2))``."""
    half = dim // 2
    device = t.device if t.device.type != "mps" else torch.device("cpu")  # MPS has no float64
    exponent = torch.arange(half, dtype=torch.float64, device=device) / half
    args = torch.outer(t.to(device=device, dtype=torch.float64), torch.pow(SINUSOID_MAX_PERIOD, -exponent))
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1).to(t.device)


def rope_frequencies(grid: tuple[int, int, int], head_dim: int, device: torch.device | str) -> Tensor:
    """3D rotary factors ``e^(i * pos * theta^(-2j/n))`` for a token grid: complex64 ``[F*H*W, head_dim/2]``.

    The complex channels are ``[frame | height | width]`` with ``n = d - 4*(d//6), 2*(d//6),
    2*(d//6)`` real channels (``d = head_dim``); positions start at 0 on every axis. Angles and the
    polar form are computed in float64 (on the CPU: small per-axis tables), then rounded to complex64.
    """
    hw = 2 * (head_dim // 6)
    axis_dims = (head_dim - 2 * hw, hw, hw)
    tables = []
    for length, n in zip(grid, axis_dims, strict=True):
        inv_freq = 1.0 / torch.pow(ROPE_THETA, torch.arange(0, n, 2, dtype=torch.float64) / n)
        angles = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)  # [length, n/2]
        tables.append(torch.polar(torch.ones_like(angles), angles).to(torch.complex64).to(device))
    f, h, w = grid
    freqs = torch.cat(
        [
            tables[0][:, None, None, :].expand(f, h, w, -1),
            tables[1][None, :, None, :].expand(f, h, w, -1),
            tables[2][None, None, :, :].expand(f, h, w, -1),
        ],
        dim=-1,
    )
    return rearrange(freqs, "f h w c -> (f h w) c")


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotates interleaved channel pairs (float32 math).

    x: ``[B, L, heads, D]``; freqs: complex ``[L, D/2]``, or its ``torch.view_as_real`` view
    ``[L, D/2, 2]`` (the same product in real arithmetic, for ``torch.compile``) -> float32 ``[B, L, heads, D]``.
    """
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    if not freqs.is_complex():
        # the table as real (cos, sin) pairs (wan.compile passes this view: inductor generates no code
        # for complex ops): the same product in real arithmetic
        f = freqs[None, :, None]  # [1, L, 1, D/2, 2]
        cos, sin = f[..., 0], f[..., 1]
        re, im = pairs[..., 0], pairs[..., 1]
        return torch.stack((re * cos - im * sin, re * sin + im * cos), dim=-1).flatten(3)
    rotated = torch.view_as_complex(pairs) * freqs[None, :, None, :]
    return torch.view_as_real(rotated).flatten(3)


def compute_dtype(layer: nn.Module) -> torch.dtype:
    """The dtype a linear layer computes in (its inputs are cast to it): the weights' dtype, or
    ``layer.compute_dtype`` for weight-only quantised layers (``wan.quant.FP8Linear``: float8 weights)."""
    return getattr(layer, "compute_dtype", None) or layer.weight.dtype


def linear_f32(layer: nn.Linear, x: Tensor) -> Tensor:
    """``layer(x)`` computed in float32 whatever the weights' dtype (official fp32 autocast regions)."""
    bias = layer.bias.float() if layer.bias is not None else None
    return F.linear(x.float(), layer.weight.float(), bias)


# ----------------------------------------------------------------------------- modules


class RMSNorm(nn.Module):
    """``x * rsqrt(mean(x^2) + eps)`` computed in float32, cast back to ``x``'s dtype, times ``weight``."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype) * self.weight


class _AttentionProjections(nn.Module):
    """q, k, v, o projections (``dim -> dim``) with qk RMSNorm over the full ``dim``."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def _heads(self, x: Tensor) -> Tensor:
        return rearrange(x, "b l (h d) -> b l h d", h=self.num_heads)

    def _out(self, x: Tensor) -> Tensor:
        return self.o(rearrange(x, "b l h d -> b l (h d)"))


class SelfAttention(_AttentionProjections):
    """Self-attention with 3D RoPE. ``x [B, L, dim]``, ``freqs`` complex ``[L, head_dim/2]`` -> ``[B, L, dim]``;
    ``backend``: a concrete attention backend (``wan.modules.attention.resolve_backend``) or None.

    With ``sequence_parallel`` set (``WanModel.set_sequence_parallel``), ``x``/``freqs`` are this rank's
    token slice and the attention itself runs through the Ulysses all-to-alls.
    """

    sequence_parallel: Any = None

    def forward(self, x: Tensor, freqs: Tensor, backend: str | None = None) -> Tensor:
        x = x.to(compute_dtype(self.q))
        v = self._heads(self.v(x))
        q = apply_rope(self._heads(self.norm_q(self.q(x))), freqs).to(v.dtype)
        k = apply_rope(self._heads(self.norm_k(self.k(x))), freqs).to(v.dtype)
        sp = self.sequence_parallel
        return self._out(attention(q, k, v, backend) if sp is None else sp.attention(q, k, v, backend))


class CrossAttention(_AttentionProjections):
    """Unmasked cross-attention to the text. ``x [B, L, dim]``, ``context [B, L_ctx, dim]`` -> ``[B, L, dim]``.

    ``project_context`` computes the text side (k after ``norm_k``, v; each ``[B, L_ctx, heads, head_dim]``)
    once, so a sampler can reuse it for every step of a run (see ``WanModel.encode_context``).
    """

    def project_context(self, context: Tensor) -> tuple[Tensor, Tensor]:
        context = context.to(compute_dtype(self.q))
        v = self._heads(self.v(context))
        k = self._heads(self.norm_k(self.k(context))).to(v.dtype)
        return k, v

    def forward(self, x: Tensor, context: Tensor | tuple[Tensor, Tensor], backend: str | None = None) -> Tensor:
        k, v = context if isinstance(context, tuple) else self.project_context(context)
        q = self._heads(self.norm_q(self.q(x.to(compute_dtype(self.q))))).to(v.dtype)
        return self._out(attention(q, k, v, backend))


@dataclass(frozen=True, eq=False)
class ContextCache:
    """The text side of every block's cross-attention for one (padded) context batch.

    ``kv[i]`` is block i's ``(k, v)``, each ``[B, text_len, heads, head_dim]``. It depends only on the
    context and the weights, so it is computed once per expert and run instead of once per step
    (memory: ``2 * num_layers * B * text_len * dim`` elements, e.g. ~0.8 GB bf16 for A14B with B=2).
    Only valid for the model instance that built it (``owner_id``).
    """

    kv: tuple[tuple[Tensor, Tensor], ...]
    batch: int
    owner_id: int


def _gather(values: Tensor, index: Tensor) -> Tensor:
    """``values [U, dim]`` per distinct timestep, ``index [B, L']`` -> ``[B, L', dim]``."""
    return values[index]


@dataclass(frozen=True, eq=False)
class TimestepRuns:
    """Per-token timesteps that are constant on a few contiguous token ranges (runs).

    ``bounds``: ``(start, end)`` of each run, covering ``[0, L)`` in order; ``index``: int64
    ``[B', R]`` (``B'`` = 1 or B) -> the distinct-timestep row of each sample's run.
    """

    bounds: tuple[tuple[int, int], ...]
    index: Tensor


TimestepIndex = Tensor | TimestepRuns


class _Modulation:
    """Applies a per-timestep modulation table ``mod [U, K, dim]`` to ``[B, L, dim]`` activations.

    With a gather index ``[B, L']`` each column is gathered to ``[B, L', dim]`` (``L' = 1`` for
    per-sample t). With :class:`TimestepRuns` each run's slice is modulated by its broadcast
    ``[B', 1, dim]`` row, with the same ops and dtypes (bit-identical), without ``[B, L, dim]``
    tables; without autograd the results are written in place into the fresh ``ln`` / ``y``.
    """

    def __init__(self, mod: Tensor, t_index: TimestepIndex) -> None:
        self.mod = mod
        self.t_index = t_index
        self.rows = mod[t_index.index] if isinstance(t_index, TimestepRuns) else None  # [B', R, K, dim]

    def _row(self, r: int, k: int) -> Tensor:
        assert self.rows is not None
        return self.rows[:, r, k, None]  # [B', 1, dim]

    def modulate(self, ln: Tensor, k_shift: int, k_scale: int) -> Tensor:
        """``shift + ln * (scale + 1)``; ``ln`` (a fresh layer-norm output) may be overwritten."""
        runs = self.t_index
        if not isinstance(runs, TimestepRuns):
            shift = _gather(self.mod[:, k_shift], runs)
            return torch.addcmul(shift, ln, _gather(self.mod[:, k_scale], runs) + 1)
        parts = []
        in_place = not torch.is_grad_enabled() and ln.dtype == self.mod.dtype
        for r, (s, e) in enumerate(runs.bounds):
            args = (self._row(r, k_shift), ln[:, s:e], self._row(r, k_scale) + 1)
            if in_place:
                torch.addcmul(*args, out=ln[:, s:e])
            else:
                parts.append(torch.addcmul(*args))
        return ln if in_place else torch.cat(parts, dim=1)

    def gated_add(self, x: Tensor, y: Tensor, k_gate: int) -> Tensor:
        """``x + y * gate``; ``y`` (a fresh layer output) may be overwritten, ``x`` is not."""
        runs = self.t_index
        if not isinstance(runs, TimestepRuns):
            return x + y * _gather(self.mod[:, k_gate], runs)
        dtype = self.mod.dtype
        if torch.is_grad_enabled() or x.dtype != dtype or torch.result_type(y, self.mod) != dtype:
            gated = torch.cat([y[:, s:e] * self._row(r, k_gate) for r, (s, e) in enumerate(runs.bounds)], dim=1)
            return x + gated
        out = y if y.dtype == dtype else torch.empty(y.shape, dtype=dtype, device=y.device)
        for r, (s, e) in enumerate(runs.bounds):
            torch.mul(y[:, s:e], self._row(r, k_gate), out=out[:, s:e])
        return out.add_(x)  # == x + y * gate (addition commutes exactly)


class WanAttentionBlock(nn.Module):
    """One DiT block (see ``wan.modules.model``). Residual stream in and out: float32 ``[B, L, dim]``."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.self_attn = SelfAttention(dim, num_heads, eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, num_heads, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        # shift_msa, scale_msa, gate_msa, shift_ffn, scale_ffn, gate_ffn
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def _layer_norm(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, (x.shape[-1],), eps=self.eps)

    def forward(
        self,
        x: Tensor,
        e0: Tensor,
        t_index: TimestepIndex,
        context: Tensor | tuple[Tensor, Tensor],
        freqs: Tensor,
        backend: str | None = None,
    ) -> Tensor:
        """x: float32 ``[B, L, dim]``; e0: float32 ``[U, 6, dim]`` (one row per distinct timestep);
        t_index: int64 ``[B, L']`` (``L'`` = 1 or L) picking a row of e0 per token, or
        :class:`TimestepRuns`; context ``[B, L_ctx, dim]`` (embedded text) or this block's cached
        ``(k, v)``; freqs: complex ``[L, head_dim/2]`` or its real view; backend: the concrete attention backend of
        both attentions (``resolve_backend``), None = chosen per call."""
        mod = _Modulation(self.modulation.float()[0] + e0, t_index)  # [U, 6, dim]
        h = mod.modulate(self._layer_norm(x), 0, 1)
        x = mod.gated_add(x, self.self_attn(h, freqs, backend), 2)
        ln3 = F.layer_norm(x, (x.shape[-1],), self.norm3.weight.float(), self.norm3.bias.float(), self.eps)
        x = x + self.cross_attn(ln3, context, backend)
        h = mod.modulate(self._layer_norm(x), 3, 4)
        h = h.to(compute_dtype(self.ffn[0]))
        return mod.gated_add(x, self.ffn(h), 5)


class Head(nn.Module):
    """Output head: float32 ``[B, L, dim]`` -> float32 ``[B, L, out_features]``
    (``out_features = prod(patch_size) * out_dim``)."""

    def __init__(self, dim: int, out_features: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.head = nn.Linear(dim, out_features)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)  # shift, scale

    def forward(self, x: Tensor, e: Tensor, t_index: TimestepIndex) -> Tensor:
        """e: float32 ``[U, dim]`` (pre-projection time embedding), t_index ``[B, L']`` or runs."""
        mod = _Modulation(self.modulation.float()[0] + e[:, None, :], t_index)  # [U, 2, dim]
        h = mod.modulate(F.layer_norm(x, (x.shape[-1],), eps=self.eps), 0, 1)
        return linear_f32(self.head, h)
