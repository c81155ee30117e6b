"""Wan 2.1 / 2.2 VAEs: official key layout, config inference, and parity with diffusers' AutoencoderKLWan.

Tiny random VAEs (every tensor randomised, RMS gammas included) are written under the official key
names, converted to diffusers keys (2.1: diffusers' own ``convert_wan_vae_to_diffusers``; 2.2: a
test-side official -> diffusers map written here from the key-map facts, since diffusers has no library
converter for it) and loaded strictly into ``AutoencoderKLWan``. Encode (normalised mu) and decode
(clamped video) must agree within 1e-5 in float32.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from torch import Tensor, nn

from wan.modules.vae21 import (
    WAN21_LATENTS_MEAN,
    WAN21_LATENTS_STD,
    Wan21VAE,
    Wan21VAEConfig,
    convert_diffusers_vae21_state_dict,
)
from wan.modules.vae22 import (
    WAN22_LATENTS_MEAN,
    WAN22_LATENTS_STD,
    AvgDown3D,
    DupUp3D,
    Wan22VAE,
    Wan22VAEConfig,
    convert_diffusers_vae22_state_dict,
    patchify,
    unpatchify,
)

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5

# sha256 of the sorted "key\t(shape)" lines of each section of research/official-keys_vae.txt, so the
# full-size layout stays checked where that file is not around (CI). Counts: 194 / 196 tensors.
OFFICIAL_KEYS_SHA256 = {
    "Wan2.1": ("435aaa828462f9e154337ddc90316ba64105ed65c34130a99fdefb612268cb8b", 194, 126_892_531),
    "Wan2.2": ("d5409bb57fafe4858a982c07cc95d5121d868849095b3c7f95891e7c7944846a", 196, 704_688_668),
}
OFFICIAL_KEYS_FILES = (
    REPO / "tests" / "data" / "official-keys_vae.txt",
    REPO.parent / "shared" / "research" / "official-keys_vae.txt",
)

TINY21 = Wan21VAEConfig(dim=8, z_dim=16)
TINY22 = Wan22VAEConfig(dim=8, dec_dim=12, z_dim=48)


# ---------------------------------------------------------------------------------------------------
# helpers


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Overwrite every parameter with seeded random values of a sane scale (gammas around 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.05 * noise)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)
    return module.eval()


def layout_lines(sd: Mapping[str, Tensor]) -> list[str]:
    return sorted(f"{k}\t{tuple(v.shape)}" for k, v in sd.items())


def official_key_file_sections() -> dict[str, list[str]] | None:
    for path in OFFICIAL_KEYS_FILES:
        if path.is_file():
            text = path.read_text()
            sections = re.findall(r"^### (Wan2\.[12]) VAE: .*?\n(.*?)(?=^###|\Z)", text, flags=re.M | re.S)
            return {title: sorted(line for line in body.splitlines() if "\t" in line) for title, body in sections}
    return None


_RESNET_TO_DIFFUSERS = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}


def official_to_diffusers_22(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Test-side Wan 2.2 official -> diffusers key map (diffusers ships no library converter for it).

    Written from the key-map facts (research/diffusers-oracle.md), in the opposite direction to and
    independently of ``convert_diffusers_vae22_state_dict``: a nested entry is a resnet when its
    parameter is a residual/shortcut one, and the stage's down/upsampler when it is resample/time_conv.
    """
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        side, _, rest = key.partition(".")
        if key.startswith("conv1."):
            new = "quant_conv." + rest
        elif key.startswith("conv2."):
            new = "post_quant_conv." + rest
        elif rest.startswith("conv1."):
            new = f"{side}.conv_in.{rest[len('conv1.'):]}"
        elif rest.startswith("head.0."):
            new = f"{side}.norm_out.{rest[len('head.0.'):]}"
        elif rest.startswith("head.2."):
            new = f"{side}.conv_out.{rest[len('head.2.'):]}"
        elif m := re.fullmatch(r"middle\.([02])\.(.+)", rest):
            new = f"{side}.mid_block.resnets.{int(m.group(1)) // 2}.{_RESNET_TO_DIFFUSERS[m.group(2)]}"
        elif m := re.fullmatch(r"middle\.1\.(.+)", rest):
            new = f"{side}.mid_block.attentions.0.{m.group(1)}"
        elif m := re.fullmatch(r"(down|up)samples\.(\d+)\.(down|up)samples\.(\d+)\.(.+)", rest):
            kind, stage, _, j, param = m.groups()
            if param in _RESNET_TO_DIFFUSERS:
                new = f"{side}.{kind}_blocks.{stage}.resnets.{j}.{_RESNET_TO_DIFFUSERS[param]}"
            else:
                assert param.startswith(("resample.1.", "time_conv.")), key
                new = f"{side}.{kind}_blocks.{stage}.{kind}sampler.{param}"
        else:
            raise AssertionError(f"unmapped official key {key}")
        out[new] = value
    return out


def diffusers_vae21(cfg: Wan21VAEConfig) -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=cfg.dim,
        z_dim=16,
        dim_mult=list(cfg.dim_mult),
        num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=[False, True, True],
        latents_mean=list(WAN21_LATENTS_MEAN),
        latents_std=list(WAN21_LATENTS_STD),
    ).eval()


def diffusers_vae22(cfg: Wan22VAEConfig) -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=cfg.dim,
        decoder_base_dim=cfg.dec_dim,
        z_dim=48,
        dim_mult=list(cfg.dim_mult),
        num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=[False, True, True],
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_temporal=4,
        scale_factor_spatial=16,
        latents_mean=list(WAN22_LATENTS_MEAN),
        latents_std=list(WAN22_LATENTS_STD),
    ).eval()


def stats(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    return torch.tensor(mean).view(1, -1, 1, 1, 1), torch.tensor(std).view(1, -1, 1, 1, 1)


def random_video(t: int, h: int, w: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, h, w, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def pair21() -> tuple[Wan21VAE, AutoencoderKLWan]:
    ours = randomize_(Wan21VAE(TINY21), seed=21)
    ref = diffusers_vae21(TINY21)
    ref.load_state_dict(convert_wan_vae_to_diffusers(dict(ours.state_dict())), strict=True)
    return ours, ref


@pytest.fixture(scope="module")
def pair22() -> tuple[Wan22VAE, AutoencoderKLWan]:
    ours = randomize_(Wan22VAE(TINY22), seed=22)
    ref = diffusers_vae22(TINY22)
    ref.load_state_dict(official_to_diffusers_22(ours.state_dict()), strict=True)
    return ours, ref


# ---------------------------------------------------------------------------------------------------
# full-size layout


@pytest.mark.parametrize(
    ("title", "build"),
    [("Wan2.1", lambda: Wan21VAE(Wan21VAEConfig())), ("Wan2.2", lambda: Wan22VAE(Wan22VAEConfig()))],
)
def test_full_size_meta_layout_is_official(title: str, build: Callable[[], nn.Module]) -> None:
    with torch.device("meta"):
        model = build()
    sd = model.state_dict()
    lines = layout_lines(sd)
    digest, count, numel = OFFICIAL_KEYS_SHA256[title]
    sections = official_key_file_sections()
    if sections is not None:  # readable diff when the research key list is available
        official = sections[title]
        assert sorted(set(lines) - set(official)) == [] and sorted(set(official) - set(lines)) == []
    assert len(sd) == count
    assert sum(v.numel() for v in sd.values()) == numel
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == digest
    # the latent statistics are constants, not state
    assert not any("mean" in k or "std" in k for k in sd)
    assert list(model.buffers()) == []
    # config inference recovers the official architecture (incl. temporal_downsample (False, True, True))
    assert type(model.config).from_state_dict(sd) == model.config  # type: ignore[attr-defined]


def test_full_size_stride_and_defaults() -> None:
    assert Wan21VAEConfig().stride == (4, 8, 8)
    assert Wan22VAEConfig().stride == (4, 16, 16)
    assert Wan21VAEConfig().temporal_downsample == (False, True, True)
    assert Wan22VAEConfig().temporal_downsample == (False, True, True)
    assert len(WAN21_LATENTS_MEAN) == len(WAN21_LATENTS_STD) == 16
    assert len(WAN22_LATENTS_MEAN) == len(WAN22_LATENTS_STD) == 48


# ---------------------------------------------------------------------------------------------------
# parity with diffusers


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_vae21_matches_diffusers(pair21: tuple[Wan21VAE, AutoencoderKLWan], frames: int) -> None:
    ours, ref = pair21
    video = random_video(frames, 24, 40, seed=frames)  # multiples of 8, odd latent size 3x5
    mean, std = stats(WAN21_LATENTS_MEAN, WAN21_LATENTS_STD)
    z = ours.encode(video)
    with torch.no_grad():
        z_ref = (ref.encode(video).latent_dist.mean - mean) / std
    assert z.shape == (1, 16, (frames - 1) // 4 + 1, 3, 5) and z.dtype == torch.float32
    enc_diff = (z - z_ref).abs().max().item()

    out = ours.decode(z)
    with torch.no_grad():
        out_ref = ref.decode(z * std + mean).sample.clamp(-1, 1)
    assert out.shape == video.shape
    dec_diff = (out - out_ref).abs().max().item()
    unclamped = (out.abs() < 1).float().mean().item()
    print(f"\nWan2.1 {frames}f 24x40: encode max|diff| {enc_diff:.3e}, decode max|diff| {dec_diff:.3e}")
    assert enc_diff <= TOL and dec_diff <= TOL
    assert z.std() > 0.1 and unclamped > 0.5  # a meaningful comparison, not all-clamped output


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_vae22_matches_diffusers(pair22: tuple[Wan22VAE, AutoencoderKLWan], frames: int) -> None:
    ours, ref = pair22
    video = random_video(frames, 48, 80, seed=100 + frames)  # multiples of 16, latent 3x5
    mean, std = stats(WAN22_LATENTS_MEAN, WAN22_LATENTS_STD)
    z = ours.encode(video)
    with torch.no_grad():
        z_ref = (ref.encode(video).latent_dist.mean - mean) / std
    assert z.shape == (1, 48, (frames - 1) // 4 + 1, 3, 5) and z.dtype == torch.float32
    enc_diff = (z - z_ref).abs().max().item()

    out = ours.decode(z)
    with torch.no_grad():
        out_ref = ref.decode(z * std + mean).sample.clamp(-1, 1)
    assert out.shape == video.shape
    dec_diff = (out - out_ref).abs().max().item()
    unclamped = (out.abs() < 1).float().mean().item()
    print(f"\nWan2.2 {frames}f 48x80: encode max|diff| {enc_diff:.3e}, decode max|diff| {dec_diff:.3e}")
    assert enc_diff <= TOL and dec_diff <= TOL
    assert z.std() > 0.1 and unclamped > 0.5


# ---------------------------------------------------------------------------------------------------
# converters and config inference


def test_vae21_converter_inverts_diffusers_converter(pair21: tuple[Wan21VAE, AutoencoderKLWan]) -> None:
    ours, ref = pair21
    sd = ours.state_dict()
    back = convert_diffusers_vae21_state_dict(ref.state_dict())
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    assert convert_diffusers_vae21_state_dict(convert_wan_vae_to_diffusers(dict(sd))).keys() == sd.keys()


def test_vae22_converter_inverts_test_map(pair22: tuple[Wan22VAE, AutoencoderKLWan]) -> None:
    ours, ref = pair22
    sd = ours.state_dict()
    mapped = official_to_diffusers_22(sd)
    assert mapped.keys() == ref.state_dict().keys()  # the test map covers diffusers' layout exactly
    back = convert_diffusers_vae22_state_dict(ref.state_dict())
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_converters_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unrecognised keys"):
        convert_diffusers_vae21_state_dict(
            {"decoder.up_blocks.0.resnets.0.norm1.gamma": torch.ones(1), "encoder.bogus.weight": torch.ones(1)}
        )
    with pytest.raises(ValueError, match="unrecognised keys"):
        convert_diffusers_vae22_state_dict({"decoder.up_blocks.0.what.weight": torch.ones(1)})


@pytest.mark.parametrize(
    ("model_cls", "cfg_cls", "cfg"),
    [
        (Wan21VAE, Wan21VAEConfig, TINY21),
        (Wan21VAE, Wan21VAEConfig, Wan21VAEConfig(dim=4, dim_mult=(1, 2, 3), temporal_downsample=(True, True))),
        (Wan21VAE, Wan21VAEConfig, Wan21VAEConfig(dim=4, num_res_blocks=1, temporal_downsample=(True, False, True))),
        (Wan22VAE, Wan22VAEConfig, TINY22),
        (Wan22VAE, Wan22VAEConfig, Wan22VAEConfig(dim=4, dec_dim=8, num_res_blocks=1, dim_mult=(1, 2, 2), temporal_downsample=(True, True))),
    ],
)
def test_from_state_dict_round_trip(model_cls: type, cfg_cls: type, cfg: object) -> None:
    with torch.device("meta"):
        sd = model_cls(cfg).state_dict()
    inferred = cfg_cls.from_state_dict(sd)
    assert inferred == cfg
    model = model_cls(inferred)
    model.load_state_dict({k: torch.zeros(v.shape) for k, v in sd.items()}, strict=True, assign=True)


def test_from_state_dict_rejects_the_other_version() -> None:
    with torch.device("meta"):
        sd21 = Wan21VAE(TINY21).state_dict()
        sd22 = Wan22VAE(TINY22).state_dict()
    with pytest.raises(ValueError, match="Wan 2.2"):
        Wan21VAEConfig.from_state_dict(sd22)
    with pytest.raises(ValueError, match="Wan 2.1"):
        Wan22VAEConfig.from_state_dict(sd21)
    with pytest.raises(ValueError, match="missing"):
        Wan21VAEConfig.from_state_dict({"encoder.conv1.weight": torch.zeros(8, 3, 3, 3, 3)})


def test_from_diffusers_config(pair21: tuple[Wan21VAE, AutoencoderKLWan], pair22: tuple[Wan22VAE, AutoencoderKLWan]) -> None:
    assert Wan21VAEConfig.from_diffusers_config(dict(pair21[1].config)) == TINY21
    assert Wan22VAEConfig.from_diffusers_config(dict(pair22[1].config)) == TINY22
    # the published Wan2.2-TI2V-5B-Diffusers vae/config.json values
    published = {
        "_class_name": "AutoencoderKLWan",
        "attn_scales": [],
        "base_dim": 160,
        "decoder_base_dim": 256,
        "dim_mult": [1, 2, 4, 4],
        "dropout": 0.0,
        "in_channels": 12,
        "is_residual": True,
        "latents_mean": list(WAN22_LATENTS_MEAN),
        "latents_std": list(WAN22_LATENTS_STD),
        "num_res_blocks": 2,
        "out_channels": 12,
        "patch_size": 2,
        "scale_factor_spatial": 16,
        "scale_factor_temporal": 4,
        "temperal_downsample": [False, True, True],
        "z_dim": 48,
        "clip_output": False,
    }
    assert Wan22VAEConfig.from_diffusers_config(published) == Wan22VAEConfig()
    assert Wan21VAEConfig.from_diffusers_config({"_class_name": "AutoencoderKLWan"}) == Wan21VAEConfig()
    # latents_mean/std from the config override the constants
    custom = Wan21VAEConfig.from_diffusers_config({"base_dim": 8, "latents_mean": [0.5] * 16, "latents_std": [2.0] * 16})
    assert custom.latents_mean == (0.5,) * 16 and custom.latents_std == (2.0,) * 16
    assert Wan21VAE(custom).latents_mean.tolist() == [0.5] * 16
    # round trip through our own export
    assert Wan21VAEConfig.from_diffusers_config(TINY21.to_diffusers_config()) == TINY21
    assert Wan22VAEConfig.from_diffusers_config(TINY22.to_diffusers_config()) == TINY22
    with pytest.raises(ValueError, match="Wan22VAEConfig"):
        Wan21VAEConfig.from_diffusers_config(published)
    with pytest.raises(ValueError, match="Wan21VAEConfig"):
        Wan22VAEConfig.from_diffusers_config({"base_dim": 96})
    with pytest.raises(ValueError, match="scale_factor_spatial"):
        Wan22VAEConfig.from_diffusers_config({**published, "scale_factor_spatial": 8})


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="temporal_downsample"):
        Wan21VAEConfig(temporal_downsample=(True, True, True))
    with pytest.raises(ValueError, match="temporal_downsample"):
        Wan22VAEConfig(temporal_downsample=(True, True))
    with pytest.raises(ValueError, match="latents_mean"):
        Wan21VAEConfig(z_dim=4)
    with pytest.raises(ValueError, match="dim"):
        Wan22VAEConfig(dim=0)
    cfg = Wan21VAEConfig(dim_mult=[1, 2, 4, 4], temporal_downsample=[False, True, True])  # lists are frozen to tuples
    assert cfg == Wan21VAEConfig() and hash(cfg) == hash(Wan21VAEConfig())


# ---------------------------------------------------------------------------------------------------
# behaviour of the chunked loop


@pytest.mark.parametrize("which", ["21", "22"])
def test_image_encodes_to_one_latent_frame_and_back(
    which: str, pair21: tuple[Wan21VAE, AutoencoderKLWan], pair22: tuple[Wan22VAE, AutoencoderKLWan]
) -> None:
    vae = pair21[0] if which == "21" else pair22[0]
    s = vae.stride[1]
    image = random_video(1, 2 * s, 3 * s, seed=7)
    z = vae.encode(image)
    assert z.shape == (1, vae.z_dim, 1, 2, 3)
    out = vae.decode(z)
    assert out.shape == (1, 3, 1, 2 * s, 3 * s)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("which", ["21", "22"])
def test_causal_and_stateless(
    which: str, pair21: tuple[Wan21VAE, AutoencoderKLWan], pair22: tuple[Wan22VAE, AutoencoderKLWan]
) -> None:
    vae = pair21[0] if which == "21" else pair22[0]
    s = vae.stride[1]
    video = random_video(9, s, 2 * s, seed=3)
    z9 = vae.encode(video)
    # causal: the first 5 frames give the first 2 latent frames of the 9-frame clip
    assert torch.allclose(vae.encode(video[:, :, :5]), z9[:, :, :2], atol=TOL, rtol=0)
    # no state survives a call: a second call is bit-identical
    assert torch.equal(vae.encode(video), z9)
    chunks = list(vae.decode_chunks(z9))
    assert [c.shape[2] for c in chunks] == [1, 4, 4]
    full = vae.decode(z9)
    assert torch.equal(torch.cat(chunks, dim=2), full)
    # an abandoned generator leaves nothing behind either
    gen = vae.decode_chunks(z9)
    next(gen)
    gen.close()
    assert torch.equal(vae.decode(z9), full)
    assert torch.allclose(vae.decode(z9[:, :, :2]), full[:, :, :5], atol=TOL, rtol=0)


def test_batch_matches_single(pair21: tuple[Wan21VAE, AutoencoderKLWan]) -> None:
    vae = pair21[0]
    video = torch.cat([random_video(5, 16, 8, seed=1), random_video(5, 16, 8, seed=2)])
    z = vae.encode(video)
    assert torch.allclose(z[1:], vae.encode(video[1:]), atol=TOL, rtol=0)
    assert torch.allclose(vae.decode(z)[:1], vae.decode(z[:1]), atol=TOL, rtol=0)


@pytest.mark.parametrize("which", ["21", "22"])
def test_invalid_inputs_raise(
    which: str, pair21: tuple[Wan21VAE, AutoencoderKLWan], pair22: tuple[Wan22VAE, AutoencoderKLWan]
) -> None:
    vae = pair21[0] if which == "21" else pair22[0]
    s = vae.stride[1]
    with pytest.raises(ValueError, match=r"5-D \[B, 3, T, H, W\]"):
        vae.encode(torch.zeros(3, 5, s, s))
    with pytest.raises(ValueError, match="channels C .* must be 3"):
        vae.encode(torch.zeros(1, 4, 5, s, s))
    with pytest.raises(ValueError, match=r"frames T .* must be 4k\+1 \(1, 5, 9"):
        vae.encode(torch.zeros(1, 3, 4, s, s))
    with pytest.raises(ValueError, match=f"height H .* multiple of {s}; got {s + 2}"):
        vae.encode(torch.zeros(1, 3, 5, s + 2, s))
    with pytest.raises(ValueError, match=f"width W .* multiple of {s}; got {s // 2}"):
        vae.encode(torch.zeros(1, 3, 5, s, s // 2))
    with pytest.raises(TypeError, match="floating-point"):
        vae.encode(torch.zeros(1, 3, 5, s, s, dtype=torch.uint8))
    with pytest.raises(ValueError, match=f"z_dim = {vae.z_dim}"):
        vae.decode(torch.zeros(1, vae.z_dim + 1, 2, 2, 2))
    with pytest.raises(ValueError, match="5-D"):
        vae.decode(torch.zeros(vae.z_dim, 2, 2, 2))
    with pytest.raises(ValueError, match="T, h, w >= 1"):
        vae.decode(torch.zeros(1, vae.z_dim, 0, 2, 2))


def test_float32_only() -> None:
    vae = randomize_(Wan21VAE(TINY21), seed=0).to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"float32 only.*\.float\(\)"):
        vae.encode(torch.zeros(1, 3, 1, 8, 8))
    vae.float()
    # low-precision input and an enclosing autocast still give float32 results
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = vae.encode(torch.zeros(1, 3, 1, 8, 8, dtype=torch.bfloat16))
        out = vae.decode(z.bfloat16())
    assert z.dtype == torch.float32 and out.dtype == torch.float32


def test_patchify_channel_order() -> None:
    x = torch.arange(3 * 4 * 6, dtype=torch.float32).view(1, 3, 1, 4, 6)
    p = patchify(x, 2)
    assert p.shape == (1, 12, 1, 2, 3)
    for c in range(3):
        for q in range(2):  # height sub-position
            for r in range(2):  # width sub-position
                assert torch.equal(p[0, c * 4 + r * 2 + q, 0], x[0, c, 0, q::2, r::2])
    assert torch.equal(unpatchify(p, 2), x)
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        patchify(torch.zeros(3, 4, 4), 2)


def test_avgdown_dupup_shortcuts() -> None:
    x = torch.randn(2, 4, 5, 6, 8)
    down = AvgDown3D(4, 8, factor_t=2, factor_s=2)(x)
    assert down.shape == (2, 8, 3, 3, 4)  # time front-padded 5 -> 6
    # folded channel order is (c, t_sub, h_sub, w_sub), averaged in groups of 4: output channel 0 of
    # frame 0 is the zero front padding (t_sub 0), channel 1 the 2x2 mean of input channel 0, frame 0
    assert torch.equal(down[0, 0, 0], torch.zeros(3, 4))
    assert torch.allclose(down[0, 1, 0], F.avg_pool2d(x[0, 0, 0][None], 2)[0], atol=1e-6)
    # output frame 1 covers input frames 1 and 2 (t_sub 0 and 1)
    assert torch.allclose(down[0, 0, 1], F.avg_pool2d(x[0, 0, 1][None], 2)[0], atol=1e-6)
    assert torch.allclose(down[0, 1, 1], F.avg_pool2d(x[0, 0, 2][None], 2)[0], atol=1e-6)
    up = DupUp3D(8, 4, factor_t=2, factor_s=2)
    y = torch.randn(1, 8, 3, 2, 2)
    assert up(y).shape == (1, 4, 6, 4, 4)
    assert torch.equal(up(y, first_chunk=True), up(y)[:, :, 1:])
    with pytest.raises(ValueError, match="divisible"):
        AvgDown3D(3, 5, factor_t=1, factor_s=1)
