"""End-to-end LoRA oracle on T2V-A14B: our pipeline with a HIGH/LOW LoRA pair at different strengths
agrees with diffusers' ``WanPipeline`` + ``load_lora_weights`` on the decoded video (CPU, float32).

The harness is the one of tests/test_pipeline.py (``test_matches_diffusers``): the same tiny random
weights in the official layout (ours) and the Diffusers layout (diffusers' ``from_pretrained``), the same
initial noise (``official_noise``), our zero-padded text embeddings, the official sigma grid in
diffusers' UniPC. On top of it:

* ours: ``loras=[LoraSpec(high, {"high_noise": 0.7, "low_noise": 0}), LoraSpec(low, {"high_noise": 0,
  "low_noise": 1.3})]``;
* diffusers: ``load_lora_weights(high, adapter_name="high")`` into ``transformer`` (the high-noise
  expert), ``load_lora_weights(low, adapter_name="low", load_into_transformer_2=True)`` into
  ``transformer_2``, then the pipeline-level ``set_adapters(["high", "low"], adapter_weights=[{"transformer":
  0.7}, {"transformer_2": 1.3}])`` (per-component weights; the denoisers' active adapters and LoRA
  scalings are checked afterwards).

The HIGH file is in the official key format (``lora_down``/``lora_up`` + ``alpha``), the LOW file in the
diffusers format (alpha folded into ``lora_B``), so both of diffusers' readers are exercised. Each LoRA
alone must move the decoded video well beyond the tolerance, so ignoring either (or putting it on the
wrong expert) would break the agreement. peft is imported plainly: a missing oracle fails, never skips.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import peft  # noqa: F401  (diffusers' LoRA loading needs it; fail, never skip)
import pytest
import torch

# the end-to-end harness of tests/test_pipeline.py (pytest's default "prepend" import mode puts tests/ on sys.path)
from test_pipeline import FRAMES, NEGATIVE, ORACLE_TOL, PROMPT, RUNS, STEPS, diffusers_pipeline, official_noise

from wan.configs import get_spec
from wan.pipeline import WanVideoPipeline, load_pipeline
from wan.request import LoraSpec
from wan.testing.lora import write_tiny_lora

TASK = "t2v-A14B"
CFG = RUNS[TASK]  # size (80, 48), shift 12, guidance (low 3.0, high 4.0): 999 972 922 | 799
SEED = 11
HIGH_STRENGTH, LOW_STRENGTH = 0.7, 1.3
EFFECT_MIN = 100 * ORACLE_TOL  # each LoRA must move the decoded video by far more than the tolerance


@pytest.fixture(scope="module")
def pipe(tiny_ckpt: Callable[..., Path]) -> WanVideoPipeline:
    return load_pipeline(TASK, tiny_ckpt(TASK, "official"), device="cpu", dtype=torch.float32, offload=False, any_size=True)


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("oracle-loras")
    return {
        "high": write_tiny_lora(root / "high.safetensors", TASK, "official", seed=31),
        "low": write_tiny_lora(root / "low.safetensors", TASK, "diffusers", seed=32),
    }


def _ours(pipe: WanVideoPipeline, loras: list[LoraSpec], experts: list[str] | None = None) -> torch.Tensor:
    cb = None if experts is None else (lambda s, n, e, lat: experts.append(e))
    return pipe.generate(
        PROMPT, negative_prompt=NEGATIVE, size=CFG["size"], frame_num=FRAMES, sampling_steps=STEPS,
        shift=CFG["shift"], guide_scale=CFG["guide"], seed=SEED, loras=loras, callback=cb,
    )  # fmt: skip


def _diffusers_with_loras(pipe: WanVideoPipeline, ckpt: Path, files: dict[str, Path]) -> tuple[torch.Tensor, Any]:
    width, height = CFG["size"]
    low_guide, high_guide = CFG["guide"]
    assert pipe.last_run is not None
    context, context_null = pipe.encode_text(PROMPT, NEGATIVE)
    noise = official_noise(pipe.last_run.request.latent_shape, SEED)
    ref = diffusers_pipeline(TASK, ckpt, False, CFG["shift"])
    ref.load_lora_weights(str(files["high"]), adapter_name="high")  # -> transformer (high noise)
    ref.load_lora_weights(str(files["low"]), adapter_name="low", load_into_transformer_2=True)  # -> transformer_2
    ref.set_adapters(["high", "low"], adapter_weights=[{"transformer": HIGH_STRENGTH}, {"transformer_2": LOW_STRENGTH}])
    # the adapters really sit where intended (and only there), active, at the intended strength
    assert ref.get_list_adapters() == {"transformer": ["high"], "transformer_2": ["low"]}, ref.get_list_adapters()
    # (the pipeline-level call marks both names active on both denoisers; peft skips, in the forward, an
    # active name a layer does not hold, so what counts is which LoRA each layer holds, and its scale)
    for model, name, strength in ((ref.transformer, "high", HIGH_STRENGTH), (ref.transformer_2, "low", LOW_STRENGTH)):
        q = model.blocks[0].attn1.to_q  # a peft LoRA layer
        assert set(q.lora_A) == {name} and name in q.active_adapters, (name, list(q.lora_A), q.active_adapters)
        assert q.scaling == {name: pytest.approx(strength)}, (name, q.scaling)  # diffusers folds alpha into the factors
    with torch.no_grad():
        video = ref(
            prompt_embeds=context, negative_prompt_embeds=context_null, latents=noise[None], height=height,
            width=width, num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=high_guide,
            guidance_scale_2=low_guide, output_type="pt",
        ).frames[0]  # fmt: skip  # (F, C, H, W) in [0, 1]
    return video.permute(1, 0, 2, 3) * 2.0 - 1.0, ref


def test_lora_pair_matches_diffusers(pipe: WanVideoPipeline, tiny_ckpt: Callable[..., Path], lora_files: dict[str, Path],
                                     record_property: Any) -> None:  # fmt: skip
    high = LoraSpec(lora_files["high"], {"high_noise": HIGH_STRENGTH, "low_noise": 0.0})
    low = LoraSpec(lora_files["low"], {"high_noise": 0.0, "low_noise": LOW_STRENGTH})

    plain = _ours(pipe, [])
    only_high = _ours(pipe, [high])
    only_low = _ours(pipe, [low])
    experts: list[str] = []
    ours = _ours(pipe, [high, low], experts)
    run = pipe.last_run
    assert run is not None

    ref, ref_pipe = _diffusers_with_loras(pipe, tiny_ckpt(TASK, "diffusers"), lora_files)
    ref_timesteps = [int(t) for t in ref_pipe.scheduler.timesteps]

    # the same grid on both sides, and our expert of every step follows the boundary (high noise while
    # t >= boundary * 1000): 999 972 922 | 799
    assert list(run.timesteps) == ref_timesteps
    boundary = get_spec(TASK).boundary * 1000
    want = tuple("high_noise" if t >= boundary else "low_noise" for t in ref_timesteps)
    assert want == ("high_noise",) * 3 + ("low_noise",) * (STEPS - 3), (ref_timesteps, boundary)
    assert run.experts == want and tuple(experts) == want, (run, experts)
    # per step: (HIGH, LOW) strengths as the expert of that step gets them
    assert run.lora_strengths == tuple((HIGH_STRENGTH, 0.0) if e == "high_noise" else (0.0, LOW_STRENGTH) for e in want)

    assert ours.shape == ref.shape == (3, FRAMES, CFG["size"][1], CFG["size"][0])
    diff = (ours - ref).abs().max().item()
    effects = {
        "pair": (ours - plain).abs().max().item(),
        "high only": (only_high - plain).abs().max().item(),
        "low only": (only_low - plain).abs().max().item(),
        "pair vs high only": (ours - only_high).abs().max().item(),  # the LOW LoRA's share of the pair
        "pair vs low only": (ours - only_low).abs().max().item(),  # the HIGH LoRA's share of the pair
    }
    record_property("max_abs_diff", diff)
    print(f"\n{TASK} HIGH x{HIGH_STRENGTH} / LOW x{LOW_STRENGTH}: max |ours - diffusers| on the decoded video = {diff:.3e}"
          f" (timesteps {list(run.timesteps)}, {list(run.experts)}); LoRA effects (max abs): "
          + ", ".join(f"{k} {v:.3e}" for k, v in effects.items()))  # fmt: skip
    assert ours.abs().max() <= 1.0 and ours.std() > 0.05  # a real, non-constant video
    for name, effect in effects.items():
        assert effect > EFFECT_MIN, (name, effects)  # ignoring either LoRA would show far beyond the tolerance
    assert diff <= ORACLE_TOL
