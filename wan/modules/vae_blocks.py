"""Building blocks shared by the Wan 2.1 and Wan 2.2 video VAEs.

Both VAEs are causal in time and run a *chunked* loop: the encoder sees frame 0 alone and then groups
of 4 frames, the decoder sees one latent frame at a time. Every temporal convolution remembers the last
``CACHE_T`` input frames of the previous chunk, so a chunked pass equals one pass over the whole clip
with causal (front-only) zero padding. That memory lives in a :class:`ChunkCache`, created per
encode/decode call and dropped at the end of it; the modules themselves hold no state besides weights.

Attribute names (``residual``, ``shortcut``, ``resample``, ``time_conv``, ``gamma``, ``to_qkv``,
``proj``) and ``nn.Sequential`` indices are chosen so that ``state_dict()`` keys equal the official
``Wan2.1_VAE.pth`` / ``Wan2.2_VAE.pth`` keys.

Tensor layout everywhere: ``[B, C, T, H, W]`` (video-like), float32.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import Tensor, nn

__all__ = [
    "CACHE_T",
    "AttentionBlock",
    "AvgDown3D",
    "CacheMarker",
    "CausalConv3d",
    "ChunkCache",
    "ChunkedVideoVAE",
    "DupUp3D",
    "Resample",
    "ResampleMode",
    "ResidualBlock",
    "RMSNorm",
    "VAETiling",
    "block_indices",
    "encoder_chunks",
    "make_head",
    "make_middle",
    "require_keys",
    "run_layers",
    "validate_vae_config",
]

CACHE_T = 2
"""Number of trailing input frames each temporal convolution keeps for the next chunk."""

ResampleMode = Literal["upsample2d", "upsample3d", "downsample2d", "downsample3d"]


class CacheMarker(enum.Enum):
    """Non-tensor cache states."""

    # An ``upsample3d`` resample saw the first chunk and skipped its temporal upsampling
    # (the official code stores the string 'Rep').
    FIRST_CHUNK_SKIPPED = "Rep"


CacheEntry: TypeAlias = Tensor | CacheMarker


class ChunkCache:
    """Per-call state of the causal chunk loop.

    Each cache-aware module stores its entry under its own identity, so the order in which modules run
    does not matter (the official code uses a flat list walked with a running index instead; the two
    are equivalent because every module runs exactly once per chunk). Create one per encode/decode
    call, set :attr:`chunk_index` before each chunk, and call :meth:`clear` when done.
    """

    def __init__(self) -> None:
        self._entries: dict[int, CacheEntry] = {}
        self.chunk_index: int = 0

    @property
    def first_chunk(self) -> bool:
        """True while the first chunk (frame 0 / latent frame 0) is being processed."""
        return self.chunk_index == 0

    def get(self, owner: nn.Module) -> CacheEntry | None:
        """The entry ``owner`` stored during the previous chunk, or None before its first one."""
        return self._entries.get(id(owner))

    def put(self, owner: nn.Module, entry: CacheEntry) -> None:
        self._entries[id(owner)] = entry

    def clear(self) -> None:
        """Drop every cached tensor (frees memory; the cache can be reused for a new clip)."""
        self._entries.clear()
        self.chunk_index = 0

    def __len__(self) -> int:
        return len(self._entries)

    def offload(self, device: torch.device | str = "cpu") -> None:
        """Move every cached tensor to ``device`` (the modules move them back on their next use).

        The tiled streaming decode parks the caches of the tiles it is not running on the host, so
        the accelerator holds one tile's cache at a time.
        """
        for key, entry in self._entries.items():
            if isinstance(entry, Tensor):
                self._entries[key] = entry.to(device)


def _trailing_frames(x: Tensor, previous: CacheEntry | None) -> Tensor:
    """The last ``CACHE_T`` frames of ``x``; topped up with ``previous``'s last frame if ``x`` is short.

    Cloned so the cache does not keep the whole chunk's storage alive.
    """
    keep = x[:, :, -CACHE_T:].clone()
    if keep.shape[2] < CACHE_T and isinstance(previous, Tensor):
        keep = torch.cat([previous[:, :, -1:].to(keep.device), keep], dim=2)
    return keep


class CausalConv3d(nn.Conv3d):
    """3-D convolution that pads time on the front only (``2 * pad_t`` frames) and space symmetrically.

    ``forward(x, cache)``: x ``[B, C_in, T, H, W]`` -> ``[B, C_out, T', H', W']``. With a cache, the
    frames remembered from the previous chunk replace that many zero frames of the front padding, and
    the last ``CACHE_T`` input frames of this chunk are remembered for the next one. Kernels with no
    temporal padding (1x1x1 convs, the stride-2 downsampling ``time_conv``) never touch the cache.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        pad_t, pad_h, pad_w = (padding,) * 3 if isinstance(padding, int) else padding
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        self.time_pad = 2 * pad_t
        self.space_pad = (pad_w, pad_w, pad_h, pad_h)

    def conv_with_history(self, x: Tensor, history: Tensor | None) -> Tensor:
        """Convolve ``x`` after prepending ``history`` frames (no cache bookkeeping)."""
        front = self.time_pad
        if history is not None and front > 0:
            x = torch.cat([history.to(x.device), x], dim=2)
            front -= history.shape[2]
        x = F.pad(x, (*self.space_pad, front, 0))
        return super().forward(x)

    def forward(self, x: Tensor, cache: ChunkCache | None = None) -> Tensor:  # type: ignore[override]
        if cache is None or self.time_pad == 0:
            return self.conv_with_history(x, None)
        previous = cache.get(self)
        keep = _trailing_frames(x, previous)
        out = self.conv_with_history(x, previous if isinstance(previous, Tensor) else None)
        cache.put(self, keep)
        return out


class RMSNorm(nn.Module):
    """``F.normalize(x, dim=1) * sqrt(C) * gamma`` over the channel dim; no bias.

    ``images=False`` -> gamma ``(C, 1, 1, 1)`` for ``[B, C, T, H, W]``; ``images=True`` -> ``(C, 1, 1)``
    for ``[N, C, H, W]``.
    """

    def __init__(self, dim: int, images: bool = False) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    """RMSNorm, SiLU, conv 3x3x3, RMSNorm, SiLU, Dropout, conv 3x3x3 (+ shortcut).

    Keys: ``residual.{0,2,3,6}`` and, when channels change, ``shortcut`` (1x1x1 conv).
    ``[B, in_dim, T, H, W] -> [B, out_dim, T, H, W]``.
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut: nn.Module = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor, cache: ChunkCache | None = None) -> Tensor:
        return run_layers(self.residual, x, cache) + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention, per frame (no temporal mixing, so no cache).

    Keys: ``norm.gamma`` ``(C, 1, 1)``, ``to_qkv`` (1x1 Conv2d, C -> 3C), ``proj`` (1x1 Conv2d).
    ``[B, C, T, H, W] -> [B, C, T, H, W]``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, cache: ChunkCache | None = None) -> Tensor:
        del cache  # attention is per frame
        b, _, t, h, w = x.shape
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        qkv = self.to_qkv(self.norm(frames))
        q, k, v = rearrange(qkv, "n (three c) h w -> three n 1 (h w) c", three=3).contiguous()
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(rearrange(out, "n 1 (h w) c -> n c h w", h=h, w=w))
        return rearrange(out, "(b t) c h w -> b c t h w", b=b, t=t) + x


class _Upsample2x(nn.Module):
    """Nearest-exact x2 spatial upsampling of ``[N, C, H, W]``, computed in float32."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x.float(), scale_factor=(2.0, 2.0), mode="nearest-exact").type_as(x)


class Resample(nn.Module):
    """Spatial x2 up/down sampling, optionally with a causal temporal x2.

    Keys: ``resample.1`` (the Conv2d) and, for the ``*3d`` modes, ``time_conv``.

    - ``downsample2d``: ZeroPad2d(0,1,0,1) then a stride-2 3x3 conv. ``[B,C,T,H,W] -> [B,C,T,H/2,W/2]``.
    - ``downsample3d``: the same, then ``time_conv`` (kernel (3,1,1), stride 2, no padding) over the
      last remembered frame + this chunk. The first chunk is only remembered (no temporal conv), so
      frame counts go 1 -> 1 and then 4 -> 2 -> 1.
    - ``upsample2d``: nearest-exact x2 then a 3x3 conv ``dim -> out_dim``.
    - ``upsample3d``: first ``time_conv`` (dim -> 2*dim, interleaved into 2x frames), then as
      ``upsample2d``. On the first chunk the temporal step is skipped (1 frame stays 1 frame); on the
      second it runs with zero front padding; afterwards with the cache.
    """

    def __init__(self, dim: int, mode: ResampleMode, out_dim: int | None = None) -> None:
        super().__init__()
        if mode not in ("upsample2d", "upsample3d", "downsample2d", "downsample3d"):
            raise ValueError(
                f"Resample mode must be one of upsample2d, upsample3d, downsample2d, downsample3d; got {mode!r}"
            )
        self.mode: ResampleMode = mode
        self.time_conv: CausalConv3d | None
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(_Upsample2x(), nn.Conv2d(dim, out_dim or dim, 3, padding=1))
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0)) if mode == "upsample3d" else None
        else:
            if out_dim not in (None, dim):
                raise ValueError(f"downsampling keeps the channel count ({dim}); got out_dim={out_dim}")
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
            self.time_conv = (
                CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))
                if mode == "downsample3d"
                else None
            )

    def _temporal_upsample(self, x: Tensor, cache: ChunkCache) -> Tensor:
        assert self.time_conv is not None
        previous = cache.get(self)
        if previous is None:
            cache.put(self, CacheMarker.FIRST_CHUNK_SKIPPED)
            return x
        keep = x[:, :, -CACHE_T:].clone()
        if keep.shape[2] < CACHE_T:
            if isinstance(previous, Tensor):
                head = previous[:, :, -1:].to(keep.device)
            else:
                head = torch.zeros_like(keep)
            keep = torch.cat([head, keep], dim=2)
        history = previous if isinstance(previous, Tensor) else None
        y = self.time_conv.conv_with_history(x, history)
        cache.put(self, keep)
        return rearrange(y, "b (r c) t h w -> b c (t r) h w", r=2)

    def _temporal_downsample(self, x: Tensor, cache: ChunkCache) -> Tensor:
        assert self.time_conv is not None
        previous = cache.get(self)
        if not isinstance(previous, Tensor):
            cache.put(self, x.clone())
            return x
        keep = x[:, :, -1:].clone()
        y = self.time_conv(torch.cat([previous[:, :, -1:].to(x.device), x], dim=2))
        cache.put(self, keep)
        return y

    def forward(self, x: Tensor, cache: ChunkCache | None = None) -> Tensor:
        if self.mode == "upsample3d" and cache is not None:
            x = self._temporal_upsample(x, cache)
        t = x.shape[2]
        x = self.resample(rearrange(x, "b c t h w -> (b t) c h w"))
        x = rearrange(x, "(b t) c h w -> b c t h w", t=t)
        if self.mode == "downsample3d" and cache is not None:
            x = self._temporal_downsample(x, cache)
        return x


class AvgDown3D(nn.Module):
    """Parameter-free shortcut of a Wan 2.2 encoder stage: space/time-to-channel fold, then group mean.

    Time is front-padded with zeros to a multiple of ``factor_t``. The fold order is
    ``(c, t_sub, h_sub, w_sub)``; consecutive groups of ``in*factor/out`` channels are averaged.
    ``[B, in, T, H, W] -> [B, out, ceil(T/ft), H/fs, W/fs]``.
    """

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int = 1) -> None:
        super().__init__()
        self.factor_t = factor_t
        self.factor_s = factor_s
        self.out_channels = out_channels
        folded = in_channels * factor_t * factor_s * factor_s
        if folded % out_channels:
            raise ValueError(
                f"AvgDown3D needs in_channels*factor ({folded}) divisible by out_channels ({out_channels})"
            )

    def forward(self, x: Tensor) -> Tensor:
        pad_t = (-x.shape[2]) % self.factor_t
        x = F.pad(x, (0, 0, 0, 0, pad_t, 0))
        x = rearrange(
            x,
            "b c (t ft) (h fh) (w fw) -> b (c ft fh fw) t h w",
            ft=self.factor_t,
            fh=self.factor_s,
            fw=self.factor_s,
        )
        return reduce(x, "b (o g) t h w -> b o t h w", "mean", o=self.out_channels)


class DupUp3D(nn.Module):
    """Parameter-free shortcut of a Wan 2.2 decoder stage: channel repeat, then channel-to-space/time.

    ``[B, in, T, H, W] -> [B, out, T*ft, H*fs, W*fs]``; with ``first_chunk`` the first ``ft - 1``
    frames are dropped (matching the temporal upsampler, which skips the first chunk).
    """

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int = 1) -> None:
        super().__init__()
        self.factor_t = factor_t
        self.factor_s = factor_s
        self.out_channels = out_channels
        unfolded = out_channels * factor_t * factor_s * factor_s
        if unfolded % in_channels:
            raise ValueError(
                f"DupUp3D needs out_channels*factor ({unfolded}) divisible by in_channels ({in_channels})"
            )
        self.repeats = unfolded // in_channels

    def forward(self, x: Tensor, first_chunk: bool = False) -> Tensor:
        x = repeat(x, "b c t h w -> b (c r) t h w", r=self.repeats)
        x = rearrange(
            x,
            "b (o ft fh fw) t h w -> b o (t ft) (h fh) (w fw)",
            o=self.out_channels,
            ft=self.factor_t,
            fh=self.factor_s,
            fw=self.factor_s,
        )
        if first_chunk:
            x = x[:, :, self.factor_t - 1 :]
        return x


_CACHE_AWARE = (CausalConv3d, ResidualBlock, AttentionBlock, Resample)


def run_layers(layers: nn.Sequential, x: Tensor, cache: ChunkCache | None) -> Tensor:
    """Apply ``layers`` in order, passing the chunk cache to the modules that use it."""
    for layer in layers:
        x = layer(x, cache) if isinstance(layer, _CACHE_AWARE) else layer(x)
    return x


def make_middle(dim: int, dropout: float = 0.0) -> nn.Sequential:
    """``middle.{0: ResidualBlock, 1: AttentionBlock, 2: ResidualBlock}`` at ``dim`` channels."""
    return nn.Sequential(ResidualBlock(dim, dim, dropout), AttentionBlock(dim), ResidualBlock(dim, dim, dropout))


def make_head(in_dim: int, out_dim: int) -> nn.Sequential:
    """``head.{0: RMSNorm, 1: SiLU, 2: CausalConv3d 3x3x3 in_dim -> out_dim}``."""
    return nn.Sequential(RMSNorm(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1))


# ----------------------------------------------------------------------------------------------------
# Config validation and state-dict helpers shared by vae21 / vae22.


def validate_vae_config(
    name: str,
    *,
    dims: Mapping[str, int],
    z_dim: int,
    dim_mult: Sequence[int],
    num_res_blocks: int,
    temporal_downsample: Sequence[bool],
    latents_mean: Sequence[float],
    latents_std: Sequence[float],
) -> None:
    """Raise ValueError naming the offending field of a VAE config."""
    for field, value in {**dims, "z_dim": z_dim, "num_res_blocks": num_res_blocks}.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}.{field} must be a positive int; got {value!r}")
    if len(dim_mult) < 3 or any(not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in dim_mult):
        raise ValueError(f"{name}.dim_mult must hold at least 3 positive ints; got {tuple(dim_mult)!r}")
    if len(temporal_downsample) != len(dim_mult) - 1:
        raise ValueError(
            f"{name}.temporal_downsample needs len(dim_mult) - 1 = {len(dim_mult) - 1} flags; "
            f"got {tuple(temporal_downsample)!r}"
        )
    if sum(bool(f) for f in temporal_downsample) != 2:
        raise ValueError(
            f"{name}.temporal_downsample must enable exactly 2 temporal downsamplings (4x, as the chunk loop "
            f"of 1 + 4k frames assumes; the real checkpoints use (False, True, True)); "
            f"got {tuple(temporal_downsample)!r}"
        )
    for field, values in (("latents_mean", latents_mean), ("latents_std", latents_std)):
        if len(values) != z_dim:
            raise ValueError(f"{name}.{field} must have z_dim = {z_dim} values; got {len(values)}")
    if any(not s > 0 for s in latents_std):
        raise ValueError(f"{name}.latents_std values must be > 0")


def block_indices(sd: Mapping[str, Any], prefix: str) -> list[int]:
    """Sorted distinct integers ``i`` of keys starting with ``prefix + "{i}."``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in sd if (m := pattern.match(k))})


def require_keys(sd: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise ValueError(f"not a {what} state dict: missing {missing[:3]} ({len(missing)} missing)")


# ----------------------------------------------------------------------------------------------------
# Spatial tiling (the scheme of diffusers' AutoencoderKLWan.enable_tiling / tiled_encode / tiled_decode).


@dataclass(frozen=True)
class VAETiling:
    """Spatial tiling of the VAE: overlapping tiles, each with its own causal cache, linearly blended.

    ``tile_size`` and ``stride`` are ``(height, width)`` in *video pixels*, multiples of the VAE's
    spatial stride (8 for Wan 2.1, 16 for Wan 2.2) with ``0 < stride <= tile_size``; the overlap
    ``tile_size - stride`` is blended linearly. The algorithm is diffusers' ``AutoencoderKLWan``
    tiling: tiles start every ``stride`` (the last ones may be smaller), the decoder input is tiled in
    latent space (``tile_size / s`` latents), each tile keeps its own causal cache across all frames,
    a tile is blended in place with the (already blended) tile above and then the one to its left
    over ``tile_size - stride`` rows/columns of the decoder output (for Wan 2.2 the *patchified*
    output, i.e. half-resolution ``(tile_size - stride) / 2``), then the top-left ``stride`` part of
    every tile is kept. Encode tiles the (patchified) video the same way and blends in latent space.
    A video / latent no larger than one tile is processed untiled (as in diffusers).

    Matching diffusers: decode with ``enable_tiling(th, tw, sh, sw)`` equals ``VAETiling((th, tw),
    (sh, sw))`` for both VAEs. diffusers' Wan 2.2 *encode* measures its tile in patchified pixels
    (2x larger in the video), so its encode equals ``VAETiling((2 th, 2 tw), (2 sh, 2 sw))`` here; our
    sizes are always video pixels.

    Decode order (both give identical pixels):

    - ``order="frames"`` (default, streaming): every latent frame goes through all tiles, each tile
      keeping its own causal cache, and the frame's pixels are yielded by ``decode_chunks`` as soon as
      its tiles are blended — progress callbacks and cancellation keep working per latent frame. All
      tiles' caches stay alive, so on a CPU this saves little memory; ``offload_cache`` (default: on
      when the VAE is on an accelerator) parks each tile's cache on the CPU between its frames, so the
      accelerator holds one tile's cache and activations at a time (at the price of host <-> device
      copies of the caches every frame).
    - ``order="tiles"`` (diffusers' order): one tile at a time through all frames (one cache alive),
      the decoded tiles are kept (3 or 12 channels), and ``decode_chunks`` yields the latent frames
      only after the last tile — lowest memory on any device, but no per-frame progress until then.

    Recommended for 720p (1280x720 / 1280x704, diffusers' defaults): ``tile_size=(256, 256),
    stride=(192, 192)`` (64 px overlap) — the lowest peak memory; ``(384, 384)/(320, 320)`` needs
    about 2x the per-tile memory with fewer, less redundant tiles.
    """

    tile_size: tuple[int, int] = (256, 256)
    stride: tuple[int, int] = (192, 192)
    order: Literal["frames", "tiles"] = "frames"
    offload_cache: bool | None = None

    def __post_init__(self) -> None:
        for name in ("tile_size", "stride"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                value = (value, value)
            value = tuple(value)
            if len(value) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value):
                raise ValueError(f"VAETiling.{name} must be (height, width) positive ints in pixels; got {value!r}")
            object.__setattr__(self, name, value)
        for axis, tile, stride in zip(("height", "width"), self.tile_size, self.stride):
            if stride > tile:
                raise ValueError(f"VAETiling stride {axis} ({stride}) must be <= the tile {axis} ({tile})")
        if self.order not in ("frames", "tiles"):
            raise ValueError(f"VAETiling.order must be 'frames' or 'tiles'; got {self.order!r}")
        if self.offload_cache is not None:
            object.__setattr__(self, "offload_cache", bool(self.offload_cache))

    def check(self, spatial_stride: int) -> None:
        """Raise ValueError unless every size is a multiple of the VAE's spatial stride."""
        bad = [v for v in (*self.tile_size, *self.stride) if v % spatial_stride]
        if bad:
            raise ValueError(
                f"VAETiling tile_size {self.tile_size} and stride {self.stride} must be multiples of the VAE's "
                f"spatial stride {spatial_stride}"
            )


def _blend_(a: Tensor, b: Tensor, extent: int, dim: int) -> None:
    """In place: the first ``extent`` slices of ``b`` along ``dim`` fade in from the last ones of ``a``.

    ``b[y] = a[-e + y] * (1 - y/e) + b[y] * (y/e)`` with ``e = min(extent, sizes)`` (diffusers'
    ``blend_v`` / ``blend_h``; the weights are computed in float64 and rounded, as Python scalars are).
    """
    e = min(a.shape[dim], b.shape[dim], extent)
    if e <= 0:
        return
    ramp = torch.arange(e, dtype=torch.float64) / e
    shape = [1] * b.ndim
    shape[dim] = e
    w_b = ramp.to(device=b.device, dtype=b.dtype).view(shape)
    w_a = (1.0 - ramp).to(device=b.device, dtype=b.dtype).view(shape)
    head = b.narrow(dim, 0, e)
    head.copy_(a.narrow(dim, a.shape[dim] - e, e) * w_a + head * w_b)


def _assemble_tiles(
    rows: list[list[Tensor]], blend: tuple[int, int], keep: tuple[int, int], size: tuple[int, int]
) -> Tensor:
    """Blend a grid of overlapping tiles (in place, row-major) and stitch their top-left ``keep`` parts.

    A tile blends first with the tile above, then with the tile to its left, both already blended;
    the result is cropped to ``size`` (height, width).
    """
    out_rows = []
    for i, row in enumerate(rows):
        kept = []
        for j, tile in enumerate(row):
            if i > 0:
                _blend_(rows[i - 1][j], tile, blend[0], dim=-2)
            if j > 0:
                _blend_(row[j - 1], tile, blend[1], dim=-1)
            kept.append(tile[..., : keep[0], : keep[1]])
        out_rows.append(torch.cat(kept, dim=-1))
    return torch.cat(out_rows, dim=-2)[..., : size[0], : size[1]]


# ----------------------------------------------------------------------------------------------------
# The chunked encode / decode loop shared by both VAEs.


def encoder_chunks(num_frames: int) -> Iterator[slice]:
    """Frame slices of the encoder loop: frame 0 alone, then groups of 4 (``1 + 4k`` frames in all)."""
    yield slice(0, 1)
    for start in range(1, num_frames, 4):
        yield slice(start, start + 4)


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if torch.amp.autocast_mode.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class ChunkedVideoVAE(nn.Module):
    """Shared encode/decode loop of the Wan VAEs (subclasses build ``encoder``, ``decoder``, ``conv1``, ``conv2``).

    Runs in float32 only: the parameters must be float32 (call ``.float()``), inputs are cast to float32
    and moved to the parameters' device, and any enclosing autocast is disabled. Runs without autograd.
    The latent mean/std are plain CPU tensors (not parameters or buffers, so not in ``state_dict``),
    moved to the input's device on use.

    Subclasses provide ``_to_encoder_input`` / ``_from_decoder_output`` (identity or (un)patchify) and
    set ``z_dim``, ``stride``, ``latents_mean``, ``latents_std`` and, when they patchify, ``patch_size``.

    Spatial tiling (off by default): ``enable_tiling(tile_size=(H, W), stride=(H, W))`` in pixels, or
    assign a :class:`VAETiling` to ``tiling``; ``disable_tiling()`` turns it off.
    """

    encoder: nn.Module
    decoder: nn.Module
    conv1: CausalConv3d
    conv2: CausalConv3d
    z_dim: int
    stride: tuple[int, int, int]
    latents_mean: Tensor
    latents_std: Tensor
    patch_size: int = 1
    """Spatial patchify factor of the encoder input / decoder output (2 for Wan 2.2)."""
    tiling: VAETiling | None = None
    """Spatial tiling used by encode / decode_chunks / decode; None (the default) = untiled."""

    def _init_latent_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.latents_mean = torch.tensor(list(mean), dtype=torch.float32, device="cpu")
        self.latents_std = torch.tensor(list(std), dtype=torch.float32, device="cpu")

    def _to_encoder_input(self, video: Tensor) -> Tensor:
        return video

    def _from_decoder_output(self, x: Tensor) -> Tensor:
        return x

    def _latent_scale(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(mean, 1/std)`` as ``[1, z, 1, 1, 1]`` float32 on ``device`` (the official arithmetic)."""
        mean = self.latents_mean.to(device).view(1, self.z_dim, 1, 1, 1)
        inv_std = (1.0 / self.latents_std).to(device).view(1, self.z_dim, 1, 1, 1)
        return mean, inv_std

    def _device_fp32(self) -> torch.device:
        wrong = sorted({str(p.dtype) for p in self.parameters() if p.dtype != torch.float32})
        if wrong:
            raise TypeError(
                f"{type(self).__name__} computes in float32 only, but its parameters are {', '.join(wrong)}; "
                "call .float() on it (the VAE is small next to the DiT)"
            )
        return next(self.parameters()).device

    def check_video(self, video: Tensor) -> None:
        """Raise TypeError/ValueError unless ``video`` is ``[B, 3, T=4k+1, H, W]`` with H, W multiples of the stride."""
        if not isinstance(video, Tensor):
            raise TypeError(f"video must be a torch.Tensor [B, 3, T, H, W]; got {type(video).__name__}")
        if video.ndim != 5:
            raise ValueError(f"video must be 5-D [B, 3, T, H, W]; got shape {tuple(video.shape)}")
        if not video.is_floating_point():
            raise TypeError(f"video must be a floating-point tensor with values in [-1, 1]; got {video.dtype}")
        b, c, t, h, w = video.shape
        if b < 1:
            raise ValueError(f"video batch size B must be >= 1; got {b}")
        if c != 3:
            raise ValueError(f"video channels C (dim 1) must be 3 (RGB); got {c}")
        if t < 1 or t % 4 != 1:
            raise ValueError(f"video frames T (dim 2) must be 4k+1 (1, 5, 9, ..., 81, ...); got {t}")
        s = self.stride[1]
        for name, size in (("height H (dim 3)", h), ("width W (dim 4)", w)):
            if size < s or size % s:
                raise ValueError(f"video {name} must be a positive multiple of {s}; got {size}")

    def check_latents(self, z: Tensor) -> None:
        """Raise TypeError/ValueError unless ``z`` is ``[B, z_dim, T, h, w]`` with all sizes >= 1."""
        if not isinstance(z, Tensor):
            raise TypeError(f"latents must be a torch.Tensor [B, {self.z_dim}, T, h, w]; got {type(z).__name__}")
        if z.ndim != 5:
            raise ValueError(f"latents must be 5-D [B, {self.z_dim}, T, h, w]; got shape {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"latents must be a floating-point tensor; got {z.dtype}")
        if z.shape[1] != self.z_dim:
            raise ValueError(f"latent channels (dim 1) must be z_dim = {self.z_dim}; got {z.shape[1]}")
        if min(z.shape[0], z.shape[2], z.shape[3], z.shape[4]) < 1:
            raise ValueError(f"latents must have B, T, h, w >= 1; got shape {tuple(z.shape)}")

    def enable_tiling(
        self,
        tile_size: int | tuple[int, int] = (256, 256),
        stride: int | tuple[int, int] = (192, 192),
        *,
        order: Literal["frames", "tiles"] = "frames",
        offload_cache: bool | None = None,
    ) -> VAETiling:
        """Turn on spatial tiling for ``encode``, ``decode_chunks`` and ``decode`` (see :class:`VAETiling`).

        Sizes are ``(height, width)`` in video pixels (an int means square), multiples of the spatial
        stride. Returns the tiling set as ``self.tiling``.
        """
        tiling = VAETiling(tile_size, stride, order, offload_cache)  # type: ignore[arg-type]
        tiling.check(self.stride[1])
        self.tiling = tiling
        return tiling

    def disable_tiling(self) -> None:
        """Back to untiled encode/decode (the default)."""
        self.tiling = None

    def _active_tiling(self) -> VAETiling | None:
        tiling = self.tiling
        if tiling is not None:
            if not isinstance(tiling, VAETiling):
                raise TypeError(f"{type(self).__name__}.tiling must be a VAETiling or None; got {type(tiling).__name__}")
            tiling.check(self.stride[1])
        return tiling

    def encode(self, video: Tensor) -> Tensor:
        """``[B, 3, T, H, W]`` in [-1, 1], ``T = 4k+1`` -> normalised mean latents ``[B, z, 1 + k, H/s, W/s]``.

        Chunks of frames (1, 4, 4, ...) go through the encoder with the causal cache; only ``mu`` is
        used (no sampling), normalised as ``(mu - mean) / std`` per channel. Returns float32. With
        :attr:`tiling` set and the video larger than one tile, each spatial tile is encoded through
        all frames with its own cache (one tile at a time) and the latents are blended.
        """
        self.check_video(video)
        device = self._device_fp32()
        tiling = self._active_tiling()
        x = self._to_encoder_input(video.to(device=device, dtype=torch.float32))
        with torch.no_grad(), _no_autocast(device):
            if tiling is not None and (video.shape[3] > tiling.tile_size[0] or video.shape[4] > tiling.tile_size[1]):
                mu = self._encode_tiled(x, tiling)
            else:
                mu = self._encode_mu(x)
            mean, inv_std = self._latent_scale(device)
            return (mu - mean) * inv_std

    def _encode_mu(self, x: Tensor) -> Tensor:
        """Encoder input (patchified video) -> un-normalised ``mu``, one causal pass over all frames."""
        cache = ChunkCache()
        try:
            outs = []
            for index, frames in enumerate(encoder_chunks(x.shape[2])):
                cache.chunk_index = index
                outs.append(self.encoder(x[:, :, frames], cache))
            stats = self.conv1(torch.cat(outs, dim=2))
            del outs
            return stats[:, : self.z_dim]
        finally:
            cache.clear()

    def _encode_tiled(self, x: Tensor, tiling: VAETiling) -> Tensor:
        p, s = self.patch_size, self.stride[1]
        tile_in = (tiling.tile_size[0] // p, tiling.tile_size[1] // p)  # in encoder-input (patchified) pixels
        stride_in = (tiling.stride[0] // p, tiling.stride[1] // p)
        tile_lat = (tiling.tile_size[0] // s, tiling.tile_size[1] // s)
        stride_lat = (tiling.stride[0] // s, tiling.stride[1] // s)
        height, width = x.shape[3], x.shape[4]
        rows = [
            [
                self._encode_mu(x[:, :, :, i : i + tile_in[0], j : j + tile_in[1]])
                for j in range(0, width, stride_in[1])
            ]
            for i in range(0, height, stride_in[0])
        ]
        blend = (tile_lat[0] - stride_lat[0], tile_lat[1] - stride_lat[1])
        return _assemble_tiles(rows, blend, stride_lat, (height * p // s, width * p // s))

    def decode_chunks(self, z: Tensor) -> Iterator[Tensor]:
        """Decode one latent frame at a time, yielding pixel chunks as they are ready.

        ``z``: normalised latents ``[B, z, T_lat, h, w]``. Yields ``[B, 3, 1, H, W]`` for latent frame 0
        and ``[B, 3, 4, H, W]`` for each later one, clamped to [-1, 1], float32. The causal cache is
        freed when the generator finishes or is closed.

        With :attr:`tiling` set and the latent larger than one tile, every latent frame is decoded tile
        by tile (each tile with its own causal cache, kept across frames) and the tiles are blended
        before the frame's pixels are yielded, so the stream still yields one latent frame at a time.
        """
        self.check_latents(z)
        device = self._device_fp32()
        tiling = self._active_tiling()
        s = self.stride[1]
        with torch.no_grad(), _no_autocast(device):
            mean, inv_std = self._latent_scale(device)
            x = self.conv2(z.to(device=device, dtype=torch.float32) / inv_std + mean)
        h, w = x.shape[3], x.shape[4]
        if tiling is not None and (h > tiling.tile_size[0] // s or w > tiling.tile_size[1] // s):
            yield from self._decode_tiled_chunks(x, tiling, device)
            return
        cache = ChunkCache()
        try:
            for index in range(x.shape[2]):
                with torch.no_grad(), _no_autocast(device):
                    cache.chunk_index = index
                    out = self._from_decoder_output(self.decoder(x[:, :, index : index + 1], cache))
                    out = out.clamp_(-1.0, 1.0)
                yield out
        finally:
            cache.clear()

    def _decode_tiled_chunks(self, x: Tensor, tiling: VAETiling, device: torch.device) -> Iterator[Tensor]:
        p, s = self.patch_size, self.stride[1]
        tile_lat = (tiling.tile_size[0] // s, tiling.tile_size[1] // s)
        stride_lat = (tiling.stride[0] // s, tiling.stride[1] // s)
        stride_out = (tiling.stride[0] // p, tiling.stride[1] // p)  # in decoder-output (patchified) pixels
        blend = (tiling.tile_size[0] // p - stride_out[0], tiling.tile_size[1] // p - stride_out[1])
        h, w, frames = x.shape[3], x.shape[4], x.shape[2]
        size_out = (h * s // p, w * s // p)
        n_cols = len(range(0, w, stride_lat[1]))
        grid = [(i, j) for i in range(0, h, stride_lat[0]) for j in range(0, w, stride_lat[1])]
        offload = tiling.offload_cache if tiling.offload_cache is not None else device.type != "cpu"

        def tile_frame(ij: tuple[int, int], index: int, cache: ChunkCache) -> Tensor:
            i, j = ij
            cache.chunk_index = index
            return self.decoder(x[:, :, index : index + 1, i : i + tile_lat[0], j : j + tile_lat[1]], cache)

        def assemble(tiles: list[Tensor]) -> Tensor:
            rows = [tiles[r : r + n_cols] for r in range(0, len(tiles), n_cols)]
            out = self._from_decoder_output(_assemble_tiles(rows, blend, stride_out, size_out))
            return out.clamp_(-1.0, 1.0)

        if tiling.order == "tiles":
            # diffusers' order: one tile through all frames at a time (one cache alive), then stitch.
            decoded: list[list[Tensor | None]] = []
            for ij in grid:
                cache = ChunkCache()
                try:
                    with torch.no_grad(), _no_autocast(device):
                        decoded.append([tile_frame(ij, index, cache) for index in range(frames)])
                finally:
                    cache.clear()
            for index in range(frames):
                tiles = [per_tile[index] for per_tile in decoded]
                for per_tile in decoded:
                    per_tile[index] = None
                with torch.no_grad(), _no_autocast(device):
                    out = assemble(tiles)  # type: ignore[arg-type]
                del tiles
                yield out
            return

        # Streaming order: every frame through all tiles, each tile keeping its own cache.
        caches = {ij: ChunkCache() for ij in grid}
        try:
            for index in range(frames):
                with torch.no_grad(), _no_autocast(device):
                    tiles = []
                    for ij in grid:
                        tiles.append(tile_frame(ij, index, caches[ij]))
                        if offload:
                            caches[ij].offload("cpu")
                    out = assemble(tiles)
                    del tiles
                yield out
        finally:
            for cache in caches.values():
                cache.clear()

    def decode(self, z: Tensor) -> Tensor:
        """Normalised latents ``[B, z, T_lat, h, w]`` -> video ``[B, 3, 1 + 4(T_lat-1), h*s, w*s]`` in [-1, 1]."""
        return torch.cat(list(self.decode_chunks(z)), dim=2)
