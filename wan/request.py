"""The one generation request: every setting of a run, validated once, serialised one way.

``GenerationRequest`` is the contract between every front end (the app, its HTTP/MCP API, share
links, ``generate.py``, scripts) and the pipeline. It is built in one of two ways:

* ``make_request(task, prompt, **settings)``: typed Python values (ints, floats, a PIL image or a
  path, ``(W, H)``); strict: a float where an int belongs is an error. ``pipe.plan`` is this.
* ``request_from_values(task, values)``: text-ish values as forms, URLs, JSON settings and the CLI
  give them (``"30"``, ``30.0``, ``"1280*720"``, flat ``guide_scale_high``/``guide_scale_low``,
  the short link names ``steps``/``frames``/``guidance``..., and the older settings shape). It
  converts with ``parse_values`` and then calls ``make_request``.

``parse_values`` never stops at the first bad value: it returns the good ones and one ``InputError``
per bad field, so a form can be restored from damaged settings and every rejected link parameter
can be named. Every error is an ``InputError`` whose ``field`` is the request field.

A request serialises with ``to_settings()`` (the JSON stored in the mp4 ``comment`` tag and in the
history, schema ``SETTINGS_VERSION``) and is read back with ``request_from_values`` (which accepts
the version-1 shape written before this contract: ``width``/``height`` and ``guide_scale`` as a
``[low_noise, high_noise]`` list).

Guidance is a per-expert mapping: ``{"high_noise": 4.0, "low_noise": 3.0}`` (A14B) or
``{"dense": 5.0}`` (5B). One number sets every expert; the official ``(low_noise, high_noise)``
tuple is still accepted.

Seeds: ``-1`` draws a random one (``resolve_seed``); the request always holds the seed actually
used. Accepted range and draw range are ``LIMITS.seed`` and ``LIMITS.random_seed_max``.

Importing this module does not import torch; validating a request does (through ``get_spec``).
"""

from __future__ import annotations

import math
import numbers
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .configs import DEFAULT_COLOR_MATCH, DEFAULT_OVERLAP, LIMITS, SCHEDULES, SOLVERS, get_spec
from .errors import CheckpointError, InputError
from .lora import LoraSpec  # torch-free at import
from .stepcache import StepCache, cache_text, parse_cache  # torch-free at import

if TYPE_CHECKING:
    from .configs import ModelSpec

__all__ = [
    "SETTINGS_VERSION",
    "URL_ALIASES",
    "GenerationRequest",
    "LoraSpec",
    "Phase",
    "RequestPolicy",
    "best_output_size",
    "FIELD_HELP",
    "check_fields",
    "lora_from_text",
    "flat_values",
    "format_size",
    "i2v_a14b_output_size",
    "make_request",
    "parse_size",
    "parse_values",
    "request_from_values",
    "resolve_seed",
]

SETTINGS_VERSION: Final[int] = 2

# Short names accepted in links and older settings (name -> request field).
URL_ALIASES: Final[dict[str, str]] = {
    "neg": "negative_prompt",
    "steps": "sampling_steps",
    "frames": "frame_num",
    "guidance": "guide_scale",
    "guidance_high": "guide_scale_high",
    "guidance_low": "guide_scale_low",
    "solver": "sample_solver",
}
# One line of help per request setting (the CLI builds its flags from it; the app's API docs say the same).
FIELD_HELP: Final[dict[str, str]] = {
    "prompt": "what the video shows (English or Chinese)",
    "negative_prompt": "what to avoid (default: the official negative prompt)",
    "size": "WIDTH*HEIGHT (an output area when an image is given); default: the task's",
    "frame_num": f"number of frames, 4n+1 up to {LIMITS.frame_num.hi:g} (default: 81 A14B, 121 5B)",
    "fps": f"frames per second of the video, {LIMITS.fps.lo:g} to {LIMITS.fps.hi:g} (default: 16 A14B, 24 5B)",
    "sampling_steps": f"denoising steps, 1 to {LIMITS.sampling_steps.hi:g} (default: 40 A14B, 50 5B)",
    "shift": f"flow shift, {LIMITS.shift.lo:g} to {LIMITS.shift.hi:g} (default: 12 T2V, 5 I2V/5B)",
    "guide_scale": "classifier-free guidance: one number, or LOW,HIGH for the A14B experts (official order)",
    "sample_solver": f"sampler: {', '.join(SOLVERS)} (default: unipc)",
    "seed": f"random seed, 0 to {LIMITS.seed.hi:.0f}; -1 draws one (default: -1)",
    "loras": "LoRA files as PATH, PATH:STRENGTH or PATH:HIGH,LOW (A14B experts), or a JSON list",
    "phases": 'JSON list of {"steps", "expert", "guide_scale", "lora_scale"} covering every step (e.g. Lightning)',
    "schedule": "sigma grid: official (default) or lightning (linspace(1, 0) shifted, float timesteps)",
    "last_image": "i2v-A14B only: image of the last frame (first-last frame video; needs --image)",
    "attention": "attention backend: auto (default: flash_attn_3, flash_attn_2 or sdpa), sdpa, flash_attn_2, "
                 "flash_attn_3, sage (int8, opt-in); sage:F,L runs the first F and last L steps at full precision",
    "cache": "step cache: off (default), magcache, easycache (published settings), METHOD:THRESHOLD or JSON",
    "parent": "continuation: name of the clip this one continues from its last frame (recorded; image tasks only)",
    "overlap": "continuation: leading frames dropped when the clip is joined to its parent, 0 to frame_num-1 "
               "(default 1 when continuing: the repeated hand-over frame)",
    "color_match": "continuation: match the clip's colours to the parent's last frames in Lab, 0 (off) to 1 "
                   "(default 0.5 when continuing)",
}
# Flat per-expert guidance names (forms, links, the API) -> expert.
_FLAT_GUIDE: Final[dict[str, str]] = {"guide_scale_high": "high_noise", "guide_scale_low": "low_noise"}


@dataclass(frozen=True)
class RequestPolicy:
    """What a front end allows beyond the model's own rules.

    ``any_size``: accept any width/height that is a multiple of the task's ``size_multiple`` (each
    side within ``LIMITS.side`` and at most ``max_side``), not only the official sizes.
    ``max_side``: a server's cap on each side (the demo caps it); ``note`` is appended to that error.
    ``lora_dir``: when set, LoRAs are named by file name and must be files in this folder (a server
    never loads a path a client sends); when None (scripts, the CLI), any path or state dict works.
    """

    any_size: bool = False
    max_side: int = int(LIMITS.side.hi)
    note: str = ""
    lora_dir: Path | None = None


@dataclass(frozen=True)
class Phase:
    """A run of consecutive denoising steps with its own expert, guidance and LoRA scale.

    ``steps`` steps on ``expert`` at classifier-free guidance ``guide_scale`` (1.0 = one forward, CFG
    off), with every LoRA at ``lora_scale`` times its strength for that expert (0 = without LoRAs).
    A request's phases cover all its steps in order; without phases the official MoE rule applies
    (the high-noise expert while ``t >= boundary``, each expert at its own guidance, LoRAs at 1x).
    The Lightning presets and the 3-phase "motion fix" are phases.
    """

    steps: int
    expert: str
    guide_scale: float
    lora_scale: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "expert": self.expert, "guide_scale": self.guide_scale, "lora_scale": self.lora_scale}


@dataclass(frozen=True)
class GenerationRequest:
    """Every input of one run, validated and resolved (defaults filled in, seed drawn).

    ``size`` is the requested ``(width, height)``; with an image it is the output *area* and the
    image's aspect ratio sets the shape: ``output_size`` is the video's real size. ``image`` is
    ``None``, a path, or a PIL image (never serialised). ``negative_prompt`` is as given (``""``
    means the official one, see ``effective_negative_prompt``). ``prompt_fields`` is the structured
    prompt the text was built from (``prompting.PromptFields`` as a flat dict: formula mode, language,
    subject, scene, motion, aesthetic choices); stored with the settings, not read by the model.
    ``loras`` are ``wan.LoraSpec`` (strength per expert); ``phases`` (optional) split the steps into
    runs with their own expert, guidance and LoRA scale; ``schedule`` is the sigma grid
    (``"official"`` or ``"lightning"``, see ``wan.configs.SCHEDULES``). ``last_image`` (I2V-A14B
    only, with ``image``) is the last frame of a first-last frame video: ``None``, a path or a PIL
    image, never serialised (``to_settings`` names its file, like ``image``). At run time it is
    stretched to ``output_size`` (the size set by the first image) with PIL LANCZOS, no crop and
    aspect not kept, exactly as diffusers' ``WanImageToVideoPipeline`` preprocesses ``last_image``.
    ``cache`` is the step cache (``wan.stepcache.StepCache``: MagCache or EasyCache), None when off.

    Continuation (see ``wan.continuation``): ``parent`` names the clip this one continues (its last
    frame is ``image``; recorded, not read by the model; image tasks only), ``overlap`` the leading
    frames dropped when the clip is joined to its parent (0 .. frame_num - 1; default 1 with a parent,
    else 0; nonzero needs a parent), ``color_match`` (0..1) how far the decoded frames are moved to the
    Lab statistics of ``color_reference`` (a float tensor ``(3, F', H', W')`` or ``(3, H, W)`` in
    [-1, 1], the parent's last frames; never serialised nor compared; default 0.5 with a reference,
    else 0; nonzero needs a reference). ``wan.continuation.continue_request`` fills all four.
    """

    task: str
    prompt: str
    negative_prompt: str
    size: tuple[int, int]
    frame_num: int
    fps: int
    sampling_steps: int
    shift: float
    guide_scale: Mapping[str, float]
    sample_solver: str
    seed: int
    image: Any = field(default=None, compare=False)
    any_size: bool = False
    output_size: tuple[int, int] = (0, 0)
    prompt_fields: Mapping[str, Any] | None = None
    loras: tuple[LoraSpec, ...] = ()
    phases: tuple[Phase, ...] | None = None
    schedule: str = "official"
    last_image: Any = field(default=None, compare=False)
    attention: str = "auto"
    cache: StepCache | None = None
    parent: str | None = None
    overlap: int = 0
    color_match: float = 0.0
    color_reference: Any = field(default=None, compare=False, repr=False)

    # -- derived
    @property
    def spec(self) -> ModelSpec:
        return get_spec(self.task)

    @property
    def width(self) -> int:
        """Output width of the video."""
        return self.output_size[0]

    @property
    def height(self) -> int:
        """Output height of the video."""
        return self.output_size[1]

    @property
    def effective_negative_prompt(self) -> str:
        return self.negative_prompt or self.spec.negative_prompt

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """Noise shape ``(z, F_lat, h, w)``."""
        spec = self.spec
        s = spec.vae_stride
        return (spec.z_dim, spec.latent_frames(self.frame_num), self.height // s[1], self.width // s[2])

    def guidance_for(self, expert: str) -> float:
        return self.guide_scale[expert]

    def step_phase(self, step: int, timestep: float) -> Phase:
        """The phase of 0-based ``step`` at ``timestep``: from ``phases``, else the official MoE rule."""
        if self.phases is not None:
            end = 0
            for phase in self.phases:
                end += phase.steps
                if step < end:
                    return phase
            raise IndexError(f"step {step} is past the {end} steps of the phases")
        spec = self.spec
        boundary = spec.boundary_timestep
        expert = "dense" if boundary is None else "high_noise" if timestep >= boundary else "low_noise"
        return Phase(1, expert, self.guide_scale[expert], 1.0)

    def step_attention(self, step: int) -> str:
        """The attention backend name of 0-based ``step``: ``attention`` itself, except for
        ``"sage:F,L"``: ``"sage"``, and ``"auto"`` (full precision) on the first F and last L steps."""
        name, full = _split_attention(self.attention)
        first, last = full
        return "auto" if step < first or step >= self.sampling_steps - last else name

    # -- serialisation
    def to_settings(self) -> dict[str, Any]:
        """The settings JSON (schema ``SETTINGS_VERSION``); ``request_from_values`` reads it back."""
        image_name, last_image_name = _image_name(self.image), _image_name(self.last_image)
        return {
            "settings_version": SETTINGS_VERSION,
            "task": self.task,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "size": format_size(*self.size),
            "frame_num": self.frame_num,
            "fps": self.fps,
            "sampling_steps": self.sampling_steps,
            "shift": self.shift,
            "guide_scale": dict(self.guide_scale),
            "sample_solver": self.sample_solver,
            "seed": self.seed,
            "any_size": self.any_size,
            "image": image_name,
            "last_image": last_image_name,
            "output": {"width": self.width, "height": self.height},
            "prompt_fields": dict(self.prompt_fields) if self.prompt_fields else None,
            "loras": [_lora_json(lora) for lora in self.loras],
            "phases": None if self.phases is None else [p.to_json() for p in self.phases],
            "schedule": self.schedule,
            "attention": self.attention,
            "cache": None if self.cache is None else self.cache.to_json(),
            "parent": self.parent,
            "overlap": self.overlap,
            "color_match": self.color_match,
        }

    def with_changes(self, **changes: Any) -> GenerationRequest:
        """A new request with ``changes`` applied, validated again (e.g. ``seed=7`` for a batch)."""
        names = ("prompt", "negative_prompt", "size", "frame_num", "fps", "sampling_steps", "shift", "guide_scale",
                 "sample_solver", "seed", "image", "any_size", "prompt_fields", "loras", "phases", "schedule",
                 "last_image", "attention", "cache", "parent", "overlap", "color_match",
                 "color_reference")  # fmt: skip
        kwargs = {name: getattr(self, name) for name in names}
        kwargs.update(changes)
        return make_request(self.task, **kwargs)


# ------------------------------------------------------------------------------ primitives


def _image_name(image: Any) -> str | None:
    """How settings name an input image: its file name, ``"<image>"`` for a PIL image, or None."""
    return Path(image).name if isinstance(image, (str, Path)) else ("<image>" if image is not None else None)


def format_size(width: int, height: int) -> str:
    """``(1280, 720)`` -> ``"1280*720"`` (the official ``--size`` format, width first)."""
    return f"{width}*{height}"


_SIZE_RE = re.compile(r"\s*(\d{1,5})\s*[*xX×,]\s*(\d{1,5})\s*", re.ASCII)


def parse_size(size: Any) -> tuple[int, int]:
    """``(W, H)`` from a pair of positive ints or a ``"W*H"`` string (``x``, ``×`` and ``,`` also work).

    Raises ``InputError(field="size")`` naming the accepted forms.
    """
    if isinstance(size, str):
        m = _SIZE_RE.fullmatch(size)
        if m is not None and int(m.group(1)) > 0 and int(m.group(2)) > 0:
            return int(m.group(1)), int(m.group(2))
        raise InputError(
            "size", f"must be (width, height) or a 'W*H' string of two positive integers such as '1280*720'; got {size[:40]!r}"
        )
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(v) for v in size):
        w, h = int(size[0]), int(size[1])
        if w > 0 and h > 0:
            return w, h
    raise InputError("size", f"must be (width, height) with two positive integers; got {_short(size)}")


def resolve_seed(seed: int) -> int:
    """The seed a run uses: ``seed`` itself, or a fresh random one in ``0..LIMITS.random_seed_max`` for -1."""
    return secrets.randbelow(LIMITS.random_seed_max + 1) if seed == -1 else int(seed)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _range_text(limit: Any) -> str:
    return f"{limit.lo:g} to {limit.hi:g}"


# ------------------------------------------------------------------------- output geometry


def best_output_size(width: int, height: int, multiple_w: int, multiple_h: int, max_area: int) -> tuple[int, int]:
    """The ``(w, h)`` with ``w % multiple_w == h % multiple_h == 0`` and ``w * h <= max_area`` whose aspect
    is closest to ``width / height`` (TI2V-5B image sizing). Two candidates are tried: round the width
    down first and fit the height to the area, or the other way round; the one with the smaller aspect
    error (as a ratio >= 1) wins, the height-first one on a tie. Raises ``ValueError`` if no size fits.
    """
    aspect = width / height
    ideal_w = math.sqrt(max_area * aspect)
    ideal_h = max_area / ideal_w
    candidates: list[tuple[int, int]] = []
    w1 = int(ideal_w // multiple_w * multiple_w)
    if w1 > 0:
        candidates.append((w1, int(max_area / w1 // multiple_h * multiple_h)))
    h2 = int(ideal_h // multiple_h * multiple_h)
    if h2 > 0:
        candidates.append((int(max_area / h2 // multiple_w * multiple_w), h2))
    candidates = [(w, h) for w, h in candidates if w > 0 and h > 0]
    if not candidates:
        raise ValueError(
            f"no {multiple_w}x{multiple_h}-aligned size of area <= {max_area} fits a {width}x{height} image"
        )

    def error(c: tuple[int, int]) -> float:
        r = c[0] / c[1]
        return max(aspect / r, r / aspect)

    if len(candidates) == 2 and error(candidates[0]) < error(candidates[1]):
        return candidates[0]
    return candidates[-1]


def i2v_a14b_output_size(width: int, height: int, max_area: int, vae_stride: int, patch: int) -> tuple[int, int]:
    """I2V-A14B output ``(w, h)`` for a ``width x height`` image (official ``WanI2V`` arithmetic):
    ``lat_h = floor(sqrt(max_area * h/w) / stride) // patch * patch`` (same for ``lat_w`` with w/h),
    then ``(lat_w * stride, lat_h * stride)``. The aspect ratio is kept up to that rounding.

    Computed exactly (integer square root: ``floor(sqrt(x)) == isqrt(floor(x))``). The official code
    uses floats, which differ only where ``sqrt`` lands within rounding error of a multiple of the
    stride: an 832x480 image at the 832*480 area gives sqrt(399360 * 480/832) = 479.99999999999994
    there, so 832x464; here it keeps 832x480 (so a 480p clip continued from its last frame keeps its
    size, and an image of an official size is not cropped by 16 rows)."""
    lat_h = math.isqrt(max_area * height // width) // vae_stride // patch * patch
    lat_w = math.isqrt(max_area * width // height) // vae_stride // patch * patch
    return int(lat_w * vae_stride), int(lat_h * vae_stride)


def image_output_size(spec: ModelSpec, image_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """Output ``(w, h)`` for an image of ``image_size`` at the requested area ``size`` (official rules)."""
    stride, patch = spec.vae_stride[1], spec.patch_size[1]
    iw, ih = image_size
    area = size[0] * size[1]
    if spec.moe:
        ow, oh = i2v_a14b_output_size(iw, ih, area, stride, patch)
        if ow < stride * patch or oh < stride * patch:
            raise InputError("image", f"aspect ratio {iw}x{ih} is too extreme for an output area of {area} pixels")
        return ow, oh
    try:
        return best_output_size(iw, ih, stride * patch, stride * patch, area)
    except ValueError as e:
        raise InputError("image", f"aspect ratio {iw}x{ih} cannot fit the output area: {e}") from e


def _image_size(image: Any, name: str = "image") -> tuple[int, int]:
    """``(w, h)`` of a PIL image or an image file (fully decoded once, so damage is found here);
    errors name the field ``name``."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise InputError(name, f"file not found: {path.name!r}")
        try:
            with Image.open(path) as im:
                im.load()
                return im.size
        except Image.DecompressionBombError as e:  # not an OSError; raised above 2 * MAX_IMAGE_PIXELS
            raise InputError(
                name, f"{path.name!r} is too large to open safely: {e} (the size limit is PIL.Image.MAX_IMAGE_PIXELS)"
            ) from e
        except (OSError, ValueError, SyntaxError) as e:  # unknown format, truncated data, bad header values
            detail = str(e).replace(str(path), path.name)
            raise InputError(name, f"cannot read {path.name!r} as an image ({detail})") from e
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise InputError(name, f"is empty ({image.width}x{image.height})")
        return image.size
    raise InputError(name, f"must be a PIL image or a path to an image file; got {type(image).__name__}")


# ------------------------------------------------------------------------- strict builder


def _check_int(name: str, value: Any, limit: Any, extra: str = "") -> int:
    if not _is_int(value) or value not in limit:
        raise InputError(name, f"must be an integer from {_range_text(limit)}{extra}; got {_short(value)}")
    return int(value)


def _check_float(name: str, value: Any, limit: Any, extra: str = "") -> float:
    if not _is_number(value) or not math.isfinite(float(value)) or float(value) not in limit:
        raise InputError(name, f"must be a number from {_range_text(limit)}{extra}; got {_short(value)}")
    return float(value)


def _check_text(name: str, value: Any, *, allow_none: bool) -> str:
    if value is None and allow_none:
        return ""
    if not isinstance(value, str):
        raise InputError(name, f"must be a str{' or None' if allow_none else ''}; got {type(value).__name__}")
    if len(value) > LIMITS.prompt_chars:
        raise InputError(name, f"is {len(value)} characters; the limit is {LIMITS.prompt_chars}")
    return value


def _check_size(spec: ModelSpec, size: tuple[int, int], policy: RequestPolicy) -> tuple[int, int]:
    allowed = ", ".join(format_size(*s) for s in spec.sizes)
    cap = min(int(LIMITS.side.hi), policy.max_side)
    if size in spec.sizes and max(size) <= cap:
        return size
    if not policy.any_size:
        raise InputError(
            "size",
            f"{format_size(*size)} is not supported by {spec.task}; allowed (width*height): {allowed} "
            f"(or any multiple of {spec.size_multiple} with any_size=True)",
        )
    m = spec.size_multiple
    bad = [f"{n}={v}" for n, v in zip(("width", "height"), size, strict=True) if v % m]
    if bad:
        raise InputError("size", f"{', '.join(bad)}: width and height must be multiples of {m} for {spec.task}")
    lo = max(int(LIMITS.side.lo), m)
    if not (lo <= size[0] <= cap and lo <= size[1] <= cap):
        note = f" {policy.note}" if policy.note else ""
        raise InputError("size", f"{format_size(*size)}: each side must be between {lo} and {cap}{note}")
    return size


def _check_guidance(spec: ModelSpec, value: Any) -> dict[str, float]:
    """Per-expert guidance from a number, a ``(low_noise, high_noise)`` pair or a mapping."""
    experts = spec.experts
    form = (
        "a number, {'high_noise': h, 'low_noise': l} or the official (low_noise, high_noise) pair"
        if spec.moe else "a number or {'dense': g}"
    )  # fmt: skip
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(experts))
        missing = [e for e in experts if e not in value]
        if unknown or missing:
            raise InputError(
                "guide_scale", f"{spec.task} takes guidance for the experts {', '.join(experts)}; got keys {sorted(value)}"
            )
        values = {e: value[e] for e in experts}
    elif isinstance(value, (tuple, list)):
        if not spec.moe:
            raise InputError("guide_scale", f"{spec.task} has a single model: give one number; got {_short(value)}")
        if len(value) != 2:
            raise InputError("guide_scale", f"must be {form}; got {_short(value)}")
        values = {"low_noise": value[0], "high_noise": value[1]}
    else:
        values = dict.fromkeys(experts, value)
    lim = LIMITS.guide_scale
    for v in values.values():
        if not _is_number(v) or not math.isfinite(float(v)) or float(v) not in lim:
            raise InputError("guide_scale", f"must be {form}, each from {_range_text(lim)}; got {_short(value)}")
    return {e: float(values[e]) for e in experts}


def _check_frames(spec: ModelSpec, frames: Any) -> int:
    lim = LIMITS.frame_num
    if not _is_int(frames) or frames not in lim or (frames - 1) % 4:
        raise InputError(
            "frame_num", f"must be an integer 4n+1 from {_range_text(lim)} (1, 5, 9, ..., 81, ..., 121); got {_short(frames)}"
        )
    return int(frames)


def _check_seed(seed: Any) -> int:
    if not _is_int(seed) or not (seed == -1 or seed in LIMITS.seed):
        raise InputError("seed", f"must be -1 (random) or an integer from 0 to {int(LIMITS.seed.hi)}; got {_short(seed)}")
    return int(seed)


def _check_solver(solver: Any) -> str:
    if solver not in SOLVERS:
        raise InputError("sample_solver", f"must be one of {', '.join(SOLVERS)}; got {_short(solver)}")
    return str(solver)


def _lora_json(lora: LoraSpec) -> dict[str, Any]:
    strength = dict(lora.strength) if isinstance(lora.strength, Mapping) else lora.strength
    return {"name": lora.name, "sha256": lora.sha256_short, "strength": strength}


def _check_strength(spec: ModelSpec, value: Any) -> float | dict[str, float]:
    lim = LIMITS.lora_strength
    form = f"a number from {_range_text(lim)} or a mapping of {', '.join(spec.experts)} to such numbers"
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in spec.experts)
        if unknown:
            raise InputError("loras", f"strength names experts {unknown}; {spec.task} has {', '.join(spec.experts)}")
        values = dict(value)
    else:
        values = {"": value}
    for v in values.values():
        if not _is_number(v) or not math.isfinite(float(v)) or float(v) not in lim:
            raise InputError("loras", f"strength must be {form}; got {_short(value)}")
    return {str(k): float(v) for k, v in values.items()} if isinstance(value, Mapping) else float(value)


def _lora_source(source: Any, policy: RequestPolicy) -> Any:
    """A LoRA file's path (checked), or an in-memory state dict (scripts only)."""
    if isinstance(source, Mapping):
        if policy.lora_dir is not None:
            raise InputError("loras", "this server takes LoRA file names from its LoRA folder, not state dicts")
        return source
    if not isinstance(source, (str, Path)) or not str(source).strip():
        raise InputError("loras", f"each LoRA is a file (a path, or a name in the LoRA folder); got {_short(source)}")
    if policy.lora_dir is None:
        path = Path(source).expanduser()
        if not path.is_file():
            raise InputError("loras", f"file not found: {path.name!r}")
        return str(path)
    name = str(source)
    root = Path(policy.lora_dir).resolve()
    path = (root / name).resolve()
    if Path(name).is_absolute() or ".." in Path(name).parts or root not in path.parents or not path.is_file():
        raise InputError("loras", f"{name[:80]!r} is not a LoRA file in this server's LoRA folder")
    return str(path)


def _lora_entry(entry: Any) -> tuple[Any, Any, str | None]:
    """(source, strength, recorded sha256) of a LoRA entry in any accepted form."""
    if isinstance(entry, LoraSpec):
        return entry.source, entry.strength, None
    if isinstance(entry, Mapping) and ("name" in entry or "path" in entry) and len(entry) <= 4:
        return entry.get("path") or entry.get("name"), entry.get("strength", 1.0), entry.get("sha256")
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return entry[0], entry[1], None
    if isinstance(entry, (str, Path)):
        return entry, 1.0, None
    raise InputError(
        "loras", f"each LoRA is a LoraSpec, a path, (path, strength) or {{'name': ..., 'strength': ...}}; got {_short(entry)}"
    )


def _check_loras(spec: ModelSpec, value: Any, policy: RequestPolicy) -> tuple[LoraSpec, ...]:
    """LoRAs as ``LoraSpec``s: files found (in the server's folder when it has one), parsed (any
    supported format; a file that is not a LoRA is named), strengths in range, sha256 as recorded."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or len(value) > LIMITS.loras:
        raise InputError("loras", f"must be a list of at most {LIMITS.loras} LoRAs; got {_short(value)}")
    out: list[LoraSpec] = []
    for entry in value:
        source, strength, sha = _lora_entry(entry)
        lora = LoraSpec(_lora_source(source, policy), _check_strength(spec, strength))
        try:
            lora.load()
        except CheckpointError as e:
            raise InputError("loras", str(e)) from None
        if sha and lora.sha256_short and sha != lora.sha256_short:
            raise InputError(
                "loras", f"{lora.name}: this file is not the one recorded (sha256 {sha}..., this file {lora.sha256_short}...)"
            )
        out.append(lora)
    return tuple(out)


def _check_phases(spec: ModelSpec, value: Any, steps: int | None) -> tuple[Phase, ...] | None:
    """Phases in order; with ``steps`` they must cover exactly that many steps."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or len(value) > 16:
        raise InputError("phases", f"must be a list of 1 to 16 phases; got {_short(value)}")
    out: list[Phase] = []
    for raw in value:
        if isinstance(raw, Phase):
            raw = raw.to_json()
        if isinstance(raw, (list, tuple)) and len(raw) in (3, 4):
            raw = dict(zip(("steps", "expert", "guide_scale", "lora_scale"), raw, strict=False))
        if not isinstance(raw, Mapping):
            raise InputError("phases", f"each phase is {{steps, expert, guide_scale, lora_scale}}; got {_short(raw)}")
        n, expert = raw.get("steps"), raw.get("expert")
        if not _is_int(n) or n < 1:
            raise InputError("phases", f"phase steps must be an integer >= 1; got {_short(n)}")
        if expert not in spec.experts:
            raise InputError("phases", f"phase expert must be one of {', '.join(spec.experts)}; got {_short(expert)}")
        g = _check_float("phases", raw.get("guide_scale", spec.guide_scale[expert]), LIMITS.guide_scale, " (phase guidance)")
        ls = _check_float("phases", raw.get("lora_scale", 1.0), LIMITS.lora_strength, " (phase LoRA scale)")
        out.append(Phase(int(n), str(expert), g, ls))
    total = sum(p.steps for p in out)
    if steps is not None and total != steps:
        raise InputError("phases", f"the phases cover {total} steps but sampling_steps is {steps}")
    return tuple(out)


def _check_last_image(spec: ModelSpec, value: Any) -> Any:
    """``last_image``: None, or a readable image (path or PIL) for I2V-A14B, the one task with a last-frame path."""
    if value is None:
        return None
    if not (spec.moe and spec.image_input == "required"):
        raise InputError("last_image", f"{spec.task} has no last-frame path; use i2v-A14B")
    _image_size(value, "last_image")
    return value


_ATTENTION_RE = re.compile(r"^(?P<name>[a-z0-9_]+)(?::(?P<first>\d{1,3})(?:,(?P<last>\d{1,3}))?)?$")


def _check_attention(value: Any) -> str:
    """``attention``: a backend name (aliases allowed) -> its canonical form; ``sage:F,L`` (or
    ``sage:N`` = ``sage:N,N``) -> ``"sage:F,L"`` (``"sage"`` when both are 0). Which backends can run is
    the pipeline's business (its device): here only the spelling is checked."""
    from .modules.attention import CHOICES, normalize_backend

    form = f"one of {', '.join(CHOICES)}, or sage:F,L (the first F and last L steps at full precision)"
    m = _ATTENTION_RE.match(value.strip().lower()) if isinstance(value, str) else None
    if m is None:
        raise InputError("attention", f"must be {form}; got {_short(value)}")
    try:
        name = normalize_backend(m.group("name"))
    except ValueError:
        raise InputError("attention", f"must be {form}; got {_short(value)}") from None
    if m.group("first") is None:
        return name
    if name != "sage":
        raise InputError("attention", f"only sage takes full-precision steps (:F,L); got {_short(value)}")
    first = int(m.group("first"))
    last = first if m.group("last") is None else int(m.group("last"))
    limit = int(LIMITS.sampling_steps.hi)
    if first > limit or last > limit:
        raise InputError("attention", f"F and L must be at most {limit} steps; got {_short(value)}")
    return "sage" if first == last == 0 else f"sage:{first},{last}"


def _split_attention(value: str) -> tuple[str, tuple[int, int]]:
    """A checked ``attention`` -> (backend name, (first, last) full-precision steps)."""
    name, _, steps = value.partition(":")
    if not steps:
        return name, (0, 0)
    first, last = steps.split(",")
    return name, (int(first), int(last))
_OVERLAP_LIMIT: Final = type(LIMITS.frame_num)(0, LIMITS.frame_num.hi - 1)
_COLOR_MATCH_LIMIT: Final = type(LIMITS.frame_num)(0.0, 1.0)
_MAX_PARENT_CHARS: Final[int] = 200


def _check_parent(spec: ModelSpec, value: Any) -> str | None:
    """``parent``: None, or the name of the continued clip (a result id or a file name; a path keeps
    only its file name: settings never name server folders) on a task that takes an image."""
    if value is None:
        return None
    if isinstance(value, Path):
        value = value.name
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_PARENT_CHARS:
        raise InputError("parent", f"must be the name of the continued clip (1 to {_MAX_PARENT_CHARS} characters); "
                                   f"got {_short(value)}")
    if spec.image_input == "none":
        raise InputError("parent", f"{spec.task} is text-to-video only: continue with i2v-A14B or ti2v-5B")
    return Path(value.strip().replace("\\", "/")).name or value.strip()


def _check_continuation(
    parent: str | None, frames: int, overlap: Any, color_match: Any, reference: Any
) -> tuple[int, float, Any]:
    """(overlap, color_match, color_reference) of a request; defaults: 1 / 0.5 when continuing, else 0."""

    if overlap is None:
        overlap = min(DEFAULT_OVERLAP, frames - 1) if parent is not None else 0
    overlap_v = _check_int("overlap", overlap, _OVERLAP_LIMIT)
    if overlap_v and parent is None:
        raise InputError("overlap", "applies to a continuation only (a clip with a parent); use 0")
    if overlap_v > frames - 1:
        raise InputError("overlap", f"must be below frame_num ({frames}): at most {frames - 1}; got {overlap_v}")
    if reference is not None:
        _check_reference(reference)
    if color_match is None:
        color_match = DEFAULT_COLOR_MATCH if reference is not None else 0.0
    color_v = _check_float("color_match", color_match, _COLOR_MATCH_LIMIT, " (0 off, 1 the parent's colours)")
    if color_v and reference is None:
        raise InputError("color_match", "needs the parent's frames as color_reference (continue from a video); use 0")
    return overlap_v, color_v, reference


def _check_reference(value: Any) -> None:
    """``color_reference``: a finite float tensor ``(3, F, H, W)`` or ``(3, H, W)``."""
    import torch

    ok = isinstance(value, torch.Tensor) and value.is_floating_point() and value.ndim in (3, 4) and value.shape[0] == 3
    if not ok or value.numel() == 0 or not bool(torch.isfinite(value).all()):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise InputError("color_reference", f"must be a finite float tensor (3, F, H, W) or (3, H, W) in [-1, 1]; got {shape}")


def _check_schedule(value: Any) -> str:
    if value not in SCHEDULES:
        raise InputError("schedule", f"must be one of {', '.join(SCHEDULES)}; got {_short(value)}")
    return str(value)


_MAX_PROMPT_FIELDS = 64


def _prompt_field_ok(v: Any, depth: int = 0) -> bool:
    if isinstance(v, str):
        return len(v) <= LIMITS.prompt_chars
    if v is None or isinstance(v, (bool, int, float)):
        return True
    if isinstance(v, list):
        return len(v) <= _MAX_PROMPT_FIELDS and all(isinstance(x, str) and len(x) <= LIMITS.prompt_chars for x in v)
    if isinstance(v, Mapping) and depth == 0:  # one nested level: e.g. aesthetics {group: term}
        return len(v) <= _MAX_PROMPT_FIELDS and all(
            isinstance(k, str) and len(k) <= 64 and _prompt_field_ok(x, 1) for k, x in v.items()
        )
    return False


def _check_prompt_fields(value: Any) -> dict[str, Any] | None:
    """Named values: text, numbers, booleans, lists of text, or one level of such mappings (bounded)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or len(value) > _MAX_PROMPT_FIELDS:
        raise InputError("prompt_fields", f"must be a mapping of at most {_MAX_PROMPT_FIELDS} named values; got {_short(value)}")
    for key, v in value.items():
        if not (isinstance(key, str) and len(key) <= 64 and _prompt_field_ok(v)):
            raise InputError(
                "prompt_fields", f"entry {_short(key)} must be short text, a number, true/false, a list of text or a mapping of them"
            )
    return {k: (dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, list) else v) for k, v in value.items()}


# The per-field checks of the typed settings (field -> check(spec, value, policy) -> typed value).
_CHECKS: Final[dict[str, Any]] = {
    "prompt": lambda spec, v, p: _check_text("prompt", v, allow_none=False),
    "negative_prompt": lambda spec, v, p: _check_text("negative_prompt", v, allow_none=True),
    "size": lambda spec, v, p: _check_size(spec, parse_size(v), p),
    "frame_num": lambda spec, v, p: _check_frames(spec, v),
    "fps": lambda spec, v, p: _check_int("fps", v, LIMITS.fps),
    "sampling_steps": lambda spec, v, p: _check_int("sampling_steps", v, LIMITS.sampling_steps),
    "shift": lambda spec, v, p: _check_float("shift", v, LIMITS.shift, f" (official: {spec.sample_shift:g})"),
    "guide_scale": lambda spec, v, p: _check_guidance(spec, v),
    "sample_solver": lambda spec, v, p: _check_solver(v),
    "seed": lambda spec, v, p: _check_seed(v),
    "prompt_fields": lambda spec, v, p: _check_prompt_fields(v),
    "loras": _check_loras,
    "phases": lambda spec, v, p: _check_phases(spec, v, None),
    "schedule": lambda spec, v, p: _check_schedule(v),
    "last_image": lambda spec, v, p: _check_last_image(spec, v),
    "attention": lambda spec, v, p: _check_attention(v),
    "cache": lambda spec, v, p: parse_cache(spec.task, v),
    "parent": lambda spec, v, p: _check_parent(spec, v),
    "overlap": lambda spec, v, p: _check_int("overlap", v, _OVERLAP_LIMIT),
    "color_match": lambda spec, v, p: _check_float("color_match", v, _COLOR_MATCH_LIMIT, " (0 off, 1 the parent's colours)"),
}


def check_fields(
    task: str, settings: Mapping[str, Any], policy: RequestPolicy | None = None
) -> tuple[dict[str, Any], list[InputError]]:
    """Checks each typed setting on its own -> (the valid ones, one error per invalid one).

    For restoring a form or a link: every bad field is reported by name and the rest is kept.
    """
    spec = get_spec(task)
    policy = policy or RequestPolicy()
    good: dict[str, Any] = {}
    errors: list[InputError] = []
    for name, value in settings.items():
        check = _CHECKS.get(name)
        if check is None:
            good[name] = value
            continue
        try:
            checked = check(spec, value, policy)
        except InputError as e:
            errors.append(e)
        else:
            good[name] = value if name == "size" else checked
    return good, errors


def make_request(
    task: str,
    prompt: Any = "",
    *,
    image: Any = None,
    negative_prompt: Any = None,
    size: Any = None,
    frame_num: Any = None,
    fps: Any = None,
    sampling_steps: Any = None,
    shift: Any = None,
    guide_scale: Any = None,
    sample_solver: Any = None,
    seed: Any = -1,
    any_size: bool | None = None,
    policy: RequestPolicy | None = None,
    prompt_fields: Any = None,
    loras: Any = None,
    phases: Any = None,
    schedule: Any = None,
    last_image: Any = None,
    attention: Any = None,
    cache: Any = None,
    parent: Any = None,
    overlap: Any = None,
    color_match: Any = None,
    color_reference: Any = None,
) -> GenerationRequest:
    """Validates typed settings for ``task`` and resolves defaults and the seed; raises ``InputError``.

    Defaults come from the task's ``ModelSpec``. ``any_size`` (a shortcut for
    ``RequestPolicy(any_size=...)``) overrides the policy's flag. An image path is opened and
    decoded once here (no model runs). ``last_image`` (a path or a PIL image, like ``image``) asks
    I2V-A14B for a first-last frame video; any other task, or no ``image``, is an ``InputError``
    on ``last_image``; it needs ``frame_num >= 5`` (distinct first and last latent frames).
    ``attention`` (default ``"auto"``) names the attention backend (``_check_attention``); whether it
    can run on the pipeline's device is checked by the pipeline.
    ``cache``: None/``"off"``, a preset name, text or a mapping (``wan.stepcache.parse_cache``).
    ``parent``/``overlap``/``color_match``/``color_reference``: a continuation (see the class doc;
    ``InputError`` on the field: a parent without image or on a text-only task, an overlap that is not
    below ``frame_num`` or without parent, a colour match outside 0..1 or without reference).
    """
    try:
        spec = get_spec(task)
    except ValueError as e:
        raise InputError("task", str(e)) from None
    policy = policy or RequestPolicy()
    if any_size is not None:
        policy = replace(policy, any_size=bool(any_size))
    prompt = _check_text("prompt", prompt, allow_none=False)
    negative = _check_text("negative_prompt", negative_prompt, allow_none=True)
    mode = spec.image_input
    if last_image is not None:
        _check_last_image(spec, last_image)  # task, then readable
        if image is None:
            raise InputError("last_image", "is the last frame of a first-last frame video: give image (the first frame) too")
    parent_v = _check_parent(spec, parent)
    if parent_v is not None and image is None:
        raise InputError("parent", "a continuation starts from its parent's last frame: give it as image "
                                   "(wan.continuation.continue_request does)")
    if image is not None and mode == "none":
        raise InputError("image", f"{spec.task} is text-to-video only and takes no image (use i2v-A14B or ti2v-5B)")
    if image is None and mode == "required":
        raise InputError(
            "image", f"{spec.task} needs an input image: upload one (PNG, JPEG or WebP), or pass a PIL image or a path"
        )
    if image is None and not prompt.strip():
        raise InputError(
            "prompt", "is empty; it must not be empty for a text-only generation: type one (or build it with a prompt formula)"
        )
    size_wh = _check_size(spec, spec.default_size if size is None else parse_size(size), policy)
    frames = _check_frames(spec, spec.frame_num if frame_num is None else frame_num)
    if last_image is not None and frames < 5:
        raise InputError("last_image", f"needs frame_num >= 5 (first and last frame in different latent frames); got {frames}")
    fps_v = _CHECKS["fps"](spec, spec.sample_fps if fps is None else fps, policy)
    if sampling_steps is None and isinstance(phases, (list, tuple)) and phases:
        try:  # phases alone set the step count
            sampling_steps = sum(p.steps if isinstance(p, Phase) else p["steps"] if isinstance(p, Mapping) else p[0] for p in phases)
        except (KeyError, IndexError, TypeError):
            pass  # reported by the phase check below
    steps = _CHECKS["sampling_steps"](spec, spec.sample_steps if sampling_steps is None else sampling_steps, policy)
    shift_v = _CHECKS["shift"](spec, spec.sample_shift if shift is None else shift, policy)
    solver = _check_solver("unipc" if sample_solver is None else sample_solver)
    guide = _check_guidance(spec, spec.guide_scale if guide_scale is None else guide_scale)
    seed_v = _check_seed(seed)
    fields_v = _check_prompt_fields(prompt_fields)
    phases_v = _check_phases(spec, phases, steps)
    schedule_v = _check_schedule("official" if schedule is None else schedule)
    loras_v = _check_loras(spec, loras, policy)
    attention_v = _check_attention("auto" if attention is None else attention)
    cache_v = parse_cache(spec.task, cache)
    overlap_v, color_v, reference_v = _check_continuation(parent_v, frames, overlap, color_match, color_reference)
    output = size_wh if image is None else image_output_size(spec, _image_size(image), size_wh)
    return GenerationRequest(
        task=spec.task,
        prompt=prompt,
        negative_prompt=negative,
        size=size_wh,
        frame_num=frames,
        fps=fps_v,
        sampling_steps=steps,
        shift=shift_v,
        guide_scale=guide,
        sample_solver=solver,
        seed=resolve_seed(seed_v),
        image=image,
        any_size=policy.any_size,
        output_size=output,
        prompt_fields=fields_v,
        loras=loras_v,
        phases=phases_v,
        schedule=schedule_v,
        last_image=last_image,
        attention=attention_v,
        cache=cache_v,
        parent=parent_v,
        overlap=overlap_v,
        color_match=color_v,
        color_reference=reference_v,
    )


# ------------------------------------------------------------------- text-ish values


def _text_number(name: str, raw: Any, *, integer: bool) -> int | float:
    """A number from a form/URL/JSON value: ints, floats, numeric strings; never bools, NaN or inf."""
    what = "a whole number" if integer else "a number"
    if isinstance(raw, bool) or raw is None:
        raise InputError(name, f"must be {what}; got {_short(raw)}")
    if isinstance(raw, str):
        text = raw.strip()
        if len(text) > 40:
            raise InputError(name, f"must be {what}; got a {len(text)}-character text")
        try:
            value: float | int = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
        except ValueError:
            raise InputError(name, f"must be {what}; got {_short(raw)}") from None
    elif _is_number(raw):
        value = raw
    else:
        raise InputError(name, f"must be {what}; got {type(raw).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(name, f"must be a finite number; got {_short(raw)}")
    if integer:
        if isinstance(value, float):
            if value != int(value):
                raise InputError(name, f"must be a whole number; got {_short(raw)}")
            value = int(value)
        return int(value)
    return float(value)


def _guidance_value(raw: Any) -> Any:
    if isinstance(raw, Mapping):
        return {str(k): _text_number("guide_scale", v, integer=False) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return tuple(_text_number("guide_scale", v, integer=False) for v in raw)
    return _text_number("guide_scale", raw, integer=False)


_PARSERS: Final[dict[str, Any]] = {
    "prompt": lambda v: _check_text("prompt", v, allow_none=True),
    "negative_prompt": lambda v: _check_text("negative_prompt", v, allow_none=True),
    "size": lambda v: parse_size(v if isinstance(v, str) else tuple(v) if isinstance(v, (list, tuple)) else v),
    "frame_num": lambda v: _text_number("frame_num", v, integer=True),
    "fps": lambda v: _text_number("fps", v, integer=True),
    "sampling_steps": lambda v: _text_number("sampling_steps", v, integer=True),
    "shift": lambda v: _text_number("shift", v, integer=False),
    "guide_scale": _guidance_value,
    "sample_solver": lambda v: _solver(v),
    "seed": lambda v: _text_number("seed", v, integer=True),
    "loras": lambda v: _lora_values(v),
    "phases": lambda v: _json_list("phases", v),
    "schedule": lambda v: v,
    "attention": lambda v: v,
    "cache": lambda v: v,  # text, JSON text or a mapping: parse_cache reads every form (make_request, check_fields)
    "parent": lambda v: None if v in (None, "") else v,
    "overlap": lambda v: _text_number("overlap", v, integer=True),
    "color_match": lambda v: _text_number("color_match", v, integer=False),
}


def _json_list(name: str, raw: Any) -> Any:
    if isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw) if raw.strip() else None
        except ValueError:
            raise InputError(name, f"must be a JSON list; got {_short(raw)}") from None
    return raw


_LORA_TEXT = re.compile(r"^(?P<path>.+?)(?::(?P<s>[-+]?[\d.]+(?:,[-+]?[\d.]+)?))?$")


def lora_from_text(task: str, text: str) -> tuple[str, float | dict[str, float]]:
    """``"PATH"``, ``"PATH:0.8"`` or ``"PATH:HIGH,LOW"`` (A14B: high-noise, then low-noise strength)."""
    m = _LORA_TEXT.match(text.strip())
    if m is None:
        raise InputError("loras", f"write a LoRA as PATH, PATH:STRENGTH or PATH:HIGH,LOW; got {_short(text)}")
    if m.group("s") is None:
        return m.group("path"), 1.0
    parts = [float(x) for x in m.group("s").split(",")]
    if len(parts) == 1:
        return m.group("path"), parts[0]
    experts = get_spec(task).experts
    if len(experts) != 2:
        raise InputError("loras", f"{get_spec(task).task} has one model: give one strength; got {_short(text)}")
    return m.group("path"), {"high_noise": parts[0], "low_noise": parts[1]}


def _lora_values(raw: Any) -> Any:
    raw = _json_list("loras", raw) if isinstance(raw, str) and raw.strip().startswith("[") else raw
    if raw is None or raw == "":
        return None
    return list(raw) if isinstance(raw, (list, tuple)) else [raw]


def _solver(raw: Any) -> str:
    if not isinstance(raw, str) or raw not in SOLVERS:
        raise InputError("sample_solver", f"must be one of {', '.join(SOLVERS)}; got {_short(raw)}")
    return raw


def parse_values(task: str, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[InputError]]:
    """Typed ``make_request`` keyword arguments from text-ish ``values``, and one error per bad field.

    Accepts the request field names, the short link names (``URL_ALIASES``), flat per-expert guidance
    (``guide_scale_high``/``guide_scale_low``), ``randomize_seed`` (true -> seed -1) and the version-1
    settings shape (``width``/``height``; ``guide_scale`` as ``[low_noise, high_noise]``). Unknown
    keys are ignored (settings carry app metadata such as ``id`` and ``created``). Ranges are not
    checked here: ``make_request`` does that.
    """
    spec = get_spec(task)
    out: dict[str, Any] = {}
    errors: list[InputError] = []
    names = {URL_ALIASES.get(k, k): v for k, v in values.items()}
    if "size" not in names and "width" in names and "height" in names:  # settings version 1
        names["size"] = (names["width"], names["height"])
    for name, parse in _PARSERS.items():
        if name in names and not (name == "seed" and names[name] in (None, "")):
            try:
                out[name] = parse(names[name])
            except InputError as e:
                errors.append(e)
    flat = {expert: names[key] for key, expert in _FLAT_GUIDE.items() if key in names}
    if flat and spec.moe:
        try:
            parsed = {e: _text_number(f"guide_scale_{e.split('_')[0]}", v, integer=False) for e, v in flat.items()}
        except InputError as e:
            errors.append(e)
        else:
            base = out.get("guide_scale", spec.guide_scale)
            base = _check_guidance(spec, base) if not isinstance(base, Mapping) or set(base) != set(spec.experts) else base
            out["guide_scale"] = {**base, **parsed}
    elif flat:
        errors.append(InputError("guide_scale", f"{spec.task} has a single model: use guide_scale, not {', '.join(_FLAT_GUIDE)}"))
    if names.get("randomize_seed") in (True, "true", "True", "1", 1):
        out["seed"] = -1
    if out.get("loras"):
        try:
            out["loras"] = [lora_from_text(task, e) if isinstance(e, str) else e for e in out["loras"]]
        except InputError as e:
            errors.append(e)
            del out["loras"]
    if names.get("prompt_fields") is not None:
        out["prompt_fields"] = names["prompt_fields"]
    if "any_size" in names and isinstance(names["any_size"], bool):
        out["any_size"] = names["any_size"]
    return out, errors


def request_from_values(
    task: str, values: Mapping[str, Any], *, image: Any = None, last_image: Any = None,
    policy: RequestPolicy | None = None, color_reference: Any = None,
) -> GenerationRequest:
    """``parse_values`` then ``make_request``; raises the first ``InputError`` (field named).

    Images come as ``image``/``last_image`` objects and the colour reference as ``color_reference``,
    never from ``values`` (settings only name them)."""
    kwargs, errors = parse_values(task, values)
    if errors:
        raise errors[0]
    kwargs.setdefault("prompt", "")
    if "any_size" in kwargs and policy is not None:
        kwargs.pop("any_size")
    return make_request(task, image=image, last_image=last_image, policy=policy, color_reference=color_reference, **kwargs)


def flat_values(task: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Typed settings (``parse_values`` output or a request's fields) -> the flat form/link values:
    ``size`` as ``"W*H"``, guidance as ``guide_scale_high``/``guide_scale_low`` (A14B) or ``guide_scale``."""
    spec = get_spec(task)
    out: dict[str, Any] = {}
    for name in ("prompt", "negative_prompt", "frame_num", "fps", "sampling_steps", "shift", "sample_solver", "seed",
                 "schedule", "attention"):  # fmt: skip
        if name in kwargs:
            out[name] = kwargs[name]
    if kwargs.get("loras") is not None:
        out["loras"] = [_lora_json(x) if isinstance(x, LoraSpec) else x for x in kwargs["loras"]]
    if kwargs.get("phases") is not None:
        out["phases"] = [x.to_json() if isinstance(x, Phase) else x for x in kwargs["phases"]]
    if "cache" in kwargs:
        try:
            out["cache"] = cache_text(spec.task, parse_cache(spec.task, kwargs["cache"]))
        except InputError:
            pass
    if "size" in kwargs:
        out["size"] = format_size(*kwargs["size"])
    if "guide_scale" in kwargs:
        try:
            guide = _check_guidance(spec, kwargs["guide_scale"])
        except InputError:
            guide = {}
        if spec.moe:
            out.update({key: guide[expert] for key, expert in _FLAT_GUIDE.items() if expert in guide})
        elif guide:
            out["guide_scale"] = guide["dense"]
    return out
