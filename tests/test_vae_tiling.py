"""Tiled VAE encode/decode (``VAETiling``): parity with diffusers' ``AutoencoderKLWan`` tiling.

Same tiny random VAEs as tests/test_vae.py (both built from one state dict). Tolerances (float32):

* tiled decode vs diffusers ``enable_tiling`` decode with the same tile/stride: <= 1e-5 (measured
  ~4e-6); tiled encode vs diffusers tiled encode: <= 1e-5 (measured ~1e-6). diffusers' Wan 2.2 encode
  counts its tile in patchified pixels, so our encode uses 2x its sizes there (see ``VAETiling``);
* tiled vs untiled: not equal by design (a tile sees zero padding at its borders and the middle
  block's attention sees only the tile). With random tiny weights, whose receptive field is not
  local like a trained VAE's, the measured difference at 56x72 px, tile 32/24 (Wan 2.1) and
  112x144, tile 48/32 (Wan 2.2) is max |diff| ~1.8 / 2.0 (the clamp range) and mean |diff| ~0.27 /
  0.30; the test bounds the mean by ``UNTILED_MEAN_TOL`` = 0.4, checks that larger tiles get closer,
  and that a tile covering the whole frame is bit-identical to the untiled path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from test_vae import (
    TINY21,
    TINY22,
    diffusers_vae21,
    diffusers_vae22,
    official_to_diffusers_22,
    random_video,
    randomize_,
    stats,
)
from torch import Tensor

from wan.modules.vae21 import WAN21_LATENTS_MEAN, WAN21_LATENTS_STD, Wan21VAE
from wan.modules.vae22 import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, Wan22VAE
from wan.modules.vae_blocks import ChunkCache, ChunkedVideoVAE, VAETiling

TOL = 1e-5
UNTILED_MEAN_TOL = 0.4


def _pair(version: str) -> tuple[ChunkedVideoVAE, AutoencoderKLWan, Tensor, Tensor]:
    if version == "2.1":
        ours: ChunkedVideoVAE = randomize_(Wan21VAE(TINY21), seed=21)  # type: ignore[assignment]
        ref = diffusers_vae21(TINY21)
        ref.load_state_dict(convert_wan_vae_to_diffusers(dict(ours.state_dict())), strict=True)
        mean, std = stats(WAN21_LATENTS_MEAN, WAN21_LATENTS_STD)
    else:
        ours = randomize_(Wan22VAE(TINY22), seed=22)  # type: ignore[assignment]
        ref = diffusers_vae22(TINY22)
        ref.load_state_dict(official_to_diffusers_22(ours.state_dict()), strict=True)
        mean, std = stats(WAN22_LATENTS_MEAN, WAN22_LATENTS_STD)
    return ours, ref, mean, std


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple[ChunkedVideoVAE, AutoencoderKLWan, Tensor, Tensor]]:
    return {"2.1": _pair("2.1"), "2.2": _pair("2.2")}


def _latents(vae: ChunkedVideoVAE, t_lat: int, h: int, w: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, vae.z_dim, t_lat, h, w, generator=g)


def _ref_decode(ref: AutoencoderKLWan, z: Tensor, mean: Tensor, std: Tensor, tile: tuple[int, ...] | None) -> Tensor:
    ref.use_tiling = False
    if tile is not None:
        ref.enable_tiling(*tile)
    try:
        with torch.no_grad():
            return ref.decode(z * std + mean).sample.clamp(-1, 1)
    finally:
        ref.use_tiling = False


# (version, latent frames, latent h, w, tile (h, w) px, stride (h, w) px) — odd latent sizes, last
# tiles smaller than the blend, non-square tiles, stride == tile (no overlap).
_REF_CACHE: dict[tuple, Tensor] = {}
DECODE_CASES = [
    ("2.1", 3, 7, 9, (32, 32), (24, 24)),
    ("2.1", 1, 7, 9, (32, 32), (24, 24)),
    ("2.1", 2, 5, 11, (24, 40), (16, 24)),
    ("2.1", 2, 6, 6, (16, 16), (16, 16)),
    ("2.2", 3, 7, 9, (48, 48), (32, 32)),
    ("2.2", 2, 5, 3, (32, 48), (16, 32)),
    ("2.2", 1, 4, 6, (64, 64), (48, 48)),
]


@pytest.mark.parametrize("order", ["frames", "tiles"])
@pytest.mark.parametrize(("version", "t_lat", "h", "w", "tile", "stride"), DECODE_CASES)
def test_tiled_decode_matches_diffusers(
    pairs: dict, version: str, t_lat: int, h: int, w: int, tile: tuple[int, int], stride: tuple[int, int], order: str
) -> None:
    ours, ref, mean, std = pairs[version]
    z = _latents(ours, t_lat, h, w, seed=t_lat * 100 + h * 10 + w)
    ours.enable_tiling(tile, stride, order=order)  # type: ignore[arg-type]
    try:
        out = ours.decode(z)
    finally:
        ours.disable_tiling()
    key = (version, t_lat, h, w, tile, stride)
    if key not in _REF_CACHE:  # both orders compare with the same diffusers output
        _REF_CACHE[key] = _ref_decode(ref, z, mean, std, (*tile, *stride))
    out_ref = _REF_CACHE[key]
    s = ours.stride[1]
    assert out.shape == (1, 3, 1 + 4 * (t_lat - 1), h * s, w * s)
    diff = (out - out_ref).abs().max().item()
    print(f"\nWan{version} tiled decode {t_lat}x{h}x{w} tile {tile}/{stride} {order}: max|diff| vs diffusers {diff:.2e}")
    assert diff <= TOL
    assert (out.abs() < 1).float().mean() > 0.5  # a meaningful comparison, not all-clamped output


@pytest.mark.parametrize(
    ("version", "frames", "size", "tile", "stride"),
    [
        ("2.1", 9, (56, 72), (32, 32), (24, 24)),
        ("2.1", 5, (40, 88), (24, 40), (16, 24)),
        ("2.2", 9, (112, 144), (96, 96), (64, 64)),  # = diffusers enable_tiling(48, 48, 32, 32)
        ("2.2", 1, (80, 48), (64, 96), (32, 64)),
    ],
)
def test_tiled_encode_matches_diffusers(
    pairs: dict, version: str, frames: int, size: tuple[int, int], tile: tuple[int, int], stride: tuple[int, int]
) -> None:
    ours, ref, mean, std = pairs[version]
    video = random_video(frames, *size, seed=frames + size[0])
    ours.enable_tiling(tile, stride)
    try:
        z = ours.encode(video)
    finally:
        ours.disable_tiling()
    k = ours.patch_size  # diffusers' tiled encode counts in patchified pixels
    ref.enable_tiling(tile[0] // k, tile[1] // k, stride[0] // k, stride[1] // k)
    try:
        with torch.no_grad():
            z_ref = (ref.encode(video).latent_dist.mean - mean) / std
    finally:
        ref.use_tiling = False
    s = ours.stride[1]
    assert z.shape == (1, ours.z_dim, (frames - 1) // 4 + 1, size[0] // s, size[1] // s)
    diff = (z - z_ref).abs().max().item()
    print(f"\nWan{version} tiled encode {frames}x{size} tile {tile}/{stride}: max|diff| vs diffusers {diff:.2e}")
    assert diff <= TOL and z.std() > 0.1


@pytest.mark.parametrize(
    ("version", "size", "small", "large"),
    [("2.1", (56, 72), ((32, 32), (24, 24)), ((48, 64), (40, 48))), ("2.2", (112, 144), ((48, 48), (32, 32)), ((96, 128), (64, 96)))],
)
def test_tiled_vs_untiled(pairs: dict, version: str, size: tuple[int, int], small: tuple, large: tuple) -> None:
    ours = pairs[version][0]
    video = random_video(9, *size, seed=7)
    z = ours.encode(video)
    full = ours.decode(z)
    diffs = []
    for tile, stride in (small, large):
        ours.enable_tiling(tile, stride)
        try:
            out = ours.decode(z)
        finally:
            ours.disable_tiling()
        d = (out - full).abs()
        diffs.append((d.max().item(), d.mean().item()))
        print(f"\nWan{version} {size} tile {tile}/{stride}: tiled vs untiled max|diff| {d.max():.3f} mean {d.mean():.3f}")
    assert diffs[0][1] <= UNTILED_MEAN_TOL
    assert diffs[1][1] < diffs[0][1]  # larger tiles: closer to the untiled decode

    # a tile covering the whole frame takes the untiled path: bit-identical
    s = ours.stride[1]
    ours.enable_tiling((size[0], size[1] + s), (s, s))
    try:
        assert torch.equal(ours.decode(z), full)
        assert torch.equal(ours.encode(video), z)
    finally:
        ours.disable_tiling()


def test_decode_chunks_stream_per_latent_frame(pairs: dict) -> None:
    ours = pairs["2.1"][0]
    z = _latents(ours, 3, 7, 9, seed=3)
    ours.enable_tiling((32, 32), (24, 24))
    try:
        whole = ours.decode(z)
        chunks = list(ours.decode_chunks(z))
        assert [c.shape[2] for c in chunks] == [1, 4, 4]
        assert torch.equal(torch.cat(chunks, dim=2), whole)
        # closing after the first frame is fine (the pipeline's cancel) and a new decode starts clean
        stream = ours.decode_chunks(z)
        assert torch.equal(next(stream), whole[:, :, :1])
        stream.close()
        # both decode orders and cache offloading give the same pixels
        for tiling in (VAETiling((32, 32), (24, 24), order="tiles"), VAETiling((32, 32), (24, 24), offload_cache=True)):
            ours.tiling = tiling
            assert torch.equal(ours.decode(z), whole)
    finally:
        ours.disable_tiling()
    assert ours.tiling is None


def test_chunk_cache_offload() -> None:
    cache = ChunkCache()
    owner = torch.nn.Identity()
    cache.put(owner, torch.ones(2))
    cache.offload("meta")
    entry = cache.get(owner)
    assert isinstance(entry, Tensor) and entry.device.type == "meta"


def test_tiling_validation(pairs: dict) -> None:
    ours21, ours22 = pairs["2.1"][0], pairs["2.2"][0]
    assert ours21.tiling is None and ours22.tiling is None  # off by default
    t = ours21.enable_tiling(256, 192)
    assert t == VAETiling((256, 256), (192, 192)) and ours21.tiling is t
    ours21.disable_tiling()
    with pytest.raises(ValueError, match="multiples of the VAE's spatial stride 16"):
        ours22.enable_tiling((40, 40), (32, 32))
    with pytest.raises(ValueError, match="stride height"):
        VAETiling((32, 32), (48, 16))
    with pytest.raises(ValueError, match="positive ints"):
        VAETiling((32, 0), (16, 16))
    with pytest.raises(ValueError, match="order"):
        VAETiling(order="rows")  # type: ignore[arg-type]
    ours21.tiling = "yes"  # type: ignore[assignment]
    try:
        with pytest.raises(TypeError, match="VAETiling"):
            ours21.decode(_latents(ours21, 1, 2, 2, seed=0))
    finally:
        ours21.disable_tiling()
    assert ours22.tiling is None


def _load_bench() -> object:
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_vae_tiling.py"
    spec = importlib.util.spec_from_file_location("bench_vae_tiling", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiled_decode_lowers_peak_tensor_memory(pairs: dict) -> None:
    """Peak bytes of live tensors during a decode (not a timing): order="tiles" < untiled."""
    tracker_cls = _load_bench().PeakTensorBytes  # type: ignore[attr-defined]
    ours = pairs["2.1"][0]
    z = _latents(ours, 2, 16, 16, seed=5)  # 128x128 px
    peaks = {}
    for name, tiling in (("untiled", None), ("tiles", VAETiling((64, 64), (48, 48), order="tiles"))):
        ours.tiling = tiling
        with tracker_cls() as tracker:
            ours.decode(z)
        peaks[name] = tracker.peak
    ours.disable_tiling()
    print(f"\npeak tensor bytes 128x128x5: untiled {peaks['untiled'] / 2**20:.1f} MiB, tiled {peaks['tiles'] / 2**20:.1f} MiB")
    assert peaks["tiles"] < 0.7 * peaks["untiled"]
