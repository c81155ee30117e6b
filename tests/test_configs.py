"""wan.configs: the per-task ModelSpec values against the official Wan 2.2 configs, and the
checkpoint config.json checks."""

from __future__ import annotations

import dataclasses

import pytest

from wan.configs import TASKS, ModelSpec, check_dit_config, dit_config_from_json, get_spec, normalize_task
from wan.errors import CheckpointError

NEG_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

# Official values (research/official-wan22-spec.md sections 2 and 4), written out independently.
OFFICIAL = {
    "t2v-A14B": dict(
        model_type="t2v", dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=16, out_dim=16,
        moe=True, boundary=0.875, vae="wan2.1", vae_stride=(4, 8, 8), sample_steps=40, sample_shift=12.0,
        guide_scale={"high_noise": 4.0, "low_noise": 3.0}, frame_num=81, sample_fps=16, size_multiple=16,
        sizes={(1280, 720), (720, 1280), (832, 480), (480, 832)}, vae_file="Wan2.1_VAE.pth",
        hf_repo="Wan-AI/Wan2.2-T2V-A14B", params=14.2885e9, tensors=1095,
    ),
    "i2v-A14B": dict(
        model_type="i2v", dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=36, out_dim=16,
        moe=True, boundary=0.900, vae="wan2.1", vae_stride=(4, 8, 8), sample_steps=40, sample_shift=5.0,
        guide_scale={"high_noise": 3.5, "low_noise": 3.5}, frame_num=81, sample_fps=16, size_multiple=16,
        sizes={(1280, 720), (720, 1280), (832, 480), (480, 832)}, vae_file="Wan2.1_VAE.pth",
        hf_repo="Wan-AI/Wan2.2-I2V-A14B", params=14.2889e9, tensors=1095,
    ),
    "ti2v-5B": dict(
        model_type="ti2v", dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48,
        moe=False, boundary=None, vae="wan2.2", vae_stride=(4, 16, 16), sample_steps=50, sample_shift=5.0,
        guide_scale={"dense": 5.0}, frame_num=121, sample_fps=24, size_multiple=32,
        sizes={(1280, 704), (704, 1280)}, vae_file="Wan2.2_VAE.pth",
        hf_repo="Wan-AI/Wan2.2-TI2V-5B", params=4.9998e9, tensors=825,
    ),
}


def test_tasks() -> None:
    assert TASKS == ("t2v-A14B", "i2v-A14B", "ti2v-5B")


@pytest.mark.parametrize("task", TASKS)
def test_spec_matches_official_values(task: str) -> None:
    spec = get_spec(task)
    want = OFFICIAL[task]
    assert isinstance(spec, ModelSpec) and spec.task == task
    for name in ("model_type", "dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim"):
        assert getattr(spec.dit, name) == want[name], name
    assert spec.dit.head_dim == 128
    assert (spec.dit.freq_dim, spec.dit.text_dim, spec.dit.text_len, spec.dit.eps) == (256, 4096, 512, 1e-6)
    assert tuple(spec.dit.patch_size) == spec.patch_size == (1, 2, 2)
    for name in ("moe", "boundary", "vae", "vae_stride", "sample_steps", "sample_shift", "guide_scale",
                 "frame_num", "sample_fps", "size_multiple", "vae_file", "hf_repo"):  # fmt: skip
        assert getattr(spec, name) == want[name], name
    assert set(spec.sizes) == want["sizes"] and len(spec.sizes) == len(want["sizes"])
    assert spec.default_size == (1280, 720 if spec.moe else 704)
    assert spec.hf_diffusers_repo == want["hf_repo"] + "-Diffusers"
    assert spec.t5_file == "models_t5_umt5-xxl-enc-bf16.pth"
    assert spec.tokenizer_dir == "google/umt5-xxl"
    assert (spec.num_train_timesteps, spec.text_len) == (1000, 512)
    assert spec.negative_prompt == NEG_PROMPT


@pytest.mark.parametrize("task", TASKS)
def test_spec_internal_consistency(task: str) -> None:
    spec = get_spec(task)
    assert spec.size_multiple == spec.vae_stride[1] * spec.patch_size[1]
    assert all(w % spec.size_multiple == 0 and h % spec.size_multiple == 0 for w, h in spec.sizes)
    assert (spec.frame_num - 1) % spec.vae_stride[0] == 0
    assert spec.dit.out_dim == spec.z_dim
    assert spec.experts == (("high_noise", "low_noise") if spec.moe else ("dense",))
    assert tuple(spec.guide_scale) == spec.experts  # one guidance per expert, high-noise first
    assert (spec.boundary is None) == (not spec.moe)
    if spec.moe:
        assert spec.boundary_timestep == pytest.approx(1000 * spec.boundary)
        assert spec.official_subfolder("high_noise") == "high_noise_model"
        assert spec.diffusers_subfolder("high_noise") == "transformer"  # diffusers: transformer runs t >= boundary
        assert spec.diffusers_subfolder("low_noise") == "transformer_2"
    else:
        assert spec.official_subfolder("dense") == "" and spec.diffusers_subfolder("dense") == "transformer"
    with pytest.raises(ValueError, match="experts"):
        spec.official_subfolder("nope")
    assert spec.image_input == {"t2v-A14B": "none", "i2v-A14B": "required", "ti2v-5B": "optional"}[task]


def test_t2v_guidance_is_per_expert() -> None:
    guide = get_spec("t2v-A14B").guide_scale
    assert guide["high_noise"] == 4.0 and guide["low_noise"] == 3.0  # official (low, high) = (3.0, 4.0)


def test_specs_are_built_once() -> None:
    assert get_spec("t2v") is get_spec("t2v-A14B")  # one registry, not a new spec per call


@pytest.mark.parametrize("task", TASKS)
def test_full_size_architecture_param_count(task: str) -> None:
    import torch

    from wan.modules.model import WanModel

    with torch.device("meta"):
        model = WanModel(get_spec(task).dit)
    sd = model.state_dict()
    assert len(sd) == OFFICIAL[task]["tensors"]
    params = sum(t.numel() for t in sd.values())
    assert params == pytest.approx(OFFICIAL[task]["params"], rel=1e-4)


def test_spec_is_frozen() -> None:
    spec = get_spec("ti2v-5B")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.sample_steps = 1  # type: ignore[misc]
    assert get_spec("ti2v-5B") == spec


@pytest.mark.parametrize(
    ("alias", "task"),
    [("t2v-a14b", "t2v-A14B"), ("T2V_A14B", "t2v-A14B"), ("t2v", "t2v-A14B"), ("I2V-A14B", "i2v-A14B"),
     ("i2v", "i2v-A14B"), ("TI2V-5B", "ti2v-5B"), (" ti2v_5b ", "ti2v-5B"), ("5B", "ti2v-5B")],
)  # fmt: skip
def test_aliases(alias: str, task: str) -> None:
    assert normalize_task(alias) == task
    assert get_spec(alias).task == task


@pytest.mark.parametrize("bad", ["t2v-1.3B", "", "s2v-14B", "animate-14B"])
def test_unknown_task_names_allowed_tasks(bad: str) -> None:
    with pytest.raises(ValueError, match=r"t2v-A14B, i2v-A14B, ti2v-5B"):
        get_spec(bad)


def test_non_string_task() -> None:
    with pytest.raises(ValueError, match="t2v-A14B"):
        get_spec(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- config.json checks


def _official_json(task: str, **changes: object) -> dict:
    d = get_spec(task).dit.to_config_json()
    d.update(changes)
    return d


@pytest.mark.parametrize("task", TASKS)
def test_official_config_json_round_trip(task: str) -> None:
    spec = get_spec(task)
    d = _official_json(task)
    assert d["_class_name"] == "WanModel" and "text_dim" not in d
    assert set(d) == {"_class_name", "_diffusers_version", "dim", "eps", "ffn_dim", "freq_dim", "in_dim",
                      "model_type", "num_heads", "num_layers", "out_dim", "text_len"}  # fmt: skip
    cfg = dit_config_from_json(d, source="x/config.json")
    assert cfg == spec.dit
    check_dit_config(spec, cfg, source="x/config.json")


@pytest.mark.parametrize("task", TASKS)
def test_diffusers_config_json(task: str) -> None:
    spec = get_spec(task)
    d = {"_class_name": "WanTransformer3DModel", **spec.dit.to_diffusers_config()}
    d["patch_size"] = list(d["patch_size"])
    cfg = dit_config_from_json(d, source="transformer/config.json")
    assert cfg == spec.dit
    check_dit_config(spec, cfg, source="transformer/config.json")


def test_tiny_dims_pass_the_spec_check() -> None:
    spec = get_spec("i2v-A14B")
    cfg = dit_config_from_json(_official_json("i2v-A14B", dim=32, num_heads=2, ffn_dim=64, num_layers=2), source="c")
    check_dit_config(spec, cfg, source="c")
    assert dit_config_from_json(_official_json("i2v-A14B"), source="c", text_dim=32).text_dim == 32


@pytest.mark.parametrize(
    ("task", "change", "message"),
    [
        ("i2v-A14B", {"model_type": "t2v", "in_dim": 16}, r"model_type='t2v' \(expected 'i2v'\).*in_dim=16"),
        ("t2v-A14B", {"in_dim": 36, "model_type": "i2v"}, r"does not belong to task t2v-A14B"),
        ("ti2v-5B", {"out_dim": 16, "in_dim": 16, "model_type": "t2v"}, r"out_dim=16 \(expected 48\)"),
    ],
)
def test_check_dit_config_rejects_other_tasks(task: str, change: dict, message: str) -> None:
    cfg = dit_config_from_json(_official_json(task, **change), source="ckpt/config.json")
    with pytest.raises(CheckpointError, match=r"ckpt/config\.json: " + ".*" + message):
        check_dit_config(get_spec(task), cfg, source="ckpt/config.json")


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"_class_name": "WanModel", "dim": 8}, "no 'model_type'"),
        ({"_class_name": "UNet3DConditionModel", "model_type": "t2v"}, "not a Wan DiT"),
        ({**_official_json("t2v-A14B"), "dim": "big"}, "'dim' must be a positive integer"),
        ({**_official_json("t2v-A14B"), "num_heads": 7}, "invalid WanModel config"),
        ({**_official_json("t2v-A14B"), "model_type": "s2v"}, "invalid WanModel config"),
        ({"_class_name": "WanTransformer3DModel", **get_spec("t2v-A14B").dit.to_diffusers_config(), "image_dim": 1280},
         "Wan 2.1 image-embedding"),
        ({"_class_name": "WanTransformer3DModel", **get_spec("t2v-A14B").dit.to_diffusers_config(), "qk_norm": None},
         "qk_norm"),
        ({"_class_name": "WanTransformer3DModel", **get_spec("t2v-A14B").dit.to_diffusers_config(), "in_channels": 20},
         "invalid WanTransformer3DModel config"),
    ],
)  # fmt: skip
def test_bad_config_json(d: dict, message: str) -> None:
    with pytest.raises(CheckpointError, match=r"^some/config\.json: .*" + message):
        dit_config_from_json(d, source="some/config.json")
