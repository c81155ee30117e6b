"""First-last frame (FLF2V) on I2V-A14B: ``last_image`` in the request, the conditioning, diffusers parity.

Oracle: diffusers' ``WanImageToVideoPipeline(image=first, last_image=last)`` on the same tiny random
weights, noise and text embeddings (helpers from ``test_pipeline``). The first image is given at the
output size (the two sides resize it differently: official bicubic vs diffusers LANCZOS); the last
image is given at another size so both sides stretch it with PIL LANCZOS to the output size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from test_pipeline import FRAMES, NEGATIVE, ORACLE_TOL, PROMPT, STEPS, diffusers_pipeline, official_noise, test_image

from wan.errors import InputError
from wan.pipeline import WanVideoPipeline, load_pipeline
from wan.request import FIELD_HELP, make_request, request_from_values

SIZE = (80, 48)
SHIFT = 5.0
GUIDE = (2.0, 4.5)  # (low, high)


@pytest.fixture(scope="module")
def i2v_ckpts(tiny_ckpt: Callable[..., Path]) -> dict[str, Path]:
    return {layout: tiny_ckpt("i2v-A14B", layout) for layout in ("official", "diffusers")}


@pytest.fixture(scope="module")
def pipe(i2v_ckpts: dict[str, Path]) -> WanVideoPipeline:
    return load_pipeline("i2v-A14B", i2v_ckpts["official"], device="cpu", dtype=torch.float32, offload=False, any_size=True)


def last_image(width: int = 100, height: int = 60) -> Image.Image:
    """A different picture (other seed, flipped), at another size than the output."""
    return test_image(width, height, seed=7).transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1) * 2 - 1


# ------------------------------------------------------------------------------- diffusers


def test_first_last_matches_diffusers(pipe: WanVideoPipeline, i2v_ckpts: dict[str, Path], record_property: Any) -> None:
    width, height = SIZE
    first, last = test_image(width, height), last_image()
    seed = 11
    ours = pipe.generate(PROMPT, image=first, last_image=last, negative_prompt=NEGATIVE, size=SIZE, frame_num=FRAMES,
                         sampling_steps=STEPS, shift=SHIFT, guide_scale=GUIDE, seed=seed)  # fmt: skip
    run = pipe.last_run
    assert run is not None and run.request.output_size == SIZE and run.request.last_image is last
    context, context_null = pipe.encode_text(PROMPT, NEGATIVE)
    noise = official_noise(run.request.latent_shape, seed)
    ref_pipe = diffusers_pipeline("i2v-A14B", i2v_ckpts["diffusers"], True, SHIFT)
    with torch.no_grad():
        ref = ref_pipe(
            image=first, last_image=last, prompt_embeds=context, negative_prompt_embeds=context_null, latents=noise[None],
            height=height, width=width, num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=GUIDE[1],
            guidance_scale_2=GUIDE[0], output_type="pt",
        ).frames[0]  # fmt: skip
    ref = ref.permute(1, 0, 2, 3) * 2.0 - 1.0
    assert ours.shape == ref.shape == (3, FRAMES, height, width)
    diff = (ours - ref).abs().max().item()
    record_property("max_abs_diff", diff)
    print(f"\nfirst-last i2v-A14B: max |ours - diffusers| on the decoded video = {diff:.3e}")
    assert ours.abs().max() <= 1.0 and ours.std() > 0.05
    assert diff <= ORACLE_TOL
    # the last frame really conditions the run
    plain = pipe.generate(PROMPT, image=first, negative_prompt=NEGATIVE, size=SIZE, frame_num=FRAMES,
                          sampling_steps=STEPS, shift=SHIFT, guide_scale=GUIDE, seed=seed)  # fmt: skip
    assert (plain - ours).abs().max().item() > 1e-3


# ---------------------------------------------------------------------------- conditioning


def test_first_last_conditioning_layout(pipe: WanVideoPipeline) -> None:
    """mask: all 4 sub-frames of latent frame 0, and sub-frame 3 (pixel frame F-1) of the last latent
    frame (diffusers' layout); image-latent channels = VAE([first, black..., last stretched LANCZOS])."""
    first, last = test_image(80, 48), last_image()
    plan = pipe.plan("", image=first, last_image=last, size=SIZE, frame_num=9, seed=1)
    inputs = pipe.prepare_latents(plan)
    assert inputs.y is not None and inputs.y.shape == (1, 20, 3, 6, 10)
    mask = inputs.y[:, :4]
    want = torch.zeros_like(mask)
    want[:, :, 0] = 1.0
    want[:, 3, -1] = 1.0
    assert torch.equal(mask, want)
    assert mask[:, :, 0].all() and mask[:, :, -1].any() and not mask[:, :, 1:-1].any()
    video = torch.zeros(1, 3, 9, 48, 80)
    video[0, :, 0] = _tensor(first)
    video[0, :, -1] = _tensor(last.resize(SIZE, Image.LANCZOS))
    assert torch.allclose(inputs.y[:, 4:], pipe.vae.encode(video), atol=1e-5)
    # diffusers builds the same mask from its pixel-frame mask
    m = torch.zeros(1, 1, 9, 6, 10)
    m[:, :, 0] = m[:, :, -1] = 1
    m = torch.cat([m[:, :, :1].repeat_interleave(4, dim=2), m[:, :, 1:]], dim=2).view(1, -1, 4, 6, 10).transpose(1, 2)
    assert torch.equal(m, mask)
    # without last_image: unchanged single-image conditioning
    single = pipe.prepare_latents(pipe.plan("", image=first, size=SIZE, frame_num=9, seed=1))
    assert single.y is not None and not single.y[:, :4, 1:].any()


# ------------------------------------------------------------------------------ validation


def test_last_image_validation(tmp_path: Path) -> None:
    first, last = test_image(80, 48), last_image()
    for task in ("t2v-A14B", "ti2v-5B"):
        with pytest.raises(InputError, match="has no last-frame path; use i2v-A14B") as e:
            make_request(task, "a fox", image=first if task == "ti2v-5B" else None, last_image=last)
        assert e.value.field == "last_image"
    with pytest.raises(InputError, match="give image") as e:
        make_request("i2v-A14B", "a fox", last_image=last)
    assert e.value.field == "last_image"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read 'broken.png'") as e:
        make_request("i2v-A14B", "a fox", image=first, last_image=bad, size=SIZE, any_size=True)
    assert e.value.field == "last_image"
    with pytest.raises(InputError, match="file not found") as e:
        make_request("i2v-A14B", "a fox", image=first, last_image=tmp_path / "missing.png", size=SIZE, any_size=True)
    assert e.value.field == "last_image"
    with pytest.raises(InputError, match="frame_num >= 5") as e:
        make_request("i2v-A14B", "a fox", image=first, last_image=last, size=SIZE, any_size=True, frame_num=1)
    assert e.value.field == "last_image"


def test_settings_round_trip_names_the_last_image(tmp_path: Path) -> None:
    first_path, last_path = tmp_path / "first.png", tmp_path / "last frame.png"
    test_image(80, 48).save(first_path)
    last_image().save(last_path)
    req = make_request("i2v-A14B", "a fox", image=first_path, last_image=last_path, size=SIZE, any_size=True, seed=3)
    settings = req.to_settings()
    assert settings["image"] == "first.png" and settings["last_image"] == "last frame.png"
    back = request_from_values("i2v-A14B", settings, image=first_path, last_image=last_path)
    assert back == req and back.last_image == last_path and back.to_settings() == settings
    assert make_request("i2v-A14B", "a fox", image=first_path, size=SIZE, any_size=True).to_settings()["last_image"] is None
    # a PIL last image is named "<image>"; equality ignores the images (like image)
    pil = req.with_changes(last_image=last_image())
    assert pil.to_settings()["last_image"] == "<image>" and pil == req
    assert req.with_changes(seed=4).last_image == last_path  # with_changes keeps it
    assert req.with_changes(last_image=None).last_image is None
    with pytest.raises(InputError):
        req.with_changes(last_image=tmp_path / "missing.png")


def test_cli_flag(tmp_path: Path) -> None:
    import generate

    assert "last_image" in FIELD_HELP
    parser = generate.build_parser()
    first_path, last_path = tmp_path / "first.png", tmp_path / "last.png"
    test_image(80, 48).save(first_path)
    last_image().save(last_path)
    args = parser.parse_args(["--task", "i2v-A14B", "--ckpt_dir", str(tmp_path), "--image", str(first_path),
                              "--last_image", str(last_path), "--size", "80*48", "--any_size"])  # fmt: skip
    assert args.last_image == str(last_path)
    req = generate.build_request(args, "a fox")
    assert req.last_image == str(last_path) and req.to_settings()["last_image"] == "last.png"
    assert "--last_image" in parser.format_help()
