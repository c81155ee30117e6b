"""Wan 2.1 video VAE (``Wan2.1_VAE.pth``; used by T2V-A14B and I2V-A14B).

Compression 4x in time (causal: ``1 + 4k`` frames -> ``1 + k`` latent frames), 8x in space, 16 latent
channels. ``state_dict()`` keys and shapes equal the official file's (194 tensors for the full-size
config), so ``Wan21VAE(Wan21VAEConfig.from_state_dict(sd)).load_state_dict(sd, strict=True)`` loads
the real checkpoint as well as tiny random ones.

Layout (full size: dim 96, dim_mult (1, 2, 4, 4), 2 residual blocks per stage):

- ``encoder``: ``conv1`` (3 -> dim), ``downsamples.{0..}`` (a flat list: per stage ``num_res_blocks``
  ResidualBlocks, then a Resample except after the last stage), ``middle``, ``head`` (-> 2*z_dim).
- ``conv1`` (1x1x1, 2z -> 2z, gives mu | logvar), ``conv2`` (1x1x1, z -> z).
- ``decoder``: ``conv1`` (z -> dim*mult[-1]), ``middle``, ``upsamples.{0..}`` (per stage
  ``num_res_blocks + 1`` ResidualBlocks, then a Resample whose conv halves the channels), ``head`` (-> 3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from .conversion import DIFFUSERS_VAE_RESNET_TO_OFFICIAL, convert_diffusers_vae_shared_key, raise_unknown_vae_keys
from .vae_blocks import (
    CausalConv3d,
    ChunkCache,
    ChunkedVideoVAE,
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
    "WAN21_LATENTS_MEAN",
    "WAN21_LATENTS_STD",
    "Wan21VAE",
    "Wan21VAEConfig",
    "convert_diffusers_vae21_state_dict",
]

WAN21_LATENTS_MEAN: tuple[float, ...] = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD: tuple[float, ...] = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip

_WHAT = "Wan 2.1 VAE"


@dataclass(frozen=True)
class Wan21VAEConfig:
    """Architecture of a Wan 2.1 VAE; the defaults are the official ``Wan2.1_VAE.pth``.

    ``temporal_downsample[i]`` says whether encoder stage ``i`` also halves time (the decoder uses the
    reverse). Note the official ``WanVAE_`` *class* default ``[True, True, False]`` is not what the
    checkpoint uses; ``(False, True, True)`` is.
    """

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD

    def __post_init__(self) -> None:
        for name in ("dim_mult", "temporal_downsample", "latents_mean", "latents_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "temporal_downsample", tuple(bool(f) for f in self.temporal_downsample))
        object.__setattr__(self, "latents_mean", tuple(float(v) for v in self.latents_mean))
        object.__setattr__(self, "latents_std", tuple(float(v) for v in self.latents_std))
        validate_vae_config(
            "Wan21VAEConfig",
            dims={"dim": self.dim},
            z_dim=self.z_dim,
            dim_mult=self.dim_mult,
            num_res_blocks=self.num_res_blocks,
            temporal_downsample=self.temporal_downsample,
            latents_mean=self.latents_mean,
            latents_std=self.latents_std,
        )

    @property
    def stride(self) -> tuple[int, int, int]:
        """(time, height, width) compression: (4, 8, 8) for the real model."""
        s = 2 ** (len(self.dim_mult) - 1)
        return (4, s, s)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, Any], **overrides: Any) -> Wan21VAEConfig:
        """Infer the architecture from an official-layout state dict (tensors or anything with ``.shape``).

        ``overrides`` set the remaining fields (e.g. ``latents_mean``/``latents_std`` when z_dim != 16).
        Raises ValueError for a state dict that is not a Wan 2.1 VAE.
        """
        require_keys(sd, ["encoder.conv1.weight", "conv2.weight", "decoder.head.2.weight"], _WHAT)
        if any(k.startswith("encoder.downsamples.0.downsamples.") for k in sd):
            raise ValueError("this is a Wan 2.2 VAE state dict (nested downsamples); use Wan22VAEConfig")
        dim = int(sd["encoder.conv1.weight"].shape[0])
        z_dim = int(sd["conv2.weight"].shape[0])
        flat = block_indices(sd, "encoder.downsamples.")
        if not flat or flat != list(range(len(flat))):
            raise ValueError(f"not a {_WHAT} state dict: encoder.downsamples indices {flat} are not 0..n-1")
        resamples = [i for i in flat if f"encoder.downsamples.{i}.resample.1.weight" in sd]
        res_blocks = resamples[0] if resamples else len(flat)
        stages = (len(flat) + 1) // (res_blocks + 1)
        expected = [res_blocks + s * (res_blocks + 1) for s in range(stages - 1)]
        if stages * res_blocks + stages - 1 != len(flat) or resamples != expected:
            raise ValueError(
                f"not a {_WHAT} state dict: resamples at encoder.downsamples {resamples} do not fit "
                f"{len(flat)} layers (attention in the down path is not supported)"
            )
        mult = []
        for s in range(stages):
            key = f"encoder.downsamples.{s * (res_blocks + 1)}.residual.2.weight"
            require_keys(sd, [key], _WHAT)
            out = int(sd[key].shape[0])
            if out % dim:
                raise ValueError(f"{key} has {out} output channels, not a multiple of dim = {dim}")
            mult.append(out // dim)
        fields: dict[str, Any] = {
            "dim": dim,
            "z_dim": z_dim,
            "dim_mult": tuple(mult),
            "num_res_blocks": res_blocks,
            "temporal_downsample": tuple(f"encoder.downsamples.{i}.time_conv.weight" in sd for i in resamples),
        }
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_diffusers_config(cls, d: Mapping[str, Any]) -> Wan21VAEConfig:
        """Read a Diffusers ``AutoencoderKLWan`` ``vae/config.json`` dict (Wan 2.1 layout).

        Missing keys take the Diffusers defaults (which equal the official values).
        """
        if d.get("_class_name", "AutoencoderKLWan") != "AutoencoderKLWan":
            raise ValueError(f"expected an AutoencoderKLWan config; got _class_name={d['_class_name']!r}")
        if d.get("is_residual", False):
            raise ValueError("is_residual=True is a Wan 2.2 VAE config; use Wan22VAEConfig.from_diffusers_config")
        if d.get("attn_scales"):
            raise ValueError(f"attn_scales must be empty (as in every Wan VAE); got {d['attn_scales']!r}")
        if d.get("patch_size") not in (None, 1) or d.get("in_channels", 3) != 3 or d.get("out_channels", 3) != 3:
            raise ValueError("a Wan 2.1 VAE has no patchify: patch_size None, in_channels = out_channels = 3")
        base = int(d.get("base_dim", 96))
        if d.get("decoder_base_dim") not in (None, base):
            raise ValueError(f"a Wan 2.1 VAE decoder uses base_dim; got decoder_base_dim={d['decoder_base_dim']!r}")
        z_dim = int(d.get("z_dim", 16))
        cfg = cls(
            dim=base,
            z_dim=z_dim,
            dim_mult=tuple(d.get("dim_mult", (1, 2, 4, 4))),
            num_res_blocks=int(d.get("num_res_blocks", 2)),
            temporal_downsample=tuple(d.get("temperal_downsample", (False, True, True))),
            latents_mean=tuple(d.get("latents_mean", WAN21_LATENTS_MEAN)),
            latents_std=tuple(d.get("latents_std", WAN21_LATENTS_STD)),
        )
        spatial = d.get("scale_factor_spatial")
        if spatial is not None and spatial != cfg.stride[1]:
            raise ValueError(f"scale_factor_spatial={spatial} does not match the architecture ({cfg.stride[1]})")
        return cfg

    def to_diffusers_config(self) -> dict[str, Any]:
        """The matching Diffusers ``AutoencoderKLWan`` constructor arguments."""
        return {
            "base_dim": self.dim,
            "z_dim": self.z_dim,
            "dim_mult": list(self.dim_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_scales": [],
            "temperal_downsample": list(self.temporal_downsample),
            "latents_mean": list(self.latents_mean),
            "latents_std": list(self.latents_std),
            "scale_factor_temporal": self.stride[0],
            "scale_factor_spatial": self.stride[1],
        }


class Encoder21(nn.Module):
    """``[B, 3, T, H, W]`` chunk -> ``[B, 2*z, T', H/s, W/s]`` (T' = 1 for a chunk of 1 or 4 frames)."""

    def __init__(self, cfg: Wan21VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * u for u in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        last = len(cfg.dim_mult) - 1
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != last:
                layers.append(Resample(out_dim, "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)
        self.middle = make_middle(dims[-1])
        self.head = make_head(dims[-1], 2 * cfg.z_dim)

    def forward(self, x: Tensor, cache: ChunkCache) -> Tensor:
        x = self.conv1(x, cache)
        x = run_layers(self.downsamples, x, cache)
        x = run_layers(self.middle, x, cache)
        return run_layers(self.head, x, cache)


class Decoder21(nn.Module):
    """``[B, z, 1, h, w]`` (one latent frame) -> ``[B, 3, 1 or 4, h*s, w*s]`` (first / later chunks)."""

    def __init__(self, cfg: Wan21VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * u for u in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
        temporal_upsample = cfg.temporal_downsample[::-1]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = make_middle(dims[0])
        layers: list[nn.Module] = []
        last = len(cfg.dim_mult) - 1
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                in_dim //= 2  # the previous stage's upsampling conv halved the channels
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != last:
                mode = "upsample3d" if temporal_upsample[i] else "upsample2d"
                layers.append(Resample(out_dim, mode, out_dim=out_dim // 2))
        self.upsamples = nn.Sequential(*layers)
        self.head = make_head(dims[-1], 3)

    def forward(self, x: Tensor, cache: ChunkCache) -> Tensor:
        x = self.conv1(x, cache)
        x = run_layers(self.middle, x, cache)
        x = run_layers(self.upsamples, x, cache)
        return run_layers(self.head, x, cache)


class Wan21VAE(ChunkedVideoVAE):
    """The Wan 2.1 VAE (see the module docstring for layout and ``ChunkedVideoVAE`` for encode/decode).

    ``encode(video [B, 3, 4k+1, H, W])`` -> normalised mu ``[B, z, k+1, H/8, W/8]``;
    ``decode(z)`` -> ``[B, 3, 4k+1, H, W]`` clamped to [-1, 1]. float32 only.
    """

    def __init__(self, config: Wan21VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else Wan21VAEConfig()
        self.z_dim = self.config.z_dim
        self.stride = self.config.stride
        self.encoder = Encoder21(self.config)
        self.conv1 = CausalConv3d(2 * self.z_dim, 2 * self.z_dim, 1)
        self.conv2 = CausalConv3d(self.z_dim, self.z_dim, 1)
        self.decoder = Decoder21(self.config)
        self._init_latent_stats(self.config.latents_mean, self.config.latents_std)


def convert_diffusers_vae21_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Diffusers ``AutoencoderKLWan`` (Wan 2.1 layout) keys -> official ``Wan2.1_VAE.pth`` keys.

    Tensors are passed through unchanged. Raises ValueError on keys it does not recognise.
    """
    up_resnets = block_indices(sd, "decoder.up_blocks.0.resnets.")
    if not up_resnets:
        raise ValueError("not a diffusers Wan 2.1 VAE state dict: no decoder.up_blocks.0.resnets.* keys")
    stage_len = len(up_resnets) + 1  # resnets + the upsampler
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        new = convert_diffusers_vae_shared_key(key)
        if new is None:
            if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(.+)", key):
                index, rest = m.groups()
                if rest in DIFFUSERS_VAE_RESNET_TO_OFFICIAL:
                    new = f"encoder.downsamples.{index}.{DIFFUSERS_VAE_RESNET_TO_OFFICIAL[rest]}"
                elif re.fullmatch(r"(resample\.1|time_conv)\.(weight|bias)", rest):
                    new = f"encoder.downsamples.{index}.{rest}"
            elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
                stage, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
                if rest in DIFFUSERS_VAE_RESNET_TO_OFFICIAL:
                    new = f"decoder.upsamples.{stage * stage_len + j}.{DIFFUSERS_VAE_RESNET_TO_OFFICIAL[rest]}"
            elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.((resample\.1|time_conv)\.(weight|bias))", key):
                stage = int(m.group(1))
                new = f"decoder.upsamples.{stage * stage_len + stage_len - 1}.{m.group(2)}"
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    raise_unknown_vae_keys(unknown, _WHAT)
    return out
