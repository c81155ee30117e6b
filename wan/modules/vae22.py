"""Wan 2.2 video VAE (``Wan2.2_VAE.pth``; used by TI2V-5B).

Compression 4x in time (``1 + 4k`` frames -> ``1 + k`` latent frames), 16x in space (a 2x2 patchify
followed by three 2x downsamplings), 48 latent channels. ``state_dict()`` keys and shapes equal the
official file's (196 tensors for the full-size config).

Layout (full size: encoder dim 160, decoder dim 256, dim_mult (1, 2, 4, 4), 2 residual blocks):

- ``patchify``: ``[B, 3, T, H, W] -> [B, 12, T, H/2, W/2]`` (channel = c*4 + w_sub*2 + h_sub).
- ``encoder``: ``conv1`` (12 -> dim), ``downsamples.{i}`` = DownResidualBlock (keys
  ``downsamples.{i}.downsamples.{j}``: ``num_res_blocks`` ResidualBlocks then an optional Resample;
  output = main path + parameter-free ``AvgDown3D`` of the input), ``middle``, ``head`` (-> 2*z).
- ``conv1`` (1x1x1, 2z -> 2z), ``conv2`` (1x1x1, z -> z).
- ``decoder``: ``conv1`` (z -> dec_dim*mult[-1]), ``middle``, ``upsamples.{i}`` = UpResidualBlock
  (``upsamples.{i}.upsamples.{j}``: ``num_res_blocks + 1`` ResidualBlocks then an optional Resample
  that keeps the channel count; output = main + ``DupUp3D`` of the input when upsampling), ``head``
  (-> 12), then ``unpatchify``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from einops import rearrange
from torch import Tensor, nn

from .conversion import DIFFUSERS_VAE_RESNET_TO_OFFICIAL, convert_diffusers_vae_shared_key, raise_unknown_vae_keys
from .vae_blocks import (
    AvgDown3D,
    CausalConv3d,
    ChunkCache,
    ChunkedVideoVAE,
    DupUp3D,
    Resample,
    ResidualBlock,
    block_indices,
    make_head,
    make_middle,
    require_keys,
    run_layers,
    validate_vae_config,
)

__all__ = [
    "WAN22_LATENTS_MEAN",
    "WAN22_LATENTS_STD",
    "AvgDown3D",
    "DupUp3D",
    "Wan22VAE",
    "Wan22VAEConfig",
    "convert_diffusers_vae22_state_dict",
    "patchify",
    "unpatchify",
]

WAN22_LATENTS_MEAN: tuple[float, ...] = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
WAN22_LATENTS_STD: tuple[float, ...] = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip

_WHAT = "Wan 2.2 VAE"


def patchify(x: Tensor, patch_size: int) -> Tensor:
    """``[B, C, T, H, W] -> [B, C*p*p, T, H/p, W/p]``, channel order ``(c, w_sub, h_sub)`` as in Wan 2.2.

    (Transposing the sub-pixel order gives a 2-px checkerboard with the real weights.)
    """
    if x.ndim != 5:
        raise ValueError(f"patchify expects [B, C, T, H, W]; got shape {tuple(x.shape)}")
    if patch_size == 1:
        return x
    return rearrange(x, "b c f (h q) (w r) -> b (c r q) f h w", q=patch_size, r=patch_size)


def unpatchify(x: Tensor, patch_size: int) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, C*p*p, T, h, w] -> [B, C, T, h*p, w*p]``."""
    if x.ndim != 5:
        raise ValueError(f"unpatchify expects [B, C*p*p, T, h, w]; got shape {tuple(x.shape)}")
    if patch_size == 1:
        return x
    return rearrange(x, "b (c r q) f h w -> b c f (h q) (w r)", q=patch_size, r=patch_size)


@dataclass(frozen=True)
class Wan22VAEConfig:
    """Architecture of a Wan 2.2 VAE; the defaults are the official ``Wan2.2_VAE.pth``.

    ``dim`` is the encoder base width (official ``c_dim``/diffusers ``base_dim``), ``dec_dim`` the
    decoder's (diffusers ``decoder_base_dim``). The official ``WanVAE_`` class default
    ``temperal_downsample`` is not what the checkpoint uses; ``(False, True, True)`` is.
    """

    dim: int = 160
    dec_dim: int = 256
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    patch_size: int = 2
    latents_mean: tuple[float, ...] = WAN22_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN22_LATENTS_STD

    def __post_init__(self) -> None:
        for name in ("dim_mult", "temporal_downsample", "latents_mean", "latents_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "temporal_downsample", tuple(bool(f) for f in self.temporal_downsample))
        object.__setattr__(self, "latents_mean", tuple(float(v) for v in self.latents_mean))
        object.__setattr__(self, "latents_std", tuple(float(v) for v in self.latents_std))
        validate_vae_config(
            "Wan22VAEConfig",
            dims={"dim": self.dim, "dec_dim": self.dec_dim, "patch_size": self.patch_size},
            z_dim=self.z_dim,
            dim_mult=self.dim_mult,
            num_res_blocks=self.num_res_blocks,
            temporal_downsample=self.temporal_downsample,
            latents_mean=self.latents_mean,
            latents_std=self.latents_std,
        )

    @property
    def io_channels(self) -> int:
        """Channels after patchify (12 for patch 2)."""
        return 3 * self.patch_size**2

    @property
    def stride(self) -> tuple[int, int, int]:
        """(time, height, width) compression: (4, 16, 16) for the real model."""
        s = self.patch_size * 2 ** (len(self.dim_mult) - 1)
        return (4, s, s)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, Any], **overrides: Any) -> Wan22VAEConfig:
        """Infer the architecture from an official-layout state dict (tensors or anything with ``.shape``).

        ``overrides`` set the remaining fields (e.g. ``latents_mean``/``latents_std`` when z_dim != 48).
        Raises ValueError for a state dict that is not a Wan 2.2 VAE.
        """
        require_keys(sd, ["encoder.conv1.weight", "conv2.weight", "decoder.head.2.weight"], _WHAT)
        if not any(k.startswith("encoder.downsamples.0.downsamples.") for k in sd):
            raise ValueError("this is not a Wan 2.2 VAE state dict (flat encoder.downsamples: Wan 2.1?)")
        dim, in_channels = (int(v) for v in sd["encoder.conv1.weight"].shape[:2])
        patch = math.isqrt(in_channels // 3)
        if 3 * patch * patch != in_channels:
            raise ValueError(f"encoder.conv1 takes {in_channels} channels; expected 3 * patch_size**2")
        z_dim = int(sd["conv2.weight"].shape[0])
        stages = block_indices(sd, "encoder.downsamples.")
        if stages != list(range(len(stages))):
            raise ValueError(f"not a {_WHAT} state dict: encoder.downsamples indices {stages} are not 0..n-1")
        res_blocks = len(
            [j for j in block_indices(sd, "encoder.downsamples.0.downsamples.")
             if f"encoder.downsamples.0.downsamples.{j}.residual.0.gamma" in sd]
        )  # fmt: skip
        mult = []
        for s in stages:
            key = f"encoder.downsamples.{s}.downsamples.0.residual.2.weight"
            require_keys(sd, [key], _WHAT)
            out = int(sd[key].shape[0])
            if out % dim:
                raise ValueError(f"{key} has {out} output channels, not a multiple of dim = {dim}")
            mult.append(out // dim)
        head_in = int(sd["decoder.head.2.weight"].shape[1])
        if head_in % mult[0]:
            raise ValueError(f"decoder.head.2 takes {head_in} channels, not a multiple of dim_mult[0] = {mult[0]}")
        fields: dict[str, Any] = {
            "dim": dim,
            "dec_dim": head_in // mult[0],
            "z_dim": z_dim,
            "dim_mult": tuple(mult),
            "num_res_blocks": res_blocks,
            "temporal_downsample": tuple(
                f"encoder.downsamples.{s}.downsamples.{res_blocks}.time_conv.weight" in sd for s in stages[:-1]
            ),
            "patch_size": patch,
        }
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_diffusers_config(cls, d: Mapping[str, Any]) -> Wan22VAEConfig:
        """Read a Diffusers ``AutoencoderKLWan`` ``vae/config.json`` dict (Wan 2.2 layout, ``is_residual``)."""
        if d.get("_class_name", "AutoencoderKLWan") != "AutoencoderKLWan":
            raise ValueError(f"expected an AutoencoderKLWan config; got _class_name={d['_class_name']!r}")
        if not d.get("is_residual", False):
            raise ValueError("is_residual is not true: this is a Wan 2.1 VAE config; use Wan21VAEConfig")
        if d.get("attn_scales"):
            raise ValueError(f"attn_scales must be empty (as in every Wan VAE); got {d['attn_scales']!r}")
        patch = d.get("patch_size") or 1
        io = 3 * patch * patch
        if d.get("in_channels", io) != io or d.get("out_channels", io) != io:
            raise ValueError(
                f"patch_size={patch} needs in_channels = out_channels = {io}; "
                f"got {d.get('in_channels')} / {d.get('out_channels')}"
            )
        base = int(d.get("base_dim", 160))
        dec = d.get("decoder_base_dim")
        cfg = cls(
            dim=base,
            dec_dim=int(dec) if dec is not None else base,
            z_dim=int(d.get("z_dim", 48)),
            dim_mult=tuple(d.get("dim_mult", (1, 2, 4, 4))),
            num_res_blocks=int(d.get("num_res_blocks", 2)),
            temporal_downsample=tuple(d.get("temperal_downsample", (False, True, True))),
            patch_size=int(patch),
            latents_mean=tuple(d.get("latents_mean", WAN22_LATENTS_MEAN)),
            latents_std=tuple(d.get("latents_std", WAN22_LATENTS_STD)),
        )
        spatial = d.get("scale_factor_spatial")
        if spatial is not None and spatial != cfg.stride[1]:
            raise ValueError(f"scale_factor_spatial={spatial} does not match the architecture ({cfg.stride[1]})")
        return cfg

    def to_diffusers_config(self) -> dict[str, Any]:
        """The matching Diffusers ``AutoencoderKLWan`` constructor arguments."""
        return {
            "base_dim": self.dim,
            "decoder_base_dim": self.dec_dim,
            "z_dim": self.z_dim,
            "dim_mult": list(self.dim_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_scales": [],
            "temperal_downsample": list(self.temporal_downsample),
            "latents_mean": list(self.latents_mean),
            "latents_std": list(self.latents_std),
            "is_residual": True,
            "in_channels": self.io_channels,
            "out_channels": self.io_channels,
            "patch_size": self.patch_size,
            "scale_factor_temporal": self.stride[0],
            "scale_factor_spatial": self.stride[1],
        }


class DownResidualBlock(nn.Module):
    """One encoder stage: ``[B, in, T, H, W] -> [B, out, T/ft, H/fs, W/fs]`` = main path + AvgDown3D(x)."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.avg_shortcut = AvgDown3D(in_dim, out_dim, factor_t=2 if temporal else 1, factor_s=2 if spatial else 1)
        layers: list[nn.Module] = []
        for _ in range(num_res_blocks):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if spatial:
            layers.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)

    def forward(self, x: Tensor, cache: ChunkCache) -> Tensor:
        return run_layers(self.downsamples, x, cache) + self.avg_shortcut(x)


class UpResidualBlock(nn.Module):
    """One decoder stage: main path (+ DupUp3D(x) when it upsamples; first chunk drops ``ft - 1`` frames)."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.avg_shortcut = (
            DupUp3D(in_dim, out_dim, factor_t=2 if temporal else 1, factor_s=2) if spatial else None
        )
        layers: list[nn.Module] = []
        for _ in range(num_res_blocks):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if spatial:
            layers.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d", out_dim=out_dim))
        self.upsamples = nn.Sequential(*layers)

    def forward(self, x: Tensor, cache: ChunkCache) -> Tensor:
        main = run_layers(self.upsamples, x, cache)
        if self.avg_shortcut is None:
            return main
        return main + self.avg_shortcut(x, first_chunk=cache.first_chunk)


class Encoder22(nn.Module):
    """Patchified chunk ``[B, 3p^2, T, H/p, W/p]`` -> ``[B, 2*z, T', H/s, W/s]``."""

    def __init__(self, cfg: Wan22VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * u for u in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(cfg.io_channels, dims[0], 3, padding=1)
        last = len(cfg.dim_mult) - 1
        self.downsamples = nn.Sequential(
            *(
                DownResidualBlock(
                    in_dim,
                    out_dim,
                    cfg.num_res_blocks,
                    temporal=i != last and cfg.temporal_downsample[i],
                    spatial=i != last,
                )
                for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:]))
            )
        )
        self.middle = make_middle(dims[-1])
        self.head = make_head(dims[-1], 2 * cfg.z_dim)

    def forward(self, x: Tensor, cache: ChunkCache) -> Tensor:
        x = self.conv1(x, cache)
        for stage in self.downsamples:
            x = stage(x, cache)
        x = run_layers(self.middle, x, cache)
        return run_layers(self.head, x, cache)


class Decoder22(nn.Module):
    """``[B, z, 1, h, w]`` (one latent frame) -> ``[B, 3p^2, 1 or 4, h*s/p, w*s/p]`` (still patchified)."""

    def __init__(self, cfg: Wan22VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dec_dim * u for u in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
        temporal_upsample = cfg.temporal_downsample[::-1]
        last = len(cfg.dim_mult) - 1
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = make_middle(dims[0])
        self.upsamples = nn.Sequential(
            *(
                UpResidualBlock(
                    in_dim,
                    out_dim,
                    cfg.num_res_blocks + 1,
                    temporal=i != last and temporal_upsample[i],
                    spatial=i != last,
                )
                for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:]))
            )
        )
        self.head = make_head(dims[-1], cfg.io_channels)

    def forward(self, x: Tensor, cache: ChunkCache) -> Tensor:
        x = self.conv1(x, cache)
        x = run_layers(self.middle, x, cache)
        for stage in self.upsamples:
            x = stage(x, cache)
        return run_layers(self.head, x, cache)


class Wan22VAE(ChunkedVideoVAE):
    """The Wan 2.2 VAE (see the module docstring for layout and ``ChunkedVideoVAE`` for encode/decode).

    ``encode(video [B, 3, 4k+1, H, W])`` -> normalised mu ``[B, 48, k+1, H/16, W/16]``;
    ``decode(z)`` -> ``[B, 3, 4k+1, H, W]`` clamped to [-1, 1]. float32 only.
    """

    def __init__(self, config: Wan22VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else Wan22VAEConfig()
        self.z_dim = self.config.z_dim
        self.stride = self.config.stride
        self.encoder = Encoder22(self.config)
        self.conv1 = CausalConv3d(2 * self.z_dim, 2 * self.z_dim, 1)
        self.conv2 = CausalConv3d(self.z_dim, self.z_dim, 1)
        self.decoder = Decoder22(self.config)
        self.patch_size = self.config.patch_size
        self._init_latent_stats(self.config.latents_mean, self.config.latents_std)

    def _to_encoder_input(self, video: Tensor) -> Tensor:
        return patchify(video, self.config.patch_size)

    def _from_decoder_output(self, x: Tensor) -> Tensor:
        return unpatchify(x, self.config.patch_size)


def convert_diffusers_vae22_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Diffusers ``AutoencoderKLWan`` (Wan 2.2 layout, ``is_residual``) keys -> official ``Wan2.2_VAE.pth`` keys.

    Tensors are passed through unchanged. Raises ValueError on keys it does not recognise.
    """

    def resnet_count(prefix: str) -> int:
        return len(block_indices(sd, prefix))

    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        new = convert_diffusers_vae_shared_key(key)
        if new is None:
            if m := re.fullmatch(r"(encoder\.down|decoder\.up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
                side, stage, j, rest = m.groups()
                if rest in DIFFUSERS_VAE_RESNET_TO_OFFICIAL:
                    new = f"{side}samples.{stage}.{side.split('.')[1]}samples.{j}.{DIFFUSERS_VAE_RESNET_TO_OFFICIAL[rest]}"
            elif m := re.fullmatch(
                r"(encoder\.down|decoder\.up)_blocks\.(\d+)\.(downsampler|upsampler)\.((resample\.1|time_conv)\.(weight|bias))",
                key,
            ):
                side, stage, _, rest = m.group(1), m.group(2), m.group(3), m.group(4)
                index = resnet_count(f"{side}_blocks.{stage}.resnets.")
                new = f"{side}samples.{stage}.{side.split('.')[1]}samples.{index}.{rest}"
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    raise_unknown_vae_keys(unknown, _WHAT)
    return out
