"""The generation request shared by the UI, the engine and the history store, and its validation.

A request is built from the UI's named values (``request_from_values``), validated against the
task's ``wan.ModelSpec`` before anything is queued on the GPU, and stored verbatim in the settings
JSON next to the mp4, so a stored result can be re-opened or re-generated exactly.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wan.configs import SOLVERS  # torch-free

__all__ = [
    "DEMO_MAX_SIDE",
    "DEMO_SIZES",
    "FIELD_LABELS",
    "MAX_FRAMES",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "MAX_STEPS",
    "SOLVERS",
    "GenerationRequest",
    "InputError",
    "SizePreset",
    "closest_preset",
    "format_size",
    "parse_size",
    "request_from_values",
    "resolve_seed",
    "size_presets",
    "validate_request",
]

MAX_SEED = 2**31 - 1
MAX_STEPS = 100
MAX_FRAMES = 121          # 4n+1; the 5B default (about 5 s at 24 fps)
MAX_PROMPT_CHARS = 3000   # the text encoder keeps 512 tokens; longer text would be cut silently
MIN_SIDE, MAX_SIDE = 64, 1920
MAX_FPS = 60
# Small sizes for --demo (tiny random weights on CPU). Multiples of 32, so valid for every task;
# they go through the any-size path of ``validate_request`` (the demo runs with ``any_size=True``).
DEMO_SIZES: tuple[tuple[int, int], ...] = ((128, 96), (96, 128), (128, 128), (64, 64))
# The largest side a --demo request may ask for: the tiny weights run on the CPU, and a full-size
# request would take minutes there while holding the only generation slot.
DEMO_MAX_SIDE = 256

# Human names of the request fields, used in error messages ("which field, what is allowed").
FIELD_LABELS: dict[str, str] = {
    "task": "Task",
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "size": "Resolution",
    "frame_num": "Frames",
    "fps": "FPS",
    "sampling_steps": "Steps",
    "shift": "Shift",
    "guide_scale": "Guidance",
    "guide_scale_high": "Guidance (high-noise expert)",
    "guide_scale_low": "Guidance (low-noise expert)",
    "sample_solver": "Solver",
    "seed": "Seed",
    "image": "Image",
}


class SpecLike(Protocol):
    """The fields of ``wan.configs.ModelSpec`` this module reads."""

    task: str
    moe: bool
    sizes: tuple[tuple[int, int], ...]
    size_multiple: int
    sample_steps: int
    sample_shift: float
    guide_scale: float | tuple[float, float]
    frame_num: int
    sample_fps: int


class InputError(ValueError):
    """A user input is invalid. ``field`` names the request field; the message says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{FIELD_LABELS.get(field, field)}: {message}")


@dataclass(frozen=True)
class GenerationRequest:
    """Everything needed to reproduce one generation (the seed is always the resolved one)."""

    task: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    frame_num: int
    fps: int
    sampling_steps: int
    shift: float
    guide_scale: float | tuple[float, float]  # (low-noise, high-noise) for the A14B experts
    sample_solver: str
    seed: int
    image: str | None = None                   # path of the conditioning image (I2V, optional for TI2V)
    prompt_fields: dict[str, Any] | None = None  # the prompt-assistant fields, for restoring the form

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if isinstance(self.guide_scale, tuple):
            d["guide_scale"] = list(self.guide_scale)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GenerationRequest:
        """Inverse of ``to_dict``; unknown keys are ignored, missing keys raise ``InputError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in values]
        if missing:
            raise InputError(missing[0], f"missing from the settings (needed: {', '.join(missing)})")
        gs = values["guide_scale"]
        values["guide_scale"] = (float(gs[0]), float(gs[1])) if isinstance(gs, (list, tuple)) else float(gs)
        return cls(**values)


@dataclass(frozen=True)
class SizePreset:
    width: int
    height: int
    label: str

    @property
    def value(self) -> str:
        return format_size(self.width, self.height)


_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[*xX×,]\s*(\d{1,5})\s*$")


def format_size(width: int, height: int) -> str:
    """``(1280, 720)`` -> ``"1280*720"`` (the official ``--size`` format, width first)."""
    return f"{width}*{height}"


def parse_size(text: str) -> tuple[int, int]:
    """``"1280*720"``, ``"1280x720"`` or ``"1280×720"`` -> ``(1280, 720)``."""
    m = _SIZE_RE.match(str(text or ""))
    if not m:
        raise InputError("size", f"{text!r} is not a size; write it as WIDTH*HEIGHT, e.g. 1280*720")
    return int(m.group(1)), int(m.group(2))


def _size_name(width: int, height: int) -> str:
    short = min(width, height)
    tier = {720: "720p", 704: "720p", 480: "480p"}.get(short)
    shape = "landscape" if width > height else "portrait" if height > width else "square"
    return f"{tier}, {shape}" if tier else shape


def size_presets(spec: SpecLike, *, demo: bool = False) -> list[SizePreset]:
    """The task's official sizes; in demo mode only the small demo sizes, labelled "demo"."""
    if demo:
        return [SizePreset(w, h, f"{w}×{h} (demo, {_size_name(w, h)})") for w, h in DEMO_SIZES]
    return [SizePreset(w, h, f"{w}×{h} ({_size_name(w, h)})") for w, h in spec.sizes]


def resolve_seed(seed: float | int | None, randomize: bool) -> int:
    """The seed actually used: a fresh random one when asked to randomize or when seed < 0."""
    if randomize or seed is None or int(seed) < 0:
        return secrets.randbelow(MAX_SEED + 1)
    return int(seed)


def _int(field: str, value: Any) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(field, f"{value!r} is not a number") from None
    if f != int(f):
        raise InputError(field, f"must be a whole number (got {value})")
    return int(f)


def _float(field: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(field, f"{value!r} is not a number") from None


def _check_range(field: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise InputError(field, f"must be between {lo:g} and {hi:g} (got {value:g})")


def request_from_values(
    spec: SpecLike,
    values: Mapping[str, Any],
    *,
    image: str | None = None,
    prompt_fields: Mapping[str, Any] | None = None,
) -> GenerationRequest:
    """Build a request from the UI's named values (strings and floats as Gradio sends them).

    Keys: prompt, negative_prompt, size ("W*H"), frame_num, fps, sampling_steps, shift,
    guide_scale (dense) or guide_scale_high + guide_scale_low (MoE), sample_solver, seed, randomize_seed.
    Numbers are converted and the seed resolved here; ``validate_request`` checks the ranges.
    """
    width, height = parse_size(values.get("size", ""))
    if spec.moe:
        guide: float | tuple[float, float] = (
            _float("guide_scale_low", values.get("guide_scale_low")),
            _float("guide_scale_high", values.get("guide_scale_high")),
        )
    else:
        guide = _float("guide_scale", values.get("guide_scale"))
    seed_value = values.get("seed")
    seed = _int("seed", seed_value) if seed_value not in (None, "") else -1
    return GenerationRequest(
        task=spec.task,
        prompt=str(values.get("prompt") or "").strip(),
        negative_prompt=str(values.get("negative_prompt") or "").strip(),
        width=width,
        height=height,
        frame_num=_int("frame_num", values.get("frame_num")),
        fps=_int("fps", values.get("fps")),
        sampling_steps=_int("sampling_steps", values.get("sampling_steps")),
        shift=_float("shift", values.get("shift")),
        guide_scale=guide,
        sample_solver=str(values.get("sample_solver") or ""),
        seed=resolve_seed(seed, bool(values.get("randomize_seed"))),
        image=image,
        prompt_fields=dict(prompt_fields) if prompt_fields else None,
    )


def validate_request(
    req: GenerationRequest,
    spec: SpecLike,
    *,
    any_size: bool = False,
    max_side: int = MAX_SIDE,
    image_required: bool = False,
    image_allowed: bool = True,
) -> None:
    """Raise ``InputError`` (field + what is allowed) for the first invalid field of ``req``.

    Sizes must be one of the task's official sizes, or, with ``any_size``, multiples of
    ``spec.size_multiple`` between 64 and ``max_side`` (1920) pixels.
    """
    if req.task != spec.task:
        raise InputError("task", f"request is for {req.task!r} but the tab runs {spec.task!r}")
    if not req.prompt:
        raise InputError("prompt", "is empty; type a prompt or build one with the prompt assistant")
    if len(req.prompt) > MAX_PROMPT_CHARS:
        raise InputError("prompt", f"is {len(req.prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    if len(req.negative_prompt) > MAX_PROMPT_CHARS:
        raise InputError("negative_prompt", f"is {len(req.negative_prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    _validate_size(req.width, req.height, spec, any_size=any_size, max_side=max_side)
    n = req.frame_num
    if n < 1 or n > MAX_FRAMES or (n - 1) % 4:
        raise InputError("frame_num", f"must be 4n+1 between 1 and {MAX_FRAMES} (1, 5, 9, …, 81, …, 121); got {n}")
    _check_range("fps", req.fps, 1, MAX_FPS)
    _check_range("sampling_steps", req.sampling_steps, 1, MAX_STEPS)
    _check_range("shift", req.shift, 0.1, 30.0)
    if spec.moe:
        if not isinstance(req.guide_scale, tuple) or len(req.guide_scale) != 2:
            raise InputError("guide_scale", "needs two values, (low-noise, high-noise), for the A14B experts")
        _check_range("guide_scale_low", req.guide_scale[0], 0.0, 20.0)
        _check_range("guide_scale_high", req.guide_scale[1], 0.0, 20.0)
    else:
        if isinstance(req.guide_scale, tuple):
            raise InputError("guide_scale", f"{spec.task} has one model, so it takes a single guidance value")
        _check_range("guide_scale", req.guide_scale, 0.0, 20.0)
    if req.sample_solver not in SOLVERS:
        raise InputError("sample_solver", f"{req.sample_solver!r} is not one of {', '.join(SOLVERS)}")
    _check_range("seed", req.seed, 0, MAX_SEED)
    if image_required and not req.image:
        raise InputError("image", f"{spec.task} animates an image: upload one (PNG, JPEG or WebP)")
    if req.image and not image_allowed:
        raise InputError("image", f"{spec.task} is text-only; remove the image or use the I2V / TI2V tab")


def _validate_size(width: int, height: int, spec: SpecLike, *, any_size: bool, max_side: int = MAX_SIDE) -> None:
    official = ", ".join(f"{w}*{h}" for w, h in spec.sizes)
    if (width, height) in spec.sizes and max(width, height) <= max_side:
        return
    if not any_size:
        raise InputError("size", f"{width}*{height} is not supported by {spec.task}; allowed: {official}")
    m = spec.size_multiple
    if width % m or height % m:
        raise InputError(
            "size", f"{width}*{height}: width and height must be multiples of {m} for {spec.task}"
        )
    if not (MIN_SIDE <= width <= max_side and MIN_SIDE <= height <= max_side):
        demo = " in demo mode (tiny weights on the CPU)" if max_side < MAX_SIDE else ""
        raise InputError("size", f"{width}*{height}: each side must be between {MIN_SIDE} and {max_side}{demo}")


def closest_preset(presets: Sequence[SizePreset], width: int, height: int) -> SizePreset:
    """The preset whose aspect ratio is closest to ``width/height`` (ties: the larger area)."""
    import math

    target = math.log(width / height)
    return min(presets, key=lambda p: (abs(math.log(p.width / p.height) - target), -p.width * p.height))
