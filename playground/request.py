"""The app's side of the generation contract: its policies, size presets and field labels.

The request itself is ``wan.request.GenerationRequest`` (one type from the UI to the pipeline); the
limits are ``wan.configs.LIMITS``; errors are ``wan.errors.InputError`` (re-exported here so the app
has one import). This module only adds what the app decides on its own:

* ``app_policy``: the demo caps each side (tiny weights on the CPU); ``--any-size`` opens custom sizes.
* ``size_presets``: the resolution dropdown (official sizes, or the small demo sizes).
* ``FIELD_LABELS``: how a request field is called in the form, for error messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from dataclasses import dataclass

from wan.configs import LIMITS, SOLVERS, ModelSpec
from wan.errors import InputError
from wan.request import RequestPolicy, format_size, parse_size

__all__ = [
    "DEMO_MAX_SIDE",
    "DEMO_SIZES",
    "FIELD_LABELS",
    "LIMITS",
    "SOLVERS",
    "InputError",
    "SizePreset",
    "app_policy",
    "closest_preset",
    "error_text",
    "format_size",
    "parse_size",
    "size_presets",
]

# Small sizes for --demo (tiny random weights on CPU). Multiples of 32, so valid for every task.
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
    "last_image": "Last frame",
    "video": "Video",
    "prompt_fields": "Prompt assistant",
    "loras": "LoRAs",
    "phases": "Phases (speed preset)",
    "schedule": "Schedule (speed preset)",
    "attention": "Attention",
    "preset": "Speed preset",
    "lora_repo": "Hub repo",
    "lora_file": "File in the repo",
    "cache": "Step cache",
}


# Request field -> the form's label key and the localized "what is allowed" hint key (playground.i18n).
_FIELD_I18N: dict[str, str] = {
    "prompt": "field.prompt", "negative_prompt": "field.negative_prompt", "size": "field.size",
    "frame_num": "field.frames", "fps": "field.fps", "sampling_steps": "field.steps", "shift": "field.shift",
    "guide_scale": "field.guidance", "guide_scale_high": "field.guidance_high", "guide_scale_low": "field.guidance_low",
    "sample_solver": "field.solver", "seed": "field.seed", "image": "field.image", "attention": "field.attention",
}  # fmt: skip
# Request fields whose form label is translated but that have no translated hint: "label: message".
_LABEL_I18N: dict[str, str] = {"last_image": "field.last_image"}


def error_text(error: InputError, lang: str = "en") -> str:
    """``"Steps: must be an integer from 1 to 100; got 500"``: the form's name for the field, then why.

    In Korean or Chinese the field's label is translated and a translated rule (from
    ``wan.configs.LIMITS``) comes first; the exact English detail follows in parentheses.
    """
    if lang != "en" and error.field in _LABEL_I18N:
        from .i18n import tr

        return f"{tr(_LABEL_I18N[error.field], lang)}: {error.message}"
    if lang == "en" or error.field not in _FIELD_I18N:
        return f"{FIELD_LABELS.get(error.field, error.field)}: {error.message}"
    from .i18n import tr

    label = tr(_FIELD_I18N[error.field], lang)
    field = "guide_scale" if error.field.startswith("guide_scale") else error.field
    hint = tr(f"hint.{field}", lang, **_hint_values())
    return f"{label}: {hint} ({error.message})"


def _hint_values() -> dict[str, object]:
    lim = LIMITS
    return {
        "frames": f"{lim.frame_num.lo:g}–{lim.frame_num.hi:g}", "fps": f"{lim.fps.lo:g}–{lim.fps.hi:g}",
        "steps": f"{lim.sampling_steps.lo:g}–{lim.sampling_steps.hi:g}", "shift": f"{lim.shift.lo:g}–{lim.shift.hi:g}",
        "guidance": f"{lim.guide_scale.lo:g}–{lim.guide_scale.hi:g}", "seed": f"0–{lim.seed.hi:.0f}",
        "solvers": ", ".join(SOLVERS), "chars": lim.prompt_chars,
    }  # fmt: skip


def app_policy(*, demo: bool, any_size: bool, lora_dir: Path | None = None) -> RequestPolicy:
    """What this server accepts beyond the model's rules: custom sizes (``any_size``, always in the
    demo), in the demo at most ``DEMO_MAX_SIDE`` pixels per side, and LoRAs only by file name inside
    ``lora_dir`` (the server's LoRA folder; None: no LoRA folder, so no LoRA file is accepted)."""
    if demo:
        return RequestPolicy(any_size=True, max_side=DEMO_MAX_SIDE, note="in demo mode (tiny weights on the CPU)",
                             lora_dir=_lora_root(lora_dir))
    return RequestPolicy(any_size=any_size, lora_dir=_lora_root(lora_dir))


def _lora_root(lora_dir: Path | None) -> Path:
    # a server never opens a path a client sends: without a LoRA folder, an empty one stands in
    return Path(lora_dir) if lora_dir is not None else _NO_LORA_DIR


_NO_LORA_DIR = Path("/nonexistent-wan-playground-loras")


@dataclass(frozen=True)
class SizePreset:
    width: int
    height: int
    label: str

    @property
    def value(self) -> str:
        return format_size(self.width, self.height)


def _size_name(width: int, height: int) -> str:
    short = min(width, height)
    tier = {720: "720p", 704: "720p", 480: "480p"}.get(short)
    shape = "landscape" if width > height else "portrait" if height > width else "square"
    return f"{tier}, {shape}" if tier else shape


def size_presets(spec: ModelSpec, *, demo: bool = False) -> list[SizePreset]:
    """The task's official sizes; in demo mode only the small demo sizes, labelled "demo"."""
    if demo:
        return [SizePreset(w, h, f"{w}×{h} (demo, {_size_name(w, h)})") for w, h in DEMO_SIZES]
    return [SizePreset(w, h, f"{w}×{h} ({_size_name(w, h)})") for w, h in spec.sizes]


def closest_preset(presets: Sequence[SizePreset], width: int, height: int) -> SizePreset:
    """The preset whose aspect ratio is closest to ``width/height`` (ties: the larger area)."""
    target = math.log(width / height)
    return min(presets, key=lambda p: (abs(math.log(p.width / p.height) - target), -p.width * p.height))
