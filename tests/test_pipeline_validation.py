"""Every input check of ``generate``: it fails before any model runs, names the field and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import wan
from wan.configs import get_spec
from wan.errors import GenerationError, InputError
from wan.pipeline import WanVideoPipeline, load_pipeline
from wan.request import best_output_size, make_request, parse_values, request_from_values

T2V = get_spec("t2v-A14B")
I2V = get_spec("i2v-A14B")
TI2V = get_spec("ti2v-5B")


def rgb(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.full((height, width, 3), 128, dtype=np.uint8))


# (spec, kwargs, field, regex the message must match)
CASES: list[tuple[Any, dict[str, Any], str, str]] = [
    # text
    (T2V, {"prompt": 3}, "prompt", "must be a str"),
    (T2V, {"prompt": "   "}, "prompt", "must not be empty"),
    (T2V, {"negative_prompt": ["x"]}, "negative_prompt", "str or None"),
    # image presence / type
    (T2V, {"image": rgb(64, 64)}, "image", "text-to-video only.*i2v-A14B or ti2v-5B"),
    (I2V, {"image": None}, "image", "needs an input image"),
    (TI2V, {"image": 42}, "image", "PIL image or a path"),
    (TI2V, {"image": "/nonexistent/picture.png"}, "image", "file not found: 'picture.png'"),
    (I2V, {"image": rgb(4000, 2), "size": (832, 480)}, "image", "too extreme"),
    (TI2V, {"image": rgb(4000, 2), "size": (704, 1280)}, "image", "cannot fit"),
    # size
    (T2V, {"size": (1280, 704)}, "size", r"1280\*704 is not supported by t2v-A14B; allowed.*1280\*720, 720\*1280, 832\*480, 480\*832.*any_size"),
    (TI2V, {"size": "1280*720"}, "size", r"allowed.*1280\*704, 704\*1280"),
    (T2V, {"size": "big"}, "size", "W\\*H"),
    (T2V, {"size": "1280*0"}, "size", r"'W\*H' string of two positive integers such as '1280\*720'"),
    (T2V, {"size": "0x720"}, "size", "two positive integers"),
    (T2V, {"size": "1280*720*3"}, "size", "W\\*H"),
    (T2V, {"size": "\u00b2*720"}, "size", "W\\*H"),  # a unicode digit, not an ASCII one
    (T2V, {"size": (1280,)}, "size", "two positive integers"),
    (T2V, {"size": (0, 720)}, "size", "two positive integers"),
    (T2V, {"size": (1280.0, 720.0)}, "size", "two positive integers"),
    (T2V, {"size": (72, 64), "any_size": True}, "size", "width=72.*multiples of 16"),
    (TI2V, {"size": (64, 48), "any_size": True}, "size", "height=48.*multiples of 32"),
    # frames
    (T2V, {"frame_num": 80}, "frame_num", r"4n\+1"),
    (T2V, {"frame_num": 0}, "frame_num", r"4n\+1"),
    (T2V, {"frame_num": 81.0}, "frame_num", r"4n\+1"),
    (T2V, {"frame_num": True}, "frame_num", r"4n\+1"),
    (T2V, {"frame_num": 245}, "frame_num", "from 1 to 241"),
    # sampler
    (T2V, {"sampling_steps": 0}, "sampling_steps", "from 1 to 100"),
    (T2V, {"sampling_steps": 101}, "sampling_steps", "from 1 to 100"),
    (T2V, {"sampling_steps": 4.0}, "sampling_steps", "integer from 1 to 100"),
    (T2V, {"shift": 0}, "shift", r"number from 0\.1 to 30 \(official: 12\)"),
    (T2V, {"shift": -1.0}, "shift", "number from 0.1 to 30"),
    (T2V, {"shift": float("nan")}, "shift", "number from 0.1 to 30"),
    (T2V, {"shift": "5"}, "shift", "number from 0.1 to 30"),
    (T2V, {"fps": 0}, "fps", "integer from 1 to 60"),
    (T2V, {"prompt": "x" * 3001}, "prompt", "3001 characters; the limit is 3000"),
    (T2V, {"sample_solver": "ddim"}, "sample_solver", "unipc, dpm\\+\\+, euler"),
    (T2V, {"guide_scale": -0.5}, "guide_scale", r"'high_noise'.*\(low_noise, high_noise\) pair, each from 0 to 20"),
    (T2V, {"guide_scale": (3.0, float("inf"))}, "guide_scale", "from 0 to 20"),
    (T2V, {"guide_scale": (1.0, 2.0, 3.0)}, "guide_scale", r"\(low_noise, high_noise\) pair"),
    (T2V, {"guide_scale": "4"}, "guide_scale", "from 0 to 20"),
    (T2V, {"guide_scale": {"high_noise": 4.0}}, "guide_scale", "experts high_noise, low_noise"),
    (T2V, {"guide_scale": {"dense": 4.0}}, "guide_scale", "experts high_noise, low_noise"),
    (TI2V, {"guide_scale": (3.0, 4.0)}, "guide_scale", "single model: give one number"),
    (TI2V, {"guide_scale": -1}, "guide_scale", r"must be a number or \{'dense': g\}, each from 0 to 20"),
    # seed
    (T2V, {"seed": -2}, "seed", "-1 \\(random\\) or an integer from 0 to"),
    (T2V, {"seed": 2**63}, "seed", "from 0 to 9223372036854775807"),
    (T2V, {"seed": 1.5}, "seed", "-1 \\(random\\)"),
    (T2V, {"seed": False}, "seed", "-1 \\(random\\)"),
]


def _ids(case: tuple[Any, dict[str, Any], str, str]) -> str:
    spec, kwargs, field, _ = case
    return f"{spec.task}-{field}-{'-'.join(f'{k}={v!r}'[:24] for k, v in kwargs.items())}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_plan_rejects(case: tuple[Any, dict[str, Any], str, str]) -> None:
    spec, kwargs, field, pattern = case
    kwargs = dict(kwargs)
    prompt = kwargs.pop("prompt", "a cat")
    if spec.task == "i2v-A14B" and "image" not in kwargs:
        kwargs["image"] = rgb(64, 48)
    with pytest.raises(InputError, match=pattern) as info:
        make_request(spec.task, prompt, **kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)  # InputError is a ValueError
    assert GenerationError is InputError  # one error type; the old name still works


def test_unreadable_image_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(GenerationError, match="cannot read 'broken.png'") as info:
        make_request("ti2v-5B", "x", image=bad)
    assert info.value.field == "image"


def test_oversized_or_invalid_image_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decompression bomb (over twice PIL's pixel limit) and PIL's ValueErrors become GenerationError."""
    from PIL import Image as PILImage

    path = tmp_path / "big.png"
    rgb(64, 64).save(path)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 64*64 > 2 * 1000
    with pytest.raises(GenerationError, match=r"'big\.png' is too large to open safely.*size limit") as info:
        make_request("ti2v-5B", "x", image=path)
    assert info.value.field == "image"
    monkeypatch.undo()

    def bad_open(*_: Any, **__: Any) -> Any:
        raise ValueError("Unsupported BMP compression")

    monkeypatch.setattr(PILImage, "open", bad_open)
    with pytest.raises(GenerationError, match=r"cannot read 'big\.png' as an image \(Unsupported BMP") as info:
        make_request("ti2v-5B", "x", image=path)
    assert info.value.field == "image"


def test_defaults_come_from_the_spec() -> None:
    req = make_request("t2v-A14B", "a cat", seed=3)
    assert (req.width, req.height) == (1280, 720)
    assert (req.frame_num, req.fps, req.sampling_steps, req.shift) == (81, 16, 40, 12.0)
    assert req.guide_scale == {"high_noise": 4.0, "low_noise": 3.0}
    assert req.effective_negative_prompt == T2V.negative_prompt and req.sample_solver == "unipc"
    assert req.latent_shape == (16, 21, 90, 160)
    req = make_request("ti2v-5B", "a cat", negative_prompt="", seed=0)  # "" means the official default
    assert req.effective_negative_prompt == TI2V.negative_prompt
    assert (req.size, req.frame_num, req.fps, req.guide_scale, req.latent_shape) == (
        (1280, 704), 121, 24, {"dense": 5.0}, (48, 31, 44, 80))
    req = make_request("i2v-A14B", "", image=rgb(1280, 720), seed=0)
    assert req.output_size == (1280, 720) and req.guide_scale == {"high_noise": 3.5, "low_noise": 3.5} and req.shift == 5.0
    # one number applies to both experts (official CLI); the official pair is (low, high); a mapping names them
    assert make_request("t2v-A14B", "x", guide_scale=2).guide_scale == {"high_noise": 2.0, "low_noise": 2.0}
    assert make_request("t2v-A14B", "x", guide_scale=[1, 6]).guide_scale == {"high_noise": 6.0, "low_noise": 1.0}
    assert make_request("t2v-A14B", "x", guide_scale={"low_noise": 1, "high_noise": 6}).guidance_for("high_noise") == 6.0
    assert make_request("t2v-A14B", "x", size="832*480").size == (832, 480)
    assert make_request("t2v-A14B", "x", size=" 832 X 480 ").size == (832, 480)
    assert make_request("t2v-A14B", "x", size=(64, 48), any_size=True).latent_shape == (16, 21, 6, 8)


def test_seed_resolution_one_range() -> None:
    from wan.configs import LIMITS

    drawn = {make_request("t2v-A14B", "x").seed for _ in range(20)}
    assert len(drawn) > 1 and all(0 <= s <= LIMITS.random_seed_max for s in drawn)
    assert make_request("t2v-A14B", "x", seed=int(LIMITS.seed.hi)).seed == 2**63 - 1  # official sys.maxsize range


def test_settings_round_trip_and_version_1_reader() -> None:
    req = make_request("i2v-A14B", "a cat", image=rgb(640, 480), size="832*480", seed=9, guide_scale={"high_noise": 5, "low_noise": 2})
    settings = req.to_settings()
    assert settings["settings_version"] == 2 and settings["guide_scale"] == {"high_noise": 5.0, "low_noise": 2.0}
    again = request_from_values("i2v-A14B", settings, image=rgb(640, 480))
    assert again == req
    # version 1 (the app and generate.py before the request contract): width/height, [low, high]
    v1 = {"task": "t2v-A14B", "prompt": "p", "negative_prompt": "", "width": 832, "height": 480, "frame_num": 5,
          "fps": 16, "sampling_steps": 4, "shift": 8.0, "guide_scale": [3.0, 4.0], "sample_solver": "euler",
          "seed": 5234567890123456789, "version": 1, "id": "20260101-120000-a1b2c3"}  # fmt: skip
    old = request_from_values("t2v-A14B", v1)
    assert old.size == (832, 480) and old.guide_scale == {"high_noise": 4.0, "low_noise": 3.0}
    assert old.seed == 5234567890123456789 and old.sample_solver == "euler"


def test_text_values_name_every_bad_field() -> None:
    kwargs, errors = parse_values(
        "ti2v-5B", {"seed": "inf", "steps": "nan", "frames": "True", "shift": "1e400", "guidance": "abc", "fps": "12"}
    )
    assert sorted(e.field for e in errors) == ["frame_num", "guide_scale", "sampling_steps", "seed", "shift"]
    assert kwargs == {"fps": 12}
    kwargs, errors = parse_values("t2v-A14B", {"guide_scale_high": "5", "guide_scale_low": 2.5, "steps": 30.0})
    assert not errors and kwargs == {"guide_scale": {"high_noise": 5.0, "low_noise": 2.5}, "sampling_steps": 30}


def test_best_output_size_properties() -> None:
    for w, h in [(1280, 720), (720, 1280), (1000, 1000), (333, 777), (1920, 1080), (64, 64)]:
        for area in (1280 * 704, 704 * 1280, 96 * 64):
            ow, oh = best_output_size(w, h, 32, 32, area)
            assert ow % 32 == 0 and oh % 32 == 0 and ow * oh <= area and ow > 0 and oh > 0
    assert best_output_size(1280, 704, 32, 32, 1280 * 704) == (1280, 704)
    with pytest.raises(ValueError, match="no 32x32-aligned size"):
        best_output_size(100, 100, 32, 32, 500)


# ------------------------------------------------------------- through generate(): no heavy work


@pytest.fixture(scope="module")
def guarded_pipe(tiny_ckpt: Callable[..., Path]) -> WanVideoPipeline:
    """A real tiny pipeline whose heavy stages fail the test if they are ever reached."""
    pipe = load_pipeline("i2v-A14B", tiny_ckpt("i2v-A14B"), device="cpu", dtype=torch.float32)

    def forbidden(*_: Any, **__: Any) -> Any:
        raise AssertionError("heavy work started before validation finished")

    pipe.encode_text = forbidden  # type: ignore[method-assign]
    pipe.prepare_latents = forbidden  # type: ignore[method-assign]
    pipe.denoise = forbidden  # type: ignore[method-assign]
    pipe.experts.activate = forbidden  # type: ignore[method-assign]
    return pipe


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"frame_num": 6}, "frame_num"),
        ({"size": (1000, 1000)}, "size"),
        ({"sampling_steps": 500}, "sampling_steps"),
        ({"fps": 0}, "fps"),
        ({"guide_scale": -1.0}, "guide_scale"),
        ({"shift": 0.0}, "shift"),
        ({"sample_solver": "heun"}, "sample_solver"),
        ({"seed": -5}, "seed"),
        ({"image": None}, "image"),
        ({"callback": "not callable"}, "callback"),
        ({"size": (80, 40), "any_size": True}, "size"),
    ],
)
def test_generate_validates_before_heavy_work(guarded_pipe: WanVideoPipeline, kwargs: dict[str, Any], field: str) -> None:
    call: dict[str, Any] = {"image": rgb(80, 48), "size": (832, 480), "frame_num": 5, "sampling_steps": 2}
    call.update(kwargs)
    with pytest.raises(wan.InputError) as info:
        guarded_pipe.generate("a cat", **call)
    assert info.value.field == field


def test_pipeline_any_size_default(tiny_ckpt: Callable[..., Path]) -> None:
    strict = load_pipeline("ti2v-5B", tiny_ckpt("ti2v-5B"), device="cpu", dtype=torch.float32)
    with pytest.raises(GenerationError, match="any_size=True"):
        strict.plan("x", size=(64, 64))
    assert strict.plan("x", size=(64, 64), any_size=True).size == (64, 64)
    loose = load_pipeline("ti2v-5B", tiny_ckpt("ti2v-5B"), device="cpu", dtype=torch.float32, any_size=True)
    assert loose.plan("x", size=(64, 64)).size == (64, 64)
    with pytest.raises(ValueError, match="dtype"):
        load_pipeline("ti2v-5B", tiny_ckpt("ti2v-5B"), device="cpu", dtype=torch.int8)
    with pytest.raises(ValueError, match="t2v-A14B, i2v-A14B, ti2v-5B"):
        load_pipeline("t2i-14B", tiny_ckpt("ti2v-5B"), device="cpu")
