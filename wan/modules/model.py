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

This module holds ``DiTConfig`` and ``WanModel`` (patch/time/text embeddings, timestep grouping,
RoPE table cache, forward); the blocks, attention, RoPE and head are in ``wan.modules.layers``.
Diffusers' ``WanTransformer3DModel`` state dicts convert to and from the official names with
``wan.modules.conversion.convert_diffusers_dit_state_dict`` / ``to_diffusers_dit_state_dict``.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .attention import resolve_backend
from .layers import (
    ContextCache,
    Head,
    TimestepIndex,
    TimestepRuns,
    WanAttentionBlock,
    compute_dtype,
    linear_f32,
    rope_frequencies,
    sinusoidal_embedding,
)

__all__ = [
    "MAX_TIMESTEP_RUNS",
    "MODEL_TYPES",
    "ROPE_CACHE_SIZE",
    "DiTConfig",
    "WanModel",
    "is_float32_parameter",
]

MODEL_TYPES: tuple[str, ...] = ("t2v", "i2v", "ti2v")
ROPE_CACHE_SIZE = 2  # RoPE tables (one per latent grid and device) each WanModel keeps
# Per-token timesteps that are constant on at most this many contiguous token ranges (ti2v image
# mode: 2) modulate per range with a broadcast row instead of gathering [B, L, dim] tables;
# 0 forces the gather path.
MAX_TIMESTEP_RUNS = 8
OFFICIAL_CLASS_NAME = "WanModel"
OFFICIAL_DIFFUSERS_VERSION = "0.33.0"  # the "_diffusers_version" value written into config.json
DEFAULT_TEXT_DIM = 4096
DEFAULT_PATCH_SIZE: tuple[int, int, int] = (1, 2, 2)

# (in_channels, out_channels) of the released checkpoints -> model_type (for Diffusers configs,
# which do not store a model type).
_MODEL_TYPE_BY_CHANNELS: dict[tuple[int, int], str] = {(16, 16): "t2v", (36, 16): "i2v", (48, 48): "ti2v"}


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


_FLOAT32_PARAM_RE = re.compile(
    r"^(time_embedding\.|time_projection\.|head\.|blocks\.\d+\.modulation$|blocks\.\d+\.norm3\.)"
)


def is_float32_parameter(name: str) -> bool:
    """True for the official parameters that :class:`WanModel` always computes in float32.

    Loaders may keep these in float32 when casting a model to bf16/fp16 (as Diffusers does) to
    avoid the per-call upcast; the forward works with any mix of dtypes.
    """
    return bool(_FLOAT32_PARAM_RE.match(name))


# ----------------------------------------------------------------------------- model


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
        self.blocks = nn.ModuleList(
            WanAttentionBlock(dim, cfg.ffn_dim, cfg.num_heads, cfg.eps) for _ in range(cfg.num_layers)
        )
        self.head = Head(dim, cfg.patch_volume * cfg.out_dim, cfg.eps)
        # (f, h, w, device) -> RoPE table; a plain attribute, not a buffer (state_dict keys unchanged)
        self._rope_cache: OrderedDict[tuple[int, int, int, torch.device], Tensor] = OrderedDict()
        self.sequence_parallel: Any = None  # wan.distributed.SequenceParallel while sharding tokens
        # runner(block, x, e0, t_index, context, freqs, backend) -> x, called for every block instead of
        # block(...) when set (wan.compile.BlockCompiler: one compiled region shared by all blocks)
        self.block_runner: Any = None

    def set_sequence_parallel(self, sp: Any) -> None:
        """Split every forward's video tokens over a Ulysses group (``wan.distributed.SequenceParallel``;
        None: the single-process path, unchanged). The heads must divide by the group size."""
        if sp is not None and self.config.num_heads % sp.size:
            from wan.distributed.config import check_heads

            check_heads(self.config.num_heads, sp.size)
        self.sequence_parallel = sp
        for block in self.blocks:
            block.self_attn.sequence_parallel = sp

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
        e = linear_f32(self.time_embedding[2], F.silu(linear_f32(self.time_embedding[0], sinusoid)))
        e0 = linear_f32(self.time_projection[1], F.silu(e))
        return e, rearrange(e0, "u (six d) -> u six d", six=6)

    # -- forward

    def attention_backend(self, attention: str | None, device: torch.device, *, full_precision: bool = False) -> str:
        """The concrete attention backend a forward on ``device`` uses for the name ``attention``
        (``wan.modules.attention.resolve_backend`` with this model's compute dtype and head dim)."""
        dtype = compute_dtype(self.blocks[0].self_attn.v) if len(self.blocks) else torch.float32
        return resolve_backend(attention, device, dtype, self.config.head_dim, full_precision=full_precision)

    def forward(
        self, x: Tensor, t: Tensor, context: Tensor | ContextCache, y: Tensor | None = None, *, attention: str | None = None
    ) -> Tensor:
        """Predicts the flow velocity.

        x: ``[B, C_x, F, H, W]`` latents (any float dtype); y: optional ``[B, C_y, F, H, W]``
        concatenated after x on channels (i2v: 4 mask + 16 image-latent channels);
        t: ``[B]`` (or ``[1]``/scalar, broadcast) or per-token ``[B, L]`` with
        ``L = (F/p_t)(H/p_h)(W/p_w)`` in ``(f, h, w)`` order, float or int;
        context: ``[B, text_len, text_dim]``, already zero-padded, or ``encode_context(context)``;
        attention: the attention backend name (``"auto"``/None, ``"sdpa"``, ``"flash_attn_2"``,
        ``"flash_attn_3"``, ``"sage"``), resolved once per forward (``AttentionBackendError`` if it
        cannot run). Returns float32 ``[B, out_dim, F, H, W]``.
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
        sp = self.sequence_parallel
        if sp is not None:  # this rank's slice of the (padded) tokens, RoPE rows and timestep index
            tokens, freqs, t_index = sp.shard(tokens, freqs, t_index)
        backend = self.attention_backend(attention, x.device)
        run = self.block_runner
        if isinstance(context, ContextCache):
            contexts: Any = context.kv
        else:
            ctx = self.text_embedding(context.to(self.text_embedding[0].weight.dtype))
            contexts = [ctx] * len(self.blocks)
        for block, ctx_i in zip(self.blocks, contexts, strict=True):
            if run is None:
                tokens = block(tokens, e0, t_index, ctx_i, freqs, backend)
            else:
                tokens = run(block, tokens, e0, t_index, ctx_i, freqs, backend)

        out = self.head(tokens, e, t_index)
        if sp is not None:
            out = sp.gather(out)  # [B, L, out] on every rank
        return rearrange(
            out, "b (f h w) (p q r c) -> b c (f p) (h q) (w r)", f=f, h=h, w=w, p=p_t, q=p_h, r=p_w
        )
