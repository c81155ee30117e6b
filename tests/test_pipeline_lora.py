"""LoRAs, phases and the Lightning schedule through the request and the pipeline (CPU, tiny weights, fp32).

What is checked here is the routing (which LoRA at which strength on which expert at which step,
which guidance, how many forwards) and exactness (a LoRA run leaves no trace). The LoRA math itself
is checked against diffusers/peft in tests/test_lora.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from playground.speed import PresetError, preset_values, speed_presets
from wan.errors import InputError
from wan.pipeline import WanVideoPipeline, load_pipeline
from wan.request import LoraSpec, Phase, RequestPolicy, make_request, request_from_values
from wan.testing.lora import write_tiny_lora

SIZE, FRAMES = (64, 48), 5


@pytest.fixture(scope="module")
def t2v(tiny_ckpt: Callable[..., Path]) -> WanVideoPipeline:
    return load_pipeline("t2v-A14B", tiny_ckpt("t2v-A14B"), device="cpu", dtype=torch.float32, any_size=True)


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA folder with the preset's HIGH/LOW pair (tiny, random) at the paths the presets name,
    plus a plain file and a LoRA made for the 5B model."""
    root = tmp_path_factory.mktemp("loras")
    import json

    from playground.speed import PRESETS_FILE

    files = json.loads(PRESETS_FILE.read_text())["loras"]["t2v-A14B"]
    for seed, f in enumerate(files):
        write_tiny_lora(root / f["file"], "t2v-A14B", "official", seed=10 + seed)
    write_tiny_lora(root / "style.safetensors", "t2v-A14B", "musubi", seed=3)
    from dataclasses import replace

    from wan.testing.synthetic import tiny_dit_config

    wider = tiny_dit_config("ti2v-5B")  # a LoRA made for another model: twice the width
    wider = replace(wider, dim=2 * wider.dim, ffn_dim=2 * wider.ffn_dim, num_heads=2 * wider.num_heads)
    write_tiny_lora(root / "for-5b.safetensors", wider, "official", seed=4)
    return root


def _count_forwards(pipe: WanVideoPipeline) -> list[str]:
    calls: list[str] = []
    for name, model in pipe.experts.experts.items():
        model.register_forward_hook(lambda m, a, o, name=name: calls.append(name))
    return calls


def test_lora_run_leaves_no_trace(t2v: WanVideoPipeline, lora_dir: Path) -> None:
    """generate -> generate with a HIGH/LOW pair -> generate again: the last run equals the first bit for bit."""
    kw = dict(size=SIZE, frame_num=FRAMES, sampling_steps=3, seed=5)
    before = t2v.generate("a fox", **kw)
    params = {k: v.clone() for k, v in t2v.experts.experts["high_noise"].state_dict().items()}
    style = LoraSpec(lora_dir / "style.safetensors", {"high_noise": 0.8, "low_noise": 1.3})
    with_lora = t2v.generate("a fox", loras=[style], **kw)
    assert t2v.last_run is not None and t2v.last_run.lora_strengths == ((0.8,), (0.8,), (1.3,))
    assert (with_lora - before).abs().max() > 1e-4  # the LoRA does something
    after = t2v.generate("a fox", **kw)
    assert torch.equal(after, before)
    assert all(torch.equal(v, params[k]) for k, v in t2v.experts.experts["high_noise"].state_dict().items())


def test_lightning_preset_schedule_experts_and_one_forward_per_step(t2v: WanVideoPipeline, lora_dir: Path) -> None:
    values = preset_values("lightning-4step", "t2v-A14B", lora_dir=lora_dir)
    req = request_from_values("t2v-A14B", {"prompt": "a fox", "size": "64*48", "frame_num": FRAMES, **values},
                              policy=RequestPolicy(any_size=True, lora_dir=lora_dir))  # fmt: skip
    assert (req.sampling_steps, req.sample_solver, req.shift, req.schedule) == (4, "euler", 5.0, "lightning")
    calls = _count_forwards(t2v)
    t2v.generate(req)
    run = t2v.last_run
    assert run is not None
    assert run.timesteps == pytest.approx((1000.0, 937.5, 833.3333333, 625.0))  # sigma starts at 1.0
    assert run.experts == ("high_noise", "high_noise", "low_noise", "low_noise")
    assert run.guidance == (1.0, 1.0, 1.0, 1.0)
    assert calls == ["high_noise", "high_noise", "low_noise", "low_noise"]  # CFG off: one forward per step
    # the HIGH file only on the high-noise expert, the LOW file only on the low-noise one
    assert run.lora_strengths == ((1.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.0, 1.0))


def test_three_phase_motion_fix_runs_the_phases_asked_for(t2v: WanVideoPipeline, lora_dir: Path) -> None:
    values = preset_values("lightning-3phase", "t2v-A14B", lora_dir=lora_dir)
    req = request_from_values("t2v-A14B", {"prompt": "a fox", "size": "64*48", "frame_num": FRAMES, **values},
                              policy=RequestPolicy(any_size=True, lora_dir=lora_dir))  # fmt: skip
    calls = _count_forwards(t2v)
    t2v.generate(req)
    run = t2v.last_run
    assert run is not None
    assert run.experts == ("high_noise",) * 4 + ("low_noise",) * 4
    assert run.guidance == (3.5,) + (1.0,) * 7
    assert run.lora_strengths == ((0.0, 0.0),) + ((1.0, 0.0),) * 3 + ((0.0, 1.0),) * 4  # no LoRA in phase 1
    assert calls == ["high_noise"] * 2 + ["high_noise"] * 3 + ["low_noise"] * 4  # CFG 3.5: two forwards


def test_phases_and_loras_round_trip_through_settings(lora_dir: Path) -> None:
    policy = RequestPolicy(any_size=True, lora_dir=lora_dir)
    req = make_request(
        "t2v-A14B", "a fox", size=SIZE, frame_num=FRAMES, policy=policy, schedule="lightning",
        loras=[("style.safetensors", {"high_noise": 0.5, "low_noise": 1.0})],
        phases=[Phase(1, "high_noise", 3.5, 0.0), {"steps": 2, "expert": "low_noise", "guide_scale": 1.0}],
    )  # fmt: skip
    assert req.sampling_steps == 3  # phases alone set the step count
    settings = req.to_settings()
    assert settings["loras"][0]["name"] == "style.safetensors" and len(settings["loras"][0]["sha256"]) == 12
    assert request_from_values("t2v-A14B", settings, policy=policy) == req
    with pytest.raises(InputError, match="cover 3 steps but sampling_steps is 4"):
        make_request("t2v-A14B", "x", size=SIZE, sampling_steps=4, phases=settings["phases"], any_size=True)
    changed = dict(settings, loras=[{**settings["loras"][0], "sha256": "000000000000"}])
    with pytest.raises(InputError, match="not the one recorded"):
        request_from_values("t2v-A14B", changed, policy=policy)


@pytest.mark.parametrize(
    ("loras", "pattern"),
    [
        (["../../etc/passwd"], "not a LoRA file in this server's LoRA folder"),
        (["/etc/hostname"], "not a LoRA file in this server's LoRA folder"),
        (["missing.safetensors"], "not a LoRA file"),
        ([("style.safetensors", {"dense": 1.0})], "t2v-A14B has high_noise, low_noise"),
        ([("style.safetensors", 9.0)], "strength must be a number from -5 to 5"),
        (["style.safetensors"] * 9, "at most 8 LoRAs"),
    ],
)
def test_lora_entries_are_checked_against_the_server_folder(lora_dir: Path, loras: list, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern) as info:
        make_request("t2v-A14B", "x", size=SIZE, loras=loras, policy=RequestPolicy(any_size=True, lora_dir=lora_dir))
    assert info.value.field == "loras"


def test_a_lora_that_does_not_fit_fails_before_any_model_work(t2v: WanVideoPipeline, lora_dir: Path) -> None:
    req = t2v.plan("a fox", size=SIZE, frame_num=FRAMES, sampling_steps=2, seed=1,
                   loras=[lora_dir / "for-5b.safetensors"])  # fmt: skip
    with pytest.raises(InputError, match="for-5b.safetensors.*does not fit") as info:
        t2v.generate(req)
    assert info.value.field == "loras"
    assert t2v.generate("a fox", size=SIZE, frame_num=FRAMES, sampling_steps=2, seed=1).shape == (3, FRAMES, 48, 64)


def test_presets_are_data_and_name_missing_files(tmp_path: Path) -> None:
    assert set(speed_presets("t2v-A14B")) == {"lightning-4step", "lightning-3phase"}
    assert speed_presets("ti2v-5B") == {}
    with pytest.raises(PresetError, match="high_noise_model.safetensors.*low_noise_model.safetensors.*hf download"):
        preset_values("lightning-4step", "i2v-A14B", lora_dir=tmp_path)
    with pytest.raises(PresetError, match="not ti2v-5B"):
        preset_values("lightning-4step", "ti2v-5B", lora_dir=tmp_path)
