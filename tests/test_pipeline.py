"""End-to-end pipeline: agreement with diffusers, expert offload, seeds, callback and cancel.

Oracle. ``wan.testing.synthetic.write_tiny_checkpoint`` writes the same random weights in the official layout
(loaded by our pipeline) and the Diffusers layout (loaded by diffusers' own ``from_pretrained``).
Diffusers' ``WanPipeline`` / ``WanImageToVideoPipeline`` (``transformer_2`` + ``boundary_ratio`` for
A14B, ``expand_timesteps`` for TI2V-5B) then runs with:

* the official sigma grid (``linspace(float32(0.999), 0, N+1)[:-1]`` then shift), by overriding
  ``set_timesteps`` of diffusers' UniPC so its default grid (``linspace(1, 0.001)``) is not used;
* our zero-padded text embeddings (``prompt_embeds`` / ``negative_prompt_embeds``, 512 tokens);
* the same initial noise (``latents=``), drawn here with the official recipe;
* the input image already at the output size, so neither side resizes it.

Known, measured difference: diffusers evaluates the timestep sinusoid in float32, the official code
(and ours) in float64; it moves the decoded video by about 1e-5 at these sizes, inside the 1e-4 bound.
Diffusers' TI2V image path keeps noise in latent frame 0 and only swaps in the image latent for the
model input and after the loop, where the official code re-imposes it after every step; with an
elementwise solver the results are the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from wan.configs import get_spec
from wan.pipeline import GenerationCancelled, WanVideoPipeline, load_pipeline

ORACLE_TOL = 1e-4
STEPS = 4
FRAMES = 5
PROMPT = "a red fox runs through fresh snow, morning light"
NEGATIVE = "blurry, static"

# task, image?, size (W, H), shift, guide_scale as (low, high) or float
RUNS: dict[str, dict[str, Any]] = {
    "t2v-A14B": {"task": "t2v-A14B", "image": False, "size": (80, 48), "shift": 12.0, "guide": (3.0, 4.0)},
    "i2v-A14B": {"task": "i2v-A14B", "image": True, "size": (80, 48), "shift": 5.0, "guide": (2.0, 4.5)},
    "ti2v-5B-t2v": {"task": "ti2v-5B", "image": False, "size": (96, 64), "shift": 5.0, "guide": 5.0},
    "ti2v-5B-i2v": {"task": "ti2v-5B", "image": True, "size": (96, 64), "shift": 5.0, "guide": 3.5},
}


def test_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth RGB picture with some structure (not noise, so the VAE sees an image-like input)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 5.0) * np.cos(y / 7.0)], axis=-1)
    base += 0.05 * rng.standard_normal(base.shape).astype(np.float32)
    return Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8))


test_image.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="module")
def checkpoints(tiny_ckpt: Callable[..., Path]) -> dict[tuple[str, str], Path]:
    """(task, layout) -> the session's tiny checkpoint (conftest); both layouts hold the same weights."""
    return {
        (task, layout): tiny_ckpt(task, layout)
        for task in ("t2v-A14B", "i2v-A14B", "ti2v-5B")
        for layout in ("official", "diffusers")
    }


@pytest.fixture(scope="module")
def pipes(checkpoints: dict[tuple[str, str], Path]) -> dict[str, WanVideoPipeline]:
    return {
        task: load_pipeline(task, checkpoints[(task, "official")], device="cpu", dtype=torch.float32, offload=False, any_size=True)
        for task in ("t2v-A14B", "i2v-A14B", "ti2v-5B")
    }


# --------------------------------------------------------------------------------- the oracle


def official_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The official draw: float32 randn of the latent shape from a generator seeded with ``seed``."""
    return torch.randn(shape, dtype=torch.float32, generator=torch.Generator().manual_seed(seed))


def official_grid_unipc(shift: float) -> Any:
    """diffusers' flow UniPC, but on the official sigma grid."""
    from diffusers import UniPCMultistepScheduler

    class OfficialGridUniPC(UniPCMultistepScheduler):
        def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, sigmas: Any = None, mu: Any = None) -> None:  # type: ignore[override]
            if sigmas is None:
                sigma_max = float(np.float32(1.0 - 1.0 / self.config.num_train_timesteps))
                sigmas = np.linspace(sigma_max, 0.0, int(num_inference_steps) + 1)[:-1]
            super().set_timesteps(device=device, sigmas=sigmas, mu=mu)

    return OfficialGridUniPC(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=shift)


def diffusers_pipeline(task: str, ckpt: Path, image: bool, shift: float) -> Any:
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanPipeline, WanTransformer3DModel

    transformer = WanTransformer3DModel.from_pretrained(ckpt / "transformer", torch_dtype=torch.float32)
    vae = AutoencoderKLWan.from_pretrained(ckpt / "vae", torch_dtype=torch.float32)
    moe = task != "ti2v-5B"
    kwargs: dict[str, Any] = {
        "tokenizer": None,
        "text_encoder": None,
        "vae": vae,
        "scheduler": official_grid_unipc(shift),
        "transformer": transformer,
        "transformer_2": WanTransformer3DModel.from_pretrained(ckpt / "transformer_2", torch_dtype=torch.float32) if moe else None,
        "boundary_ratio": {"t2v-A14B": 0.875, "i2v-A14B": 0.9}.get(task),
        "expand_timesteps": not moe,
    }
    if image:
        return WanImageToVideoPipeline(image_processor=None, image_encoder=None, **kwargs)
    return WanPipeline(**kwargs)


def run_both(pipe: WanVideoPipeline, ckpt_diffusers: Path, cfg: dict[str, Any], seed: int = 11) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    width, height = cfg["size"]
    image = test_image(width, height) if cfg["image"] else None
    experts: list[str] = []
    ours = pipe.generate(
        PROMPT, image=image, negative_prompt=NEGATIVE, size=cfg["size"], frame_num=FRAMES, sampling_steps=STEPS,
        shift=cfg["shift"], guide_scale=cfg["guide"], seed=seed, callback=lambda s, n, e, lat: experts.append(e),
    )  # fmt: skip
    run = pipe.last_run
    assert run is not None and run.request.output_size == (width, height)
    context, context_null = pipe.encode_text(PROMPT, NEGATIVE)
    noise = official_noise(run.request.latent_shape, seed)
    ref_pipe = diffusers_pipeline(cfg["task"], ckpt_diffusers, cfg["image"], cfg["shift"])
    guide = cfg["guide"]
    low, high = guide if isinstance(guide, tuple) else (guide, guide)
    call: dict[str, Any] = {
        "prompt_embeds": context,
        "negative_prompt_embeds": context_null,
        "latents": noise[None],
        "height": height,
        "width": width,
        "num_frames": FRAMES,
        "num_inference_steps": STEPS,
        "guidance_scale": high,  # diffusers: transformer (high noise) uses guidance_scale
        "output_type": "pt",
    }
    if isinstance(guide, tuple):
        call["guidance_scale_2"] = low
    if image is not None:
        call["image"] = image
    with torch.no_grad():
        ref = ref_pipe(**call).frames[0]  # (F, C, H, W) in [0, 1]
    ref = ref.permute(1, 0, 2, 3) * 2.0 - 1.0
    info = {"experts": experts, "timesteps": list(run.timesteps), "ref_timesteps": [int(t) for t in ref_pipe.scheduler.timesteps]}
    return ours, ref, info


@pytest.mark.parametrize("run_name", list(RUNS))
def test_matches_diffusers(run_name: str, pipes: dict[str, WanVideoPipeline], checkpoints: dict[tuple[str, str], Path],
                           record_property: Any) -> None:  # fmt: skip
    cfg = RUNS[run_name]
    ours, ref, info = run_both(pipes[cfg["task"]], checkpoints[(cfg["task"], "diffusers")], cfg)
    assert info["timesteps"] == info["ref_timesteps"]  # the same (official) grid on both sides
    if cfg["task"] == "ti2v-5B":
        assert info["experts"] == ["dense"] * STEPS
    else:
        assert set(info["experts"]) == {"high_noise", "low_noise"}, info  # both experts ran
        # the expert of every step, from diffusers' timesteps and the spec boundary (high noise while
        # t >= boundary * 1000); these grids switch mid-run: 999 972 922 | 799 and 999 937 | 833 624
        boundary = get_spec(cfg["task"]).boundary * 1000
        want = tuple("high_noise" if t >= boundary else "low_noise" for t in info["ref_timesteps"])
        split = {"t2v-A14B": 3, "i2v-A14B": 2}[cfg["task"]]
        assert want == ("high_noise",) * split + ("low_noise",) * (STEPS - split), (info, boundary)
        run = pipes[cfg["task"]].last_run
        assert run is not None and run.experts == want and tuple(info["experts"]) == want, (run, info)
    assert ours.shape == ref.shape == (3, FRAMES, cfg["size"][1], cfg["size"][0])
    diff = (ours - ref).abs().max().item()
    record_property("max_abs_diff", diff)
    print(f"\n{run_name}: max |ours - diffusers| on the decoded video = {diff:.3e} (timesteps {info['timesteps']}, {info['experts']})")
    assert ours.abs().max() <= 1.0 and ours.std() > 0.05  # a real, non-constant video
    assert diff <= ORACLE_TOL


def test_same_weights_in_both_layouts(pipes: dict[str, WanVideoPipeline], checkpoints: dict[tuple[str, str], Path]) -> None:
    """The oracle is only meaningful if diffusers really holds our weights."""
    from diffusers import WanTransformer3DModel

    from wan.modules.conversion import to_diffusers_dit_state_dict

    ours = to_diffusers_dit_state_dict(pipes["t2v-A14B"].experts.experts["low_noise"].state_dict())
    theirs = WanTransformer3DModel.from_pretrained(checkpoints[("t2v-A14B", "diffusers")] / "transformer_2").state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


# ---------------------------------------------------------------------------------- offload


def test_offload_keeps_one_expert_resident(checkpoints: dict[tuple[str, str], Path], pipes: dict[str, WanVideoPipeline]) -> None:
    """With offload, at every step exactly the running expert is on the device; one switch per run,
    two loads per run (high, then low), nothing left on the device afterwards; same numbers as without."""
    pipe = load_pipeline("t2v-A14B", checkpoints[("t2v-A14B", "official")], device="cpu", dtype=torch.float32,
                         offload=True, any_size=True)  # fmt: skip
    seen: list[tuple[str, tuple[str, ...]]] = []

    def cb(step: int, total: int, expert: str, latents: torch.Tensor) -> None:
        seen.append((expert, pipe.experts.resident))
        placement = pipe.experts.placement()
        assert placement[expert] == pipe.device

    encoded: list[str] = []  # the text side of cross-attention is computed once per expert and run
    for name, model in pipe.experts.experts.items():
        original = model.encode_context

        def counting(context: torch.Tensor, _name: str = name, _original: Any = original) -> Any:
            encoded.append(_name)
            return _original(context)

        model.encode_context = counting  # type: ignore[method-assign]
    kwargs: dict[str, Any] = {"size": (80, 48), "frame_num": FRAMES, "sampling_steps": 6, "seed": 5}
    for _ in range(2):
        seen.clear()
        encoded.clear()
        video = pipe.generate(PROMPT, callback=cb, **kwargs)
        assert encoded == ["high_noise", "high_noise", "low_noise", "low_noise"]  # cond + uncond, per expert
        assert [r for _, r in seen] == [(e,) for e, _ in seen]  # only the running expert is resident
        assert [e for e, _ in seen][0] == "high_noise" and [e for e, _ in seen][-1] == "low_noise"
        assert pipe.last_run is not None
        assert (pipe.last_run.switches, pipe.last_run.loads) == (1, 2)
        # the full per-step expert order, from the timesteps (999 983 959 922 | 856 705) and the boundary
        boundary = get_spec("t2v-A14B").boundary * 1000
        want = tuple("high_noise" if t >= boundary else "low_noise" for t in pipe.last_run.timesteps)
        assert want == ("high_noise",) * 4 + ("low_noise",) * 2, pipe.last_run.timesteps
        assert pipe.last_run.experts == want and tuple(e for e, _ in seen) == want
        assert pipe.experts.resident == ()  # both experts back on the CPU before the VAE decode
    reference = pipes["t2v-A14B"]
    assert reference.experts.resident == ("high_noise", "low_noise")  # offload=False: both stay
    assert torch.equal(video, reference.generate(PROMPT, **kwargs))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: checks real parameter placement and pinned memory")
def test_offload_on_cuda_moves_weights(checkpoints: dict[tuple[str, str], Path]) -> None:
    pipe = load_pipeline("t2v-A14B", checkpoints[("t2v-A14B", "official")], device="cuda", dtype=torch.float32, any_size=True)
    assert pipe.offload  # the default on CUDA
    events: list[str] = []

    def cb(step: int, total: int, expert: str, latents: torch.Tensor) -> None:
        other = "low_noise" if expert == "high_noise" else "high_noise"
        active_params = list(pipe.experts.experts[expert].parameters())
        idle_params = list(pipe.experts.experts[other].parameters())
        assert all(p.device.type == "cuda" for p in active_params)
        assert all(p.device.type == "cpu" and p.is_pinned() for p in idle_params)
        assert latents.device.type == "cuda"
        events.append(expert)

    video = pipe.generate(PROMPT, size=(80, 48), frame_num=FRAMES, sampling_steps=6, seed=5, callback=cb)
    assert set(events) == {"high_noise", "low_noise"}
    assert pipe.last_run is not None and pipe.last_run.switches == 1
    for model in pipe.experts.experts.values():
        assert all(p.device.type == "cpu" and p.is_pinned() for p in model.parameters())
    assert video.device.type == "cpu" and video.shape == (3, FRAMES, 48, 80)
    cpu = load_pipeline("t2v-A14B", checkpoints[("t2v-A14B", "official")], device="cpu", dtype=torch.float32, any_size=True)
    ref = cpu.generate(PROMPT, size=(80, 48), frame_num=FRAMES, sampling_steps=6, seed=5)
    assert (video - ref).abs().max().item() < 1e-2  # same seed -> same video on any device (CPU generator)


# ------------------------------------------------------------------------------------ seeds


def test_seed_reproducibility(pipes: dict[str, WanVideoPipeline]) -> None:
    pipe = pipes["ti2v-5B"]
    kwargs: dict[str, Any] = {"size": (64, 64), "frame_num": FRAMES, "sampling_steps": 2}
    a = pipe.generate(PROMPT, seed=123, **kwargs)
    b = pipe.generate(PROMPT, seed=123, **kwargs)
    c = pipe.generate(PROMPT, seed=124, **kwargs)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # seed -1 draws a seed, recorded in last_run; replaying it gives the same video
    d = pipe.generate(PROMPT, seed=-1, **kwargs)
    assert pipe.last_run is not None
    drawn = pipe.last_run.request.seed
    assert 0 <= drawn <= 2**63 - 1
    assert torch.equal(d, pipe.generate(PROMPT, seed=drawn, **kwargs))


def test_noise_is_the_official_draw(pipes: dict[str, WanVideoPipeline]) -> None:
    pipe = pipes["t2v-A14B"]
    plan = pipe.plan(PROMPT, size=(80, 48), frame_num=9, seed=2024)
    assert plan.latent_shape == (16, 3, 6, 10)
    latents = pipe.prepare_latents(plan).latents
    assert latents.dtype == torch.float32
    assert torch.equal(latents[0], official_noise((16, 3, 6, 10), 2024))


def test_i2v_conditioning_layout(pipes: dict[str, WanVideoPipeline]) -> None:
    """I2V-A14B: y = [4 mask channels (1 on latent frame 0 only), 16 latent channels of image + black video]."""
    pipe = pipes["i2v-A14B"]
    plan = pipe.plan("", image=test_image(80, 48), size=(80, 48), frame_num=9, seed=1)
    inputs = pipe.prepare_latents(plan)
    assert inputs.y is not None and inputs.y.shape == (1, 20, 3, 6, 10)
    mask = inputs.y[:, :4]
    assert torch.equal(mask[:, :, 0], torch.ones_like(mask[:, :, 0])) and not mask[:, :, 1:].any()
    video = torch.zeros(1, 3, 9, 48, 80)
    video[0, :, 0] = torch.from_numpy(np.asarray(plan.image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1) * 2 - 1
    assert torch.allclose(inputs.y[:, 4:], pipe.vae.encode(video), atol=1e-5)


def test_ti2v_first_frame_is_kept(pipes: dict[str, WanVideoPipeline]) -> None:
    """TI2V with an image: latent frame 0 stays the image latent at every step; its tokens get t = 0."""
    pipe = pipes["ti2v-5B"]
    image = test_image(96, 64)
    first: list[torch.Tensor] = []
    pipe.generate("", image=image, size=(96, 64), frame_num=9, sampling_steps=3, seed=3,
                  callback=lambda s, n, e, lat: first.append(lat[:, :, 0].clone()))  # fmt: skip
    assert pipe.last_run is not None
    encoded = pipe.prepare_latents(pipe.last_run.request).first_frame
    assert encoded is not None
    for lat in first:
        assert torch.equal(lat, encoded[:, :, 0])


def test_image_sizing_follows_the_official_rules(pipes: dict[str, WanVideoPipeline]) -> None:
    # I2V-A14B: area of the requested size, aspect of the image, sides multiples of 16
    plan = pipes["i2v-A14B"].plan("go", image=test_image(400, 300), size=(832, 480), any_size=False)
    assert plan.output_size == (720, 544) and plan.image.size == (400, 300)  # stretched later, on the tensor
    # TI2V: multiples of 32, area <= W*H, LANCZOS resize + center crop of the image to that size
    # 2:1 image, area 1280*704: width-first gives 1312x672 (aspect 1.95), height-first 1408x640 (2.2)
    plan = pipes["ti2v-5B"].plan("go", image=test_image(1000, 500), size=(1280, 704), any_size=False)
    assert plan.output_size == (1312, 672) and plan.size == (1280, 704)  # the request keeps the asked area
    assert plan.width * plan.height <= 1280 * 704 and plan.width % 32 == plan.height % 32 == 0


# --------------------------------------------------------------------------- callback/cancel


def test_callback_contract_and_cancel(checkpoints: dict[tuple[str, str], Path]) -> None:
    pipe = load_pipeline("i2v-A14B", checkpoints[("i2v-A14B", "official")], device="cpu", dtype=torch.float32,
                         offload=True, any_size=True)  # fmt: skip
    image = test_image(80, 48)
    calls: list[tuple[int, int, str, tuple[int, ...]]] = []

    def record(step: int, total: int, expert: str, latents: torch.Tensor) -> None:
        calls.append((step, total, expert, tuple(latents.shape)))

    pipe.generate("", image=image, size=(80, 48), frame_num=FRAMES, sampling_steps=4, seed=0, callback=record)
    assert [c[0] for c in calls] == [1, 2, 3, 4] and {c[1] for c in calls} == {4}
    assert [c[2] for c in calls] == ["high_noise", "high_noise", "low_noise", "low_noise"]
    assert {c[3] for c in calls} == {(1, 16, 2, 6, 10)}

    stop_after = 2
    seen: list[int] = []

    def stop(step: int, total: int, expert: str, latents: torch.Tensor) -> bool:
        seen.append(step)
        return step < stop_after

    with pytest.raises(GenerationCancelled, match="2/4"):
        pipe.generate("", image=image, size=(80, 48), frame_num=FRAMES, sampling_steps=4, seed=0, callback=stop)
    assert seen == [1, 2]
    assert pipe.last_run is not None and not pipe.last_run.completed
    assert pipe.experts.resident == ()  # cancelling still puts the experts back on the CPU

    def raise_cancel(step: int, total: int, expert: str, latents: torch.Tensor) -> None:
        if step == 3:
            raise GenerationCancelled("user pressed stop")

    with pytest.raises(GenerationCancelled, match="user pressed stop"):
        pipe.generate("", image=image, size=(80, 48), frame_num=FRAMES, sampling_steps=4, seed=0, callback=raise_cancel)
    assert pipe.experts.resident == ()
    # the pipeline is still usable after a cancel
    video = pipe.generate("", image=image, size=(80, 48), frame_num=FRAMES, sampling_steps=2, seed=0)
    assert video.shape == (3, FRAMES, 48, 80) and math.isfinite(video.sum().item())


def test_cancel_during_decode(pipes: dict[str, WanVideoPipeline]) -> None:
    """Cancel takes effect between decoded latent frames, not only between denoising steps."""
    pipe = pipes["t2v-A14B"]
    decoded: list[tuple[int, int]] = []

    def stop_decoding(done: int, total: int) -> bool:
        decoded.append((done, total))
        return done < 2

    with pytest.raises(GenerationCancelled, match="while decoding, after latent frame 2/5"):
        pipe.generate("a cat", size=(80, 48), frame_num=17, sampling_steps=2, seed=0, decode_callback=stop_decoding)
    assert decoded == [(1, 5), (2, 5)]  # stopped after two of five latent frames
    assert pipe.last_run is not None and pipe.last_run.completed  # denoising had finished
    full: list[int] = []
    video = pipe.generate("a cat", size=(80, 48), frame_num=17, sampling_steps=2, seed=0,
                          decode_callback=lambda done, total: full.append(done))  # fmt: skip
    assert full == [1, 2, 3, 4, 5] and video.shape == (3, 17, 48, 80)


# ------------------------------------------------------------------------------------ dtypes


def test_dtype_names_and_text_encoder_dtype(checkpoints: dict[tuple[str, str], Path]) -> None:
    """dtype may be a name; umT5 runs in bf16 unless the DiT is fp32 (it overflows in fp16)."""
    ckpt = checkpoints[("ti2v-5B", "official")]
    fp16 = load_pipeline("ti2v-5B", ckpt, device="cpu", dtype="float16", offload=False)
    assert fp16.dtype == torch.float16 and fp16.text_encoder.dtype == torch.bfloat16
    fp32 = load_pipeline("ti2v-5B", ckpt, device="cpu", dtype="fp32", offload=False)
    assert fp32.dtype == torch.float32 and fp32.text_encoder.dtype == torch.float32
    explicit = load_pipeline("ti2v-5B", ckpt, device="cpu", dtype=torch.bfloat16, t5_dtype="float32", offload=False)
    assert explicit.text_encoder.dtype == torch.float32
    for bad in ({"dtype": "int8"}, {"dtype": "half-ish"}, {"t5_dtype": torch.int64}):
        with pytest.raises(ValueError, match="dtype must be a floating torch.dtype"):
            load_pipeline("ti2v-5B", ckpt, device="cpu", **bad)


def test_low_precision_dit_keeps_float32_parameters(checkpoints: dict[tuple[str, str], Path]) -> None:
    """A bf16 pipeline keeps the parameters the forward computes in fp32 (time embedding/projection,
    modulation, head, norm3) in fp32 and the rest in bf16, through offloading too, and still runs."""
    from wan.modules.model import is_float32_parameter

    pipe = load_pipeline("t2v-A14B", checkpoints[("t2v-A14B", "official")], device="cpu", dtype="bfloat16",
                         offload=True, any_size=True)  # fmt: skip

    def check_dtypes() -> None:
        for model in pipe.experts.experts.values():
            dtypes = {name: p.dtype for name, p in model.named_parameters()}
            kept = {n for n in dtypes if is_float32_parameter(n)}
            assert {"time_projection.1.weight", "head.head.weight", "blocks.0.modulation", "blocks.1.norm3.bias"} <= kept
            assert all(dtypes[n] == torch.float32 for n in kept)
            assert all(d == torch.bfloat16 for n, d in dtypes.items() if n not in kept)

    check_dtypes()
    assert pipe.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    video = pipe.generate(PROMPT, size=(80, 48), frame_num=FRAMES, sampling_steps=2, shift=1.0, seed=1)
    assert video.dtype == torch.float32 and math.isfinite(video.sum().item())
    assert pipe.last_run is not None and pipe.last_run.loads == 2
    check_dtypes()  # the offloader's masters kept each parameter's own dtype
