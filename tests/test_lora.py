"""LoRAs (``wan.lora``) on tiny random DiTs, CPU float32.

Oracles:
- diffusers: for every format diffusers reads, our DiT with the LoRA applied is compared with diffusers'
  ``WanTransformer3DModel`` after diffusers' own ``WanPipeline.load_lora_weights`` (``transformer`` =
  high-noise expert, ``load_into_transformer_2=True`` for the low-noise one; per-expert strengths through
  ``set_adapters``), both built from the same tiny weights: max |diff| <= 1e-5 per expert.
- a hand merge written here (``W + strength * alpha/rank * up @ down``, ``.diff``/``.diff_b``/``.diff_m``
  added to the named parameters) from the raw file keys, independent of ``wan.lora``'s parsing, for what
  diffusers cannot read (norm deltas, modulation deltas, conv LoRAs).
Apply -> remove is bit-identical (every parameter and the forward output). peft is imported plainly: a
missing oracle fails, never skips.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from pathlib import Path

import peft  # noqa: F401  (diffusers' LoRA oracle needs it; fail, never skip)
import pytest
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from wan.errors import CheckpointError
from wan.lora import (
    LoraError,
    LoraPatcher,
    LoraSpec,
    NormalizedLora,
    active_loras,
    apply_loras,
    clear_lora_cache,
    load_lora,
    lora_fits,
    loras_applied,
    remove_loras,
)
from wan.configs import get_spec
from wan.modules.conversion import to_diffusers_dit_state_dict
from wan.modules.model import DiTConfig, WanModel
from wan.testing.lora import LORA_FORMATS, tiny_lora_state_dict, write_tiny_lora
from wan.testing.synthetic import tiny_weights

TOL = 1e-5
STRENGTHS = {"high_noise": 0.7, "low_noise": 1.3, "dense": 0.8}


class Float64Sinusoid(nn.Module):
    """diffusers' ``Timesteps`` with the official float64 sinusoid (as in tests/test_model.py)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
        args = t.double()[:, None] * freqs[None, :]
        return torch.cat([args.cos(), args.sin()], dim=1).float()


def ours(cfg: DiTConfig, sd: dict[str, Tensor]) -> WanModel:
    model = WanModel(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def theirs(cfg: DiTConfig, sd: dict[str, Tensor]) -> WanTransformer3DModel:
    ref = WanTransformer3DModel(**cfg.to_diffusers_config()).eval()
    ref.load_state_dict(to_diffusers_dit_state_dict(sd), strict=True)
    ref.condition_embedder.timesteps_proj = Float64Sinusoid(cfg.freq_dim)
    return ref


def inputs(cfg: DiTConfig, seed: int = 3) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cfg.in_dim, 2, 4, 6, generator=g)  # y (if any) already concatenated
    context = torch.zeros(2, cfg.text_len, cfg.text_dim)
    context[0, :9] = torch.randn(9, cfg.text_dim, generator=g)
    context[1, :4] = torch.randn(4, cfg.text_dim, generator=g)
    return {"x": x, "t": torch.tensor([937.5, 250.0]), "context": context}


def run(model: WanModel, inp: dict[str, Tensor]) -> Tensor:
    with torch.no_grad():
        return model(inp["x"], inp["t"], inp["context"])


def run_ref(ref: WanTransformer3DModel, inp: dict[str, Tensor]) -> Tensor:
    with torch.no_grad():
        return ref(inp["x"], inp["t"], inp["context"], return_dict=False)[0]


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_pristine(model: nn.Module, before: dict[str, Tensor]) -> None:
    after = model.state_dict()
    assert set(after) == set(before)
    bad = [k for k in before if not torch.equal(after[k], before[k]) or after[k].dtype != before[k].dtype]
    assert not bad, f"parameters changed: {bad[:5]}"
    hooked = [n for n, m in model.named_modules() if m._forward_hooks]
    assert not hooked, f"hooks left on {hooked[:5]}"


@pytest.fixture(scope="module")
def weights() -> dict[str, object]:
    return {task: tiny_weights(task, seed=5) for task in ("t2v-A14B", "ti2v-5B")}


# ---------------------------------------------------------------------------------------------------
# parity with diffusers' own LoRA loading

DIFFUSERS_READABLE = {
    "official-alpha": ("official", {}),
    "official-no-alpha": ("official", {"alpha": None}),
    "official-peft-names": ("official-peft", {}),
    "musubi": ("musubi", {}),
    "diffusers": ("diffusers", {}),
    "diffusers-lora-bias": ("diffusers", {"diff_b": True, "alpha": None}),
    # lightx2v-distill-like: diff_b on linears, head.head.diff (no up) + diff_b, text/time embedding and
    # time_projection LoRAs (diffusers reads no alpha on those; the block LoRAs keep theirs)
    "distill-extras": ("official", {"diff_b": True, "head_diff": True, "extra_modules": True, "extra_alpha": False}),
}


@pytest.mark.parametrize("task", ["t2v-A14B", "ti2v-5B"])
@pytest.mark.parametrize("case", list(DIFFUSERS_READABLE))
def test_matches_diffusers_load_lora_weights(case: str, task: str, weights: dict, tmp_path: Path) -> None:
    fmt, kwargs = DIFFUSERS_READABLE[case]
    w = weights[task]
    cfg = w.dit_config
    path = write_tiny_lora(tmp_path / f"{case}.safetensors", task, fmt, seed=11, **kwargs)
    spec = LoraSpec(path, strength={k: v for k, v in STRENGTHS.items() if k in w.spec.experts})
    lora = spec.load()
    experts = list(w.experts)
    refs = {name: theirs(cfg, w.experts[name]) for name in experts}
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=refs[experts[0]],
                       transformer_2=refs.get("low_noise"), boundary_ratio=w.spec.boundary)  # fmt: skip
    for i, name in enumerate(experts):
        pipe.load_lora_weights(str(path), adapter_name="lora", load_into_transformer_2=i == 1)
        refs[name].set_adapters(["lora"], [spec.strength_for(name)])
    inp = inputs(cfg)
    for name in experts:
        model = ours(cfg, w.experts[name])
        base = run(model, inp)
        assert apply_loras(model, [(lora, spec.strength_for(name))]) is True
        got = run(model, inp)
        want = run_ref(refs[name], inp)
        diff = (got - want).abs().max().item()
        effect = (got - base).abs().max().item()
        print(f"[lora parity] {task} {case} {name}: max|diff| {diff:.3g}, LoRA effect {effect:.3g}")
        assert effect > 100 * TOL  # the LoRA does something
        assert diff <= TOL


# ---------------------------------------------------------------------------------------------------
# a hand merge from the raw keys (formats/keys diffusers cannot read)


def hand_merge(base: dict[str, Tensor], raw: dict[str, Tensor], strength: float) -> dict[str, Tensor]:
    """``W + strength * alpha/rank * up @ down`` etc., from official ``diffusion_model.`` keys only."""
    out = {k: v.clone() for k, v in base.items()}
    raw = {k.removeprefix("diffusion_model."): v for k, v in raw.items()}
    for key, down in raw.items():
        if not key.endswith(".lora_down.weight"):
            continue
        mod = key.removesuffix(".lora_down.weight")
        up = raw[f"{mod}.lora_up.weight"]
        rank = down.shape[0]
        scale = raw[f"{mod}.alpha"].item() / rank if f"{mod}.alpha" in raw else 1.0
        delta = (up.reshape(up.shape[0], rank) @ down.reshape(rank, -1)).reshape(out[f"{mod}.weight"].shape)
        out[f"{mod}.weight"] += strength * scale * delta
    for key, value in raw.items():
        if key.endswith(".diff"):
            out[key.removesuffix(".diff") + ".weight"] += strength * value
        elif key.endswith(".diff_b"):
            out[key.removesuffix(".diff_b") + ".bias"] += strength * value
        elif key.endswith(".diff_m"):
            out[key.removesuffix(".diff_m") + ".modulation"] += strength * value.reshape(out[key.removesuffix(".diff_m") + ".modulation"].shape)
    return out


EVERYTHING = {"diff_b": True, "head_diff": True, "norm_diff": True, "extra_modules": True, "conv": True}


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("task", ["t2v-A14B", "ti2v-5B"])
def test_matches_hand_merge_with_norm_modulation_and_conv_deltas(task: str, merge: bool, weights: dict) -> None:
    w = weights[task]
    cfg = w.dit_config
    raw = tiny_lora_state_dict(task, "official", seed=12, **EVERYTHING)
    assert any(".norm3.diff" in k for k in raw) and any(k.endswith(".diff_m") for k in raw)
    assert raw["diffusion_model.patch_embedding.lora_down.weight"].ndim == 5
    lora = load_lora(raw, name="everything.safetensors")
    inp = inputs(cfg)
    for name, sd in w.experts.items():
        model = ours(cfg, sd)
        before = snapshot(model)
        apply_loras(model, [(lora, 0.6)], merge=merge)
        got = run(model, inp)
        want = run(ours(cfg, hand_merge(sd, raw, 0.6)), inp)
        diff = (got - want).abs().max().item()
        effect = (want - run(ours(cfg, sd), inp)).abs().max().item()
        print(f"[lora hand merge] {task} {name} merge={merge}: max|diff| {diff:.3g}, effect {effect:.3g}")
        assert effect > 100 * TOL
        assert diff <= TOL
        remove_loras(model)
        assert_pristine(model, before)


@pytest.mark.parametrize("fmt", [f for f in LORA_FORMATS if f != "official"])
def test_every_format_is_the_same_lora(fmt: str, weights: dict) -> None:
    """The same tensors under every key spelling normalise to the same LoRA and give the same output."""
    w = weights["t2v-A14B"]
    extras = {"diff_b": True, "head_diff": True, "norm_diff": True, "extra_modules": True, "conv": True}
    ref = load_lora(tiny_lora_state_dict("t2v-A14B", "official", seed=13, **extras), name="official")
    lora = load_lora(tiny_lora_state_dict("t2v-A14B", fmt, seed=13, **extras), name=fmt)
    assert set(lora.low_rank) == set(ref.low_rank) and set(lora.deltas) == set(ref.deltas)
    for mod, lr in ref.low_rank.items():
        torch.testing.assert_close(lora.low_rank[mod].delta(), lr.delta(), rtol=1e-6, atol=1e-7)
    for param, d in ref.deltas.items():
        assert torch.equal(lora.deltas[param], d), param
    model = ours(w.dit_config, w.experts["low_noise"])
    inp = inputs(w.dit_config)
    apply_loras(model, [(ref, 1.0)])
    want = run(model, inp)
    apply_loras(model, [(lora, 1.0)])
    torch.testing.assert_close(run(model, inp), want, rtol=0, atol=1e-6)


def test_two_loras_add_up(weights: dict) -> None:
    w = weights["ti2v-5B"]
    sd = w.experts["dense"]
    a = tiny_lora_state_dict("ti2v-5B", "official", seed=1, diff_b=True)
    b = tiny_lora_state_dict("ti2v-5B", "official", seed=2, norm_diff=True, head_diff=True)
    model = ours(w.dit_config, sd)
    apply_loras(model, [(load_lora(a), 0.5), (load_lora(b), -0.8)])
    want = ours(w.dit_config, hand_merge(hand_merge(sd, a, 0.5), b, -0.8))
    inp = inputs(w.dit_config)
    assert (run(model, inp) - run(want, inp)).abs().max().item() <= TOL


# ---------------------------------------------------------------------------------------------------
# apply / remove / switch


@pytest.mark.parametrize("merge", [False, True])
def test_apply_remove_is_bit_identical_and_switching_is_exact(merge: bool, weights: dict) -> None:
    w = weights["t2v-A14B"]
    cfg = w.dit_config
    model = ours(cfg, w.experts["high_noise"])
    inp = inputs(cfg)
    before = snapshot(model)
    y0 = run(model, inp)
    lora = load_lora(tiny_lora_state_dict("t2v-A14B", "official", seed=14, **EVERYTHING), name="a")
    other = load_lora(tiny_lora_state_dict("t2v-A14B", "musubi", seed=15), name="b")

    assert apply_loras(model, [(lora, 1.0)], merge=merge) is True
    y1 = run(model, inp)
    assert not torch.equal(y1, y0)
    assert apply_loras(model, [(lora, 1.0)], merge=merge) is False  # same set: no-op
    assert active_loras(model) == (("a", 1.0),)
    # Lightning-style strength changes at step boundaries, another set, back: no drift
    for loras in ([(lora, 0.25)], [(lora, 1.0), (other, 0.5)], [(other, 1.0)], [(lora, 0.0)], [(lora, 1.0)]):
        assert apply_loras(model, loras, merge=merge) is True
    assert torch.equal(run(model, inp), y1)
    assert apply_loras(model, [(lora, 0.0)], merge=merge) is True  # strength 0 = nothing applied
    assert torch.equal(run(model, inp), y0)
    assert_pristine(model, before)
    apply_loras(model, [(lora, 1.0), (other, -1.0)], merge=merge)
    assert remove_loras(model) is True
    assert remove_loras(model) is False
    assert torch.equal(run(model, inp), y0)
    assert_pristine(model, before)
    with loras_applied(model, [(lora, 1.0)], merge=merge):
        assert torch.equal(run(model, inp), y1)
    assert_pristine(model, before)


def test_unmerged_and_merged_agree_and_switch_modes(weights: dict) -> None:
    w = weights["ti2v-5B"]
    model = ours(w.dit_config, w.experts["dense"])
    before = snapshot(model)
    inp = inputs(w.dit_config)
    lora = load_lora(tiny_lora_state_dict("ti2v-5B", "diffusers", seed=16, diff_b=True, head_diff=True))
    apply_loras(model, [(lora, 0.9)])
    unmerged = run(model, inp)
    assert apply_loras(model, [(lora, 0.9)], merge=True) is True
    assert LoraPatcher.of(model).merged
    assert (run(model, inp) - unmerged).abs().max().item() <= TOL
    assert apply_loras(model, [(lora, 0.9)]) is True
    assert torch.equal(run(model, inp), unmerged)
    remove_loras(model)
    assert_pristine(model, before)


def test_weights_reloaded_underneath_are_repatched(weights: dict) -> None:
    """An offloader replaces every parameter's tensor with a pristine copy: the next apply re-patches."""
    w = weights["t2v-A14B"]
    sd = w.experts["low_noise"]
    model = ours(w.dit_config, sd)
    before = snapshot(model)
    inp = inputs(w.dit_config)
    lora = load_lora(tiny_lora_state_dict("t2v-A14B", "official", seed=17, **EVERYTHING))
    apply_loras(model, [(lora, 1.0)])
    want = run(model, inp)
    for name, p in model.named_parameters():  # what ExpertOffloader.activate does
        p.data = before[name].clone()
    assert apply_loras(model, [(lora, 1.0)]) is True
    assert torch.equal(run(model, inp), want)
    remove_loras(model)
    assert_pristine(model, before)


# ---------------------------------------------------------------------------------------------------
# Wan 2.1 I2V keys


def test_wan21_i2v_keys_are_dropped_with_one_warning(weights: dict, tmp_path: Path) -> None:
    path = write_tiny_lora(tmp_path / "wan21_i2v.safetensors", "t2v-A14B", "official", seed=18, wan21_i2v=True)
    raw = load_file(str(path))
    image_keys = [k for k in raw if re.search(r"k_img|v_img|img_emb", k)]
    assert len(image_keys) == 17
    clear_lora_cache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lora = load_lora(path)
    messages = [str(c.message) for c in caught if issubclass(c.category, UserWarning)]
    assert len(messages) == 1, messages
    assert "wan21_i2v.safetensors" in messages[0] and f"dropped {len(image_keys)} " in messages[0]
    assert len(lora.dropped) == len(image_keys)
    plain = load_lora({k: v for k, v in raw.items() if k not in image_keys})
    assert set(plain.low_rank) == set(lora.low_rank) and not any("img" in k for k in lora.low_rank)
    w = weights["t2v-A14B"]
    assert lora_fits(lora, w.dit_config) is True


# ---------------------------------------------------------------------------------------------------
# errors: specific messages, model untouched


def _bad_inputs(tmp_path: Path, w: object) -> dict[str, tuple[object, str]]:
    ok = tiny_lora_state_dict("t2v-A14B", "official", seed=19)
    not_lora = tmp_path / "dit_weights.safetensors"
    save_file(w.experts["high_noise"], str(not_lora))  # type: ignore[attr-defined]
    unknown = tmp_path / "unknown.safetensors"
    save_file({**ok, "diffusion_model.blocks.0.mystery.lora_down.weight": torch.zeros(4, 32),
               "diffusion_model.vace_blocks.0.q.lora_up.weight": torch.zeros(32, 4)}, str(unknown))  # fmt: skip
    truncated = write_tiny_lora(tmp_path / "truncated.safetensors", "t2v-A14B", "official", seed=19)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file")
    half = tmp_path / "half_pair.safetensors"
    save_file({k: v for k, v in ok.items() if "blocks.1.ffn.2.lora_up" not in k}, str(half))
    big_cfg = DiTConfig(model_type="t2v", dim=64, ffn_dim=128, num_heads=4, num_layers=2, in_dim=16, out_dim=16,
                        text_dim=32)  # fmt: skip
    wrong_dim = write_tiny_lora(tmp_path / "made_for_dim64.safetensors", big_cfg, "official", seed=19)
    deep_cfg = DiTConfig(model_type="t2v", dim=32, ffn_dim=64, num_heads=2, num_layers=4, in_dim=16, out_dim=16,
                         text_dim=32)  # fmt: skip
    too_deep = write_tiny_lora(tmp_path / "four_layers.safetensors", deep_cfg, "official", seed=19)
    dora = tmp_path / "dora.safetensors"
    save_file({**ok, "diffusion_model.blocks.0.self_attn.q.dora_scale": torch.ones(32, 1)}, str(dora))
    return {
        "not a LoRA": (not_lora, r"dit_weights\.safetensors: is not a LoRA.*full model checkpoint"),
        "unknown keys": (unknown, r"unknown\.safetensors: 2 keys are not Wan DiT LoRA keys: .*mystery.*vace_blocks"),
        "truncated": (truncated, r"truncated\.safetensors: cannot read .* \(truncated or corrupt\?\)"),
        "garbage": (garbage, r"garbage\.safetensors: cannot read"),
        "missing file": (tmp_path / "nope.safetensors", r"nope\.safetensors: file not found"),
        "half pair": (half, r"half_pair\.safetensors: blocks\.1\.ffn\.2 has a down matrix but no up matrix"),
        "wrong dim": (wrong_dim, r"made_for_dim64\.safetensors: does not fit the loaded t2v DiT \(dim 32.*"
                                 r"made for a DiT with dim 64"),
        "too many layers": (too_deep, r"four_layers\.safetensors: does not fit .*blocks\.2\..* not a linear"),
        "dora": (dora, r"dora\.safetensors: DoRA weights are not supported"),
    }


def test_bad_inputs_raise_specific_errors_and_leave_the_model_usable(weights: dict, tmp_path: Path) -> None:
    w = weights["t2v-A14B"]
    model = ours(w.dit_config, w.experts["high_noise"])
    inp = inputs(w.dit_config)
    good = load_lora(tiny_lora_state_dict("t2v-A14B", "official", seed=20, norm_diff=True))
    apply_loras(model, [(good, 1.0)])
    with_good = run(model, inp)
    params = snapshot(model)
    for what, (path, pattern) in _bad_inputs(tmp_path, w).items():
        with pytest.raises(LoraError, match=pattern) as info:
            apply_loras(model, [(good, 1.0), (load_lora(path), 1.0)])
        assert isinstance(info.value, CheckpointError), what
        assert Path(path).name in str(info.value), what
        fits = lora_fits(path, model)
        assert isinstance(fits, str) and Path(path).name in fits, what
        # the active set is unchanged and the model runs exactly as before
        assert active_loras(model) == ((good.name, 1.0),), what
        assert torch.equal(run(model, inp), with_good), what
        current = model.state_dict()
        assert all(torch.equal(current[k], v) for k, v in params.items()), what


def test_a14b_lora_on_5b_names_file_dims_and_model(tmp_path: Path) -> None:
    """Full-size configs (built on the meta device): an A14B-shaped LoRA does not fit TI2V-5B."""
    lora = load_lora({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(1, 5120),
                      "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(5120, 1)},
                     name="wan22_a14b_style.safetensors")  # fmt: skip
    assert lora.dim == 5120
    assert lora_fits(lora, get_spec("t2v-A14B").dit) is True
    assert lora_fits(lora, get_spec("i2v-A14B").dit) is True
    msg = lora_fits(lora, get_spec("ti2v-5B").dit)
    assert isinstance(msg, str)
    for part in ("wan22_a14b_style.safetensors", "dim 5120", "A14B", "ti2v DiT (dim 3072", "TI2V-5B"):
        assert part in msg, (part, msg)


def test_lora_fits_lists_only_compatible_files(tmp_path: Path, weights: dict) -> None:
    ok = write_tiny_lora(tmp_path / "ok.safetensors", "ti2v-5B", "musubi", seed=21)
    cfg64 = DiTConfig(model_type="ti2v", dim=64, ffn_dim=128, num_heads=4, num_layers=2, in_dim=48, out_dim=48,
                      text_dim=32)  # fmt: skip
    bad = write_tiny_lora(tmp_path / "bad.safetensors", cfg64, "musubi", seed=21)
    cfg = weights["ti2v-5B"].dit_config
    assert lora_fits(ok, cfg) is True
    assert "dim 64" in str(lora_fits(bad, cfg))
    # a t2v LoRA with a patch_embedding conv LoRA does not fit i2v (36 input channels)
    t2v_conv = load_lora(tiny_lora_state_dict("t2v-A14B", "official", conv=True), name="t2v_conv")
    i2v = tiny_weights("i2v-A14B").dit_config
    assert "patch_embedding" in str(lora_fits(t2v_conv, i2v))
    assert lora_fits(load_lora(tiny_lora_state_dict("t2v-A14B", "official")), i2v) is True


# ---------------------------------------------------------------------------------------------------
# LoraSpec and the cache


def test_lora_spec(tmp_path: Path) -> None:
    path = write_tiny_lora(tmp_path / "style_HIGH.safetensors", "t2v-A14B", "official", seed=22)
    spec = LoraSpec(path, strength={"high_noise": 1.0, "low_noise": 0.0})
    assert spec.name == "style_HIGH.safetensors"
    assert spec.sha256_short == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert (spec.strength_for("high_noise"), spec.strength_for("low_noise"), spec.strength_for("dense")) == (1.0, 0.0, 0.0)
    assert LoraSpec(str(path), 0.8).strength_for("dense") == 0.8
    assert LoraSpec(path) == LoraSpec(str(path))
    sd_spec = LoraSpec(tiny_lora_state_dict("t2v-A14B", "official"), {"dense": 0.5})
    assert sd_spec.name == "<state dict>" and sd_spec.sha256_short is None
    assert isinstance(sd_spec.load(), NormalizedLora)
    with pytest.raises(ValueError, match="unknown expert names"):
        LoraSpec(path, {"high": 1.0})
    with pytest.raises(ValueError, match="finite"):
        LoraSpec(path, math.nan)
    with pytest.raises(dataclasses_frozen_error()):
        spec.strength = 2.0  # type: ignore[misc]


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_load_lora_is_cached_by_path_mtime_and_size(tmp_path: Path) -> None:
    path = write_tiny_lora(tmp_path / "cached.safetensors", "t2v-A14B", "official", seed=23)
    clear_lora_cache()
    first = load_lora(path)
    assert load_lora(str(path)) is first
    write_tiny_lora(path, "t2v-A14B", "official", seed=24, rank=8)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second = load_lora(path)
    assert second is not first and next(iter(second.low_rank.values())).rank == 8


@pytest.mark.parametrize("merge", [False, True])
def test_bfloat16_model_with_float32_islands(merge: bool, weights: dict) -> None:
    """bf16 linears, float32 time/head/norm3/modulation (as loaded with keep_float32): the LoRA works in
    the layers' dtypes, the output is close to the float32 one, and removal is bit-identical."""
    from wan.modules.model import is_float32_parameter

    w = weights["t2v-A14B"]
    sd = w.experts["high_noise"]
    lora = load_lora(tiny_lora_state_dict("t2v-A14B", "official", seed=25, **EVERYTHING))
    ref = ours(w.dit_config, sd)
    apply_loras(ref, [(lora, 1.0)])
    inp = inputs(w.dit_config)
    want = run(ref, inp)
    model = WanModel(w.dit_config).eval()
    model.load_state_dict({k: v if is_float32_parameter(k) else v.bfloat16() for k, v in sd.items()}, assign=True)
    before = snapshot(model)
    y0 = run(model, inp)
    apply_loras(model, [(lora, 1.0)], merge=merge)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16, torch.float32}
    got = run(model, inp)
    assert (got - want).abs().max().item() <= 0.05 * want.abs().max().item()
    remove_loras(model)
    assert_pristine(model, before)
    assert torch.equal(run(model, inp), y0)
