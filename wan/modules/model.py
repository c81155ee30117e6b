"""The Wan 2.2 diffusion transformer (DiT), one class for t2v-A14B, i2v-A14B and ti2v-5B.

``state_dict()`` keys and shapes equal the official checkpoints' (1095 tensors for the A14B
experts, 825 for the 5B; no buffers). Numerics follow the official ``WanModel``:

- Patch embedding: ``Conv3d(in_dim, dim, kernel = stride = patch_size)``; tokens in ``(f, h, w)`` order.
- Time: float64 sinusoid ``[cos, sin]`` of ``t`` (``freq_dim`` = 256), then ``time_embedding``
  (Linear, SiLU, Linear) -> ``e`` and ``time_projection`` (SiLU, Linear) -> ``e0`` (6 vectors), all
  float32. The official code evaluates this per token; here it is evaluated once per *distinct*
  timestep and gathered per token, which gives the same numbers with far less memory.
- Text: ``text_embedding`` (Linear, GELU-tanh, Linear) over the full zero-padded context (512
  tokens, no mask).
- Blocks: ``x += gate_msa * self_attn(LN(x) * (1 + scale_msa) + shift_msa)``;
  ``x += cross_attn(norm3(x), context)`` (affine LN, not modulated);
  ``x += gate_ffn * ffn(LN(x) * (1 + scale_ffn) + shift_ffn)``. The residual stream and all the
  modulation math are float32; the linear layers run in their weights' dtype.
- Attention: qk RMSNorm over the full ``dim`` before the head split, 3D RoPE on q and k of the
  self-attention (interleaved pairs; ``head_dim`` split ``d - 4*(d//6)`` / ``2*(d//6)`` /
  ``2*(d//6)`` over frame/height/width; angles in float64, rotation in float32).
- Head: ``Linear(LN(x) * (1 + scale) + shift)`` with ``(shift, scale) = head.modulation + e`` (the
  pre-projection embedding), in float32; unpatchified with channels fastest (``(p, q, r, c)``).

Shapes at the boundary (:meth:`WanModel.forward`): ``x [B, C_x, F, H, W]`` (+ ``y [B, C_y, F, H, W]``
concatenated on channels, ``C_x + C_y = in_dim``), ``t [B]`` or per-token ``[B, L]`` with
``L = F/p_t * H/p_h * W/p_w``, ``context [B, text_len, text_dim]`` -> float32 ``[B, out_dim, F, H, W]``.

Diffusers' ``WanTransformer3DModel`` state dicts convert to and from the official names with
:func:`convert_diffusers_dit_state_dict` / :func:`to_diffusers_dit_state_dict`.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..errors import CheckpointError
from .attention import attention

__all__ = [
    "MODEL_TYPES",
    "CrossAttention",
    "ContextCache",
    "DiTCheckpointError",
    "DiTConfig",
    "Head",
    "RMSNorm",
    "SelfAttention",
    "WanAttentionBlock",
    "WanModel",
    "apply_rope",
    "convert_diffusers_dit_state_dict",
    "is_float32_parameter",
    "rope_frequencies",
    "sinusoidal_embedding",
    "to_diffusers_dit_state_dict",
]

MODEL_TYPES: tuple[str, ...] = ("t2v", "i2v", "ti2v")
ROPE_THETA = 10000.0
ROPE_CACHE_SIZE = 2  # RoPE tables (one per latent grid and device) each WanModel keeps
# Per-token timesteps that are constant on at most this many contiguous token ranges (ti2v image
# mode: 2) modulate per range with a broadcast row instead of gathering [B, L, dim] tables;
# 0 forces the gather path.
MAX_TIMESTEP_RUNS = 8
SINUSOID_MAX_PERIOD = 10000.0
OFFICIAL_CLASS_NAME = "WanModel"
OFFICIAL_DIFFUSERS_VERSION = "0.33.0"  # the "_diffusers_version" value written into config.json
DEFAULT_TEXT_DIM = 4096
DEFAULT_PATCH_SIZE: tuple[int, int, int] = (1, 2, 2)

# (in_channels, out_channels) of the released checkpoints -> model_type (for Diffusers configs,
# which do not store a model type).
_MODEL_TYPE_BY_CHANNELS: dict[tuple[int, int], str] = {(16, 16): "t2v", (36, 16): "i2v", (48, 48): "ti2v"}


class DiTCheckpointError(CheckpointError):
    """A DiT state dict has keys that are not part of the expected layout; the message lists them."""


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DiTConfig:
    """Architecture of one Wan DiT; field names are the official ``config.json`` keys.

    ``in_dim`` counts every input channel the patch embedding sees (i2v: 16 noise + 4 mask + 16
    image latent = 36), ``out_dim`` the predicted channels.
    """

    model_type: str
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int
    out_dim: int
    freq_dim: int = 256
    text_dim: int = DEFAULT_TEXT_DIM
    text_len: int = 512
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = DEFAULT_PATCH_SIZE

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"DiTConfig.model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        for name in ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "freq_dim",
                     "text_dim", "text_len"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"DiTConfig.{name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"DiTConfig.dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        head_dim = self.dim // self.num_heads
        if head_dim % 2 or head_dim < 6:
            raise ValueError(f"the head dim (dim / num_heads = {head_dim}) must be even and >= 6 for the 3D RoPE")
        if self.freq_dim % 2:
            raise ValueError(f"DiTConfig.freq_dim must be even, got {self.freq_dim}")
        if len(self.patch_size) != 3 or any(not isinstance(p, int) or p <= 0 for p in self.patch_size):
            raise ValueError(f"DiTConfig.patch_size must be three positive ints, got {self.patch_size!r}")
        if self.in_dim < self.out_dim and self.model_type != "i2v":
            raise ValueError(
                f"DiTConfig: in_dim ({self.in_dim}) < out_dim ({self.out_dim}) for a {self.model_type} model"
            )
        if not self.eps > 0:
            raise ValueError(f"DiTConfig.eps must be positive, got {self.eps!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Real channels of each head given to the (frame, height, width) rotary axes."""
        hw = 2 * (self.head_dim // 6)
        return (self.head_dim - 2 * hw, hw, hw)

    @property
    def patch_volume(self) -> int:
        return math.prod(self.patch_size)

    @classmethod
    def from_config_json(cls, d: Mapping[str, Any], **overrides: Any) -> DiTConfig:
        """Builds a config from an official ``config.json`` dict; unknown keys are ignored.

        ``overrides`` take precedence (e.g. ``text_dim=...`` for tiny checkpoints whose json lacks
        it); an override that is not a field raises ``TypeError``.
        """
        names = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise TypeError(f"DiTConfig.from_config_json got unknown overrides {bad}; fields are {sorted(names)}")
        values: dict[str, Any] = {k: d[k] for k in names if k in d}
        values.update(overrides)
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [k for k in required if k not in values]
        if missing:
            raise ValueError(f"DiT config.json is missing {missing} (got keys {sorted(d)})")
        return cls(**_coerce_config_values(values))

    def to_config_json(self) -> dict[str, Any]:
        """The official 12-key ``config.json`` (plus ``text_dim``/``patch_size`` when not default)."""
        out: dict[str, Any] = {
            "_class_name": OFFICIAL_CLASS_NAME,
            "_diffusers_version": OFFICIAL_DIFFUSERS_VERSION,
            "dim": self.dim,
            "eps": self.eps,
            "ffn_dim": self.ffn_dim,
            "freq_dim": self.freq_dim,
            "in_dim": self.in_dim,
            "model_type": self.model_type,
            "num_heads": self.num_heads,
            "num_layers": self.num_layers,
            "out_dim": self.out_dim,
            "text_len": self.text_len,
        }
        if self.text_dim != DEFAULT_TEXT_DIM:
            out["text_dim"] = self.text_dim
        if self.patch_size != DEFAULT_PATCH_SIZE:
            out["patch_size"] = list(self.patch_size)
        return out

    @classmethod
    def from_diffusers_config(cls, d: Mapping[str, Any], **overrides: Any) -> DiTConfig:
        """Builds a config from a Diffusers ``WanTransformer3DModel`` ``config.json`` dict.

        ``model_type`` is inferred from ``(in_channels, out_channels)`` (16/16 t2v, 36/16 i2v,
        48/48 ti2v) unless given in ``overrides``. Image-embedding (Wan 2.1 I2V) configs are rejected.
        """
        for key in ("image_dim", "added_kv_proj_dim", "pos_embed_seq_len"):
            if d.get(key) is not None:
                raise ValueError(
                    f"Diffusers DiT config has {key}={d[key]!r}: Wan 2.1 image-embedding models are not supported"
                )
        try:
            heads, head_dim = int(d["num_attention_heads"]), int(d["attention_head_dim"])
            in_dim = int(d["in_channels"])
            out_dim = int(d.get("out_channels") or in_dim)
            values: dict[str, Any] = {
                "dim": heads * head_dim,
                "ffn_dim": int(d["ffn_dim"]),
                "num_heads": heads,
                "num_layers": int(d["num_layers"]),
                "in_dim": in_dim,
                "out_dim": out_dim,
            }
        except KeyError as exc:
            raise ValueError(f"Diffusers DiT config is missing {exc.args[0]!r} (got keys {sorted(d)})") from None
        for key in ("freq_dim", "text_dim", "eps", "patch_size"):
            if d.get(key) is not None:
                values[key] = d[key]
        if "model_type" not in overrides:
            model_type = _MODEL_TYPE_BY_CHANNELS.get((in_dim, out_dim))
            if model_type is None:
                raise ValueError(
                    f"cannot infer the Wan model type from in_channels={in_dim}, out_channels={out_dim}; "
                    "pass model_type=..."
                )
            values["model_type"] = model_type
        values.update(overrides)
        return cls(**_coerce_config_values(values))

    def to_diffusers_config(self) -> dict[str, Any]:
        """Keyword arguments for diffusers' ``WanTransformer3DModel`` with the same architecture."""
        return {
            "patch_size": self.patch_size,
            "num_attention_heads": self.num_heads,
            "attention_head_dim": self.head_dim,
            "in_channels": self.in_dim,
            "out_channels": self.out_dim,
            "text_dim": self.text_dim,
            "freq_dim": self.freq_dim,
            "ffn_dim": self.ffn_dim,
            "num_layers": self.num_layers,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": self.eps,
            "image_dim": None,
            "added_kv_proj_dim": None,
            "rope_max_seq_len": 1024,
        }


def _coerce_config_values(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "freq_dim", "text_dim", "text_len"):
        if key in out and isinstance(out[key], float) and out[key].is_integer():
            out[key] = int(out[key])
    if "eps" in out:
        out["eps"] = float(out["eps"])
    if "patch_size" in out:
        out["patch_size"] = tuple(int(p) for p in out["patch_size"])
    return out


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

    x: ``[B, L, heads, D]``; freqs: complex ``[L, D/2]`` -> float32 ``[B, L, heads, D]``.
    """
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    rotated = torch.view_as_complex(pairs) * freqs[None, :, None, :]
    return torch.view_as_real(rotated).flatten(3)


def _linear_f32(layer: nn.Linear, x: Tensor) -> Tensor:
    """``layer(x)`` computed in float32 whatever the weights' dtype (official fp32 autocast regions)."""
    bias = layer.bias.float() if layer.bias is not None else None
    return F.linear(x.float(), layer.weight.float(), bias)


_FLOAT32_PARAM_RE = re.compile(
    r"^(time_embedding\.|time_projection\.|head\.|blocks\.\d+\.modulation$|blocks\.\d+\.norm3\.)"
)


def is_float32_parameter(name: str) -> bool:
    """True for the official parameters that :class:`WanModel` always computes in float32.

    Loaders may keep these in float32 when casting a model to bf16/fp16 (as Diffusers does) to
    avoid the per-call upcast; the forward works with any mix of dtypes.
    """
    return bool(_FLOAT32_PARAM_RE.match(name))


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
    """Self-attention with 3D RoPE. ``x [B, L, dim]``, ``freqs`` complex ``[L, head_dim/2]`` -> ``[B, L, dim]``."""

    def forward(self, x: Tensor, freqs: Tensor) -> Tensor:
        x = x.to(self.q.weight.dtype)
        v = self._heads(self.v(x))
        q = apply_rope(self._heads(self.norm_q(self.q(x))), freqs).to(v.dtype)
        k = apply_rope(self._heads(self.norm_k(self.k(x))), freqs).to(v.dtype)
        return self._out(attention(q, k, v))


class CrossAttention(_AttentionProjections):
    """Unmasked cross-attention to the text. ``x [B, L, dim]``, ``context [B, L_ctx, dim]`` -> ``[B, L, dim]``.

    ``project_context`` computes the text side (k after ``norm_k``, v; each ``[B, L_ctx, heads, head_dim]``)
    once, so a sampler can reuse it for every step of a run (see ``WanModel.encode_context``).
    """

    def project_context(self, context: Tensor) -> tuple[Tensor, Tensor]:
        context = context.to(self.q.weight.dtype)
        v = self._heads(self.v(context))
        k = self._heads(self.norm_k(self.k(context))).to(v.dtype)
        return k, v

    def forward(self, x: Tensor, context: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        k, v = context if isinstance(context, tuple) else self.project_context(context)
        q = self._heads(self.norm_q(self.q(x.to(self.q.weight.dtype)))).to(v.dtype)
        return self._out(attention(q, k, v))


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
    """One DiT block (see the module docstring). Residual stream in and out: float32 ``[B, L, dim]``."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.eps = cfg.eps
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.eps)
        self.norm3 = nn.LayerNorm(dim, eps=cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.eps)
        self.ffn = nn.Sequential(
            nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim)
        )
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
    ) -> Tensor:
        """x: float32 ``[B, L, dim]``; e0: float32 ``[U, 6, dim]`` (one row per distinct timestep);
        t_index: int64 ``[B, L']`` (``L'`` = 1 or L) picking a row of e0 per token, or
        :class:`TimestepRuns`; context ``[B, L_ctx, dim]`` (embedded text) or this block's cached
        ``(k, v)``; freqs: complex ``[L, head_dim/2]``."""
        mod = _Modulation(self.modulation.float()[0] + e0, t_index)  # [U, 6, dim]
        h = mod.modulate(self._layer_norm(x), 0, 1)
        x = mod.gated_add(x, self.self_attn(h, freqs), 2)
        ln3 = F.layer_norm(x, (x.shape[-1],), self.norm3.weight.float(), self.norm3.bias.float(), self.eps)
        x = x + self.cross_attn(ln3, context)
        h = mod.modulate(self._layer_norm(x), 3, 4)
        h = h.to(self.ffn[0].weight.dtype)
        return mod.gated_add(x, self.ffn(h), 5)


class Head(nn.Module):
    """Output head: float32 ``[B, L, dim]`` -> float32 ``[B, L, prod(patch_size) * out_dim]``."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.eps = cfg.eps
        self.head = nn.Linear(cfg.dim, cfg.patch_volume * cfg.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)  # shift, scale

    def forward(self, x: Tensor, e: Tensor, t_index: TimestepIndex) -> Tensor:
        """e: float32 ``[U, dim]`` (pre-projection time embedding), t_index ``[B, L']`` or runs."""
        mod = _Modulation(self.modulation.float()[0] + e[:, None, :], t_index)  # [U, 2, dim]
        h = mod.modulate(F.layer_norm(x, (x.shape[-1],), eps=self.eps), 0, 1)
        return _linear_f32(self.head, h)


def _timestep_runs(t: Tensor, inverse: Tensor) -> TimestepRuns | None:
    """Runs of per-token ``t [B', L]`` (``inverse``: its distinct-value index), split wherever any
    sample's t changes; None if there are more than ``MAX_TIMESTEP_RUNS``."""
    changes = torch.nonzero((t[:, 1:] != t[:, :-1]).any(dim=0)).flatten()  # one host sync
    if changes.numel() + 1 > MAX_TIMESTEP_RUNS:
        return None
    edges = [0, *(changes + 1).tolist(), t.shape[1]]
    starts = torch.tensor(edges[:-1], device=inverse.device)
    return TimestepRuns(bounds=tuple(zip(edges[:-1], edges[1:], strict=True)), index=inverse[:, starts])


class WanModel(nn.Module):
    """The Wan DiT with the official parameter names; see the module docstring for the math.

    Build on ``torch.device("meta")`` and load with ``load_state_dict(sd, assign=True)``: the
    model has no buffers; the RoPE table of the last few latent grids is cached on the instance
    (``rope_table``), outside the state dict.
    """

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.config = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(WanAttentionBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        # (f, h, w, device) -> RoPE table; a plain attribute, not a buffer (state_dict keys unchanged)
        self._rope_cache: OrderedDict[tuple[int, int, int, torch.device], Tensor] = OrderedDict()

    def rope_table(self, grid: tuple[int, int, int], device: torch.device) -> Tensor:
        """``rope_frequencies(grid, head_dim, device)``, cached per ``(f, h, w, device)`` (the last
        ``ROPE_CACHE_SIZE`` grids): a run calls the forward twice per step with the same grid."""
        key = (*grid, torch.device(device))
        table = self._rope_cache.get(key)
        if table is None:
            with torch.inference_mode(False):  # a normal tensor even if first built under inference_mode
                table = rope_frequencies(grid, self.config.head_dim, key[3])
            self._rope_cache[key] = table
            while len(self._rope_cache) > ROPE_CACHE_SIZE:
                self._rope_cache.popitem(last=False)
        else:
            self._rope_cache.move_to_end(key)
        return table

    # -- inputs

    def _check_context(self, context: Tensor, batch: int) -> None:
        cfg = self.config
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != cfg.text_dim:
            raise ValueError(
                f"context must be [B={batch}, {cfg.text_len}, text_dim={cfg.text_dim}]; got {tuple(context.shape)}"
            )
        if context.shape[1] != cfg.text_len:
            raise ValueError(
                f"context has {context.shape[1]} tokens; the DiT attends to exactly text_len={cfg.text_len} "
                "(zero-pad the trimmed T5 output, e.g. with wan.modules.t5.pad_context)"
            )

    def encode_context(self, context: Tensor) -> ContextCache:
        """Embed the padded text ``[B, text_len, text_dim]`` and project every block's cross-attention
        k/v once. Pass the result as ``context`` to ``forward`` for all steps that use this context."""
        self._check_context(context, context.shape[0] if context.ndim == 3 else -1)
        ctx = self.text_embedding(context.to(self.text_embedding[0].weight.dtype))
        kv = tuple(block.cross_attn.project_context(ctx) for block in self.blocks)
        return ContextCache(kv=kv, batch=context.shape[0], owner_id=id(self))

    def _check_inputs(self, x: Tensor, context: Tensor | ContextCache, has_y: bool) -> tuple[int, int, int]:
        cfg = self.config
        if x.ndim != 5:
            raise ValueError(f"WanModel expects latents x of shape [B, C, F, H, W]; got {tuple(x.shape)}")
        if x.shape[1] != cfg.in_dim:
            hint = ""
            if cfg.in_dim > cfg.out_dim:
                hint = f" ({cfg.out_dim} latent channels + {cfg.in_dim - cfg.out_dim} from y = mask + image latent)"
            raise ValueError(
                f"WanModel ({cfg.model_type}) expects {cfg.in_dim} input channels{hint}; got {x.shape[1]}"
                + (" after concatenating y" if has_y else "")
            )
        grid = []
        for size, patch, axis in zip(x.shape[2:], cfg.patch_size, "FHW", strict=True):
            if size % patch:
                raise ValueError(
                    f"latent {axis}={size} is not divisible by the patch size {patch} (x {tuple(x.shape)})"
                )
            grid.append(size // patch)
        if isinstance(context, ContextCache):
            if context.owner_id != id(self):
                raise ValueError("this ContextCache was built by another model; call encode_context on this one")
            if context.batch != x.shape[0]:
                raise ValueError(f"ContextCache is for a batch of {context.batch}; x has {x.shape[0]}")
        else:
            self._check_context(context, x.shape[0])
        return grid[0], grid[1], grid[2]

    def _timestep_groups(
        self, t: Tensor | float, batch: int, seq_len: int, device: torch.device
    ) -> tuple[Tensor, TimestepIndex]:
        """Distinct timesteps ``[U]`` and the int64 index ``[B, L']`` of each sample/token's one, or,
        for per-token t constant on at most ``MAX_TIMESTEP_RUNS`` token ranges (the same ranges for
        every sample), :class:`TimestepRuns`."""
        t = torch.as_tensor(t, device=device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.ndim == 1:
            if t.shape[0] == 1 and batch > 1:
                t = t.expand(batch)
            if t.shape[0] != batch:
                raise ValueError(f"timestep t has {t.shape[0]} entries for a batch of {batch}")
            return t, torch.arange(batch, device=device)[:, None]
        if t.ndim == 2:
            if t.shape[1] != seq_len or t.shape[0] not in (1, batch):
                raise ValueError(
                    f"per-token timesteps must be [B={batch}, L={seq_len}] (L = tokens of the latent grid); "
                    f"got {tuple(t.shape)}"
                )
            values, inverse = torch.unique(t.reshape(-1), return_inverse=True)
            inverse = inverse.reshape(t.shape)
            runs = _timestep_runs(t, inverse) if MAX_TIMESTEP_RUNS > 0 else None
            return values, runs if runs is not None else inverse.expand(batch, seq_len)
        raise ValueError(f"timestep t must be [B] or [B, L]; got shape {tuple(t.shape)}")

    def _time_embeddings(self, t_values: Tensor) -> tuple[Tensor, Tensor]:
        """``t [U]`` -> ``e`` float32 ``[U, dim]``, ``e0`` float32 ``[U, 6, dim]``."""
        sinusoid = sinusoidal_embedding(t_values, self.config.freq_dim).float()
        e = _linear_f32(self.time_embedding[2], F.silu(_linear_f32(self.time_embedding[0], sinusoid)))
        e0 = _linear_f32(self.time_projection[1], F.silu(e))
        return e, rearrange(e0, "u (six d) -> u six d", six=6)

    # -- forward

    def forward(self, x: Tensor, t: Tensor, context: Tensor | ContextCache, y: Tensor | None = None) -> Tensor:
        """Predicts the flow velocity.

        x: ``[B, C_x, F, H, W]`` latents (any float dtype); y: optional ``[B, C_y, F, H, W]``
        concatenated after x on channels (i2v: 4 mask + 16 image-latent channels);
        t: ``[B]`` (or ``[1]``/scalar, broadcast) or per-token ``[B, L]`` with
        ``L = (F/p_t)(H/p_h)(W/p_w)`` in ``(f, h, w)`` order, float or int;
        context: ``[B, text_len, text_dim]``, already zero-padded, or ``encode_context(context)``.
        Returns float32 ``[B, out_dim, F, H, W]``.
        """
        if y is not None:
            if y.ndim != 5 or y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
                raise ValueError(f"y {tuple(y.shape)} must match x {tuple(x.shape)} in batch and F, H, W")
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        f, h, w = self._check_inputs(x, context, y is not None)
        batch = x.shape[0]
        p_t, p_h, p_w = self.config.patch_size

        t_values, t_index = self._timestep_groups(t, batch, f * h * w, x.device)
        e, e0 = self._time_embeddings(t_values)

        tokens = self.patch_embedding(x.to(self.patch_embedding.weight.dtype))
        tokens = rearrange(tokens, "b c f h w -> b (f h w) c").float()
        freqs = self.rope_table((f, h, w), x.device)
        if isinstance(context, ContextCache):
            for block, kv in zip(self.blocks, context.kv, strict=True):
                tokens = block(tokens, e0, t_index, kv, freqs)
        else:
            ctx = self.text_embedding(context.to(self.text_embedding[0].weight.dtype))
            for block in self.blocks:
                tokens = block(tokens, e0, t_index, ctx, freqs)

        out = self.head(tokens, e, t_index)
        return rearrange(
            out, "b (f h w) (p q r c) -> b c (f p) (h q) (w r)", f=f, h=h, w=w, p=p_t, q=p_h, r=p_w
        )


# ----------------------------------------------------------------------------- Diffusers key map

# Diffusers WanTransformer3DModel name -> official name, outside the blocks.
_DIFFUSERS_TOP: dict[str, str] = {
    "patch_embedding.weight": "patch_embedding.weight",
    "patch_embedding.bias": "patch_embedding.bias",
    "condition_embedder.text_embedder.linear_1.weight": "text_embedding.0.weight",
    "condition_embedder.text_embedder.linear_1.bias": "text_embedding.0.bias",
    "condition_embedder.text_embedder.linear_2.weight": "text_embedding.2.weight",
    "condition_embedder.text_embedder.linear_2.bias": "text_embedding.2.bias",
    "condition_embedder.time_embedder.linear_1.weight": "time_embedding.0.weight",
    "condition_embedder.time_embedder.linear_1.bias": "time_embedding.0.bias",
    "condition_embedder.time_embedder.linear_2.weight": "time_embedding.2.weight",
    "condition_embedder.time_embedder.linear_2.bias": "time_embedding.2.bias",
    "condition_embedder.time_proj.weight": "time_projection.1.weight",
    "condition_embedder.time_proj.bias": "time_projection.1.bias",
    "proj_out.weight": "head.head.weight",
    "proj_out.bias": "head.head.bias",
    "scale_shift_table": "head.modulation",
}

# ... and inside ``blocks.{i}.`` (Diffusers' norm2 is the official norm3).
_DIFFUSERS_BLOCK: dict[str, str] = {
    "scale_shift_table": "modulation",
    "norm2.weight": "norm3.weight",
    "norm2.bias": "norm3.bias",
    "ffn.net.0.proj.weight": "ffn.0.weight",
    "ffn.net.0.proj.bias": "ffn.0.bias",
    "ffn.net.2.weight": "ffn.2.weight",
    "ffn.net.2.bias": "ffn.2.bias",
    **{
        f"{theirs}.{proj_d}.{p}": f"{ours}.{proj_o}.{p}"
        for theirs, ours in (("attn1", "self_attn"), ("attn2", "cross_attn"))
        for proj_d, proj_o in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o"))
        for p in ("weight", "bias")
    },
    **{
        f"{theirs}.{norm}.weight": f"{ours}.{norm}.weight"
        for theirs, ours in (("attn1", "self_attn"), ("attn2", "cross_attn"))
        for norm in ("norm_q", "norm_k")
    },
}

_BLOCK_KEY_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_WAN21_IMAGE_KEY_RE = re.compile(
    r"(add_k_proj|add_v_proj|norm_added_[kq]|image_embedder|k_img|v_img|norm_k_img|img_emb)"
)


def _is_known(key: str, top: Collection[str], block: Collection[str]) -> bool:
    match = _BLOCK_KEY_RE.match(key)
    return match.group(2) in block if match is not None else key in top


def _rename(
    sd: Mapping[str, Tensor], top: Mapping[str, str], block: Mapping[str, str], source: str
) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        match = _BLOCK_KEY_RE.match(key)
        if match is not None:
            suffix = block.get(match.group(2))
            new = None if suffix is None else f"blocks.{match.group(1)}.{suffix}"
        else:
            new = top.get(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        hint = ""
        if any(_WAN21_IMAGE_KEY_RE.search(k) for k in unknown):
            hint = " Wan 2.1 image-conditioning (CLIP) weights are not part of Wan 2.2 and are not supported."
        elif any(_is_known(k, top.values(), block.values()) for k in unknown):
            hint = " They are in the other naming scheme: the dict may already be converted."
        shown = ", ".join(sorted(unknown)[:10])
        more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise DiTCheckpointError(f"{len(unknown)} keys are not {source} Wan DiT keys: {shown}{more}.{hint}")
    return out


def convert_diffusers_dit_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Renames a Diffusers ``WanTransformer3DModel`` state dict to the official Wan keys.

    Tensors are not copied. Raises :class:`DiTCheckpointError` listing every key that is not a
    Diffusers Wan 2.2 DiT key (e.g. an already-official dict, or Wan 2.1 image-embedding weights).
    """
    return _rename(sd, _DIFFUSERS_TOP, _DIFFUSERS_BLOCK, "Diffusers")


def to_diffusers_dit_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`convert_diffusers_dit_state_dict`: official keys -> Diffusers keys (strict)."""
    top = {v: k for k, v in _DIFFUSERS_TOP.items()}
    block = {v: k for k, v in _DIFFUSERS_BLOCK.items()}
    return _rename(sd, top, block, "official")
