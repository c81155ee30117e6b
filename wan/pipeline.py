"""One generation pipeline for every Wan 2.2 task, as a chain of small stages.

    plan_generation   validate and resolve every input (no heavy work)      -> GenerationPlan
    encode_text       umT5 on prompt and negative prompt, zero-padded        -> 2 x [1, text_len, text_dim]
    prepare_latents   seeded noise + image conditioning                      -> LatentInputs
    denoise           per-step expert choice (MoE), CFG, solver, callback    -> latents [1, z, F_lat, h, w]
    decode            VAE decode                                             -> video (3, F, H, W) in [-1, 1]

Conditioning, as in the official release (``wan/image2video.py``, ``wan/textimage2video.py``):

* T2V-A14B: none. I2V-A14B: the image, bicubic-resized (aspect kept up to rounding) to the size whose
  area is ``W*H`` of the requested size and whose sides are multiples of 16, is VAE-encoded as the
  first frame of an otherwise black ``frame_num`` video; ``y = [mask (4 ch, 1 on latent frame 0),
  image latent (16 ch)]`` is concatenated to the 16 noise channels (36 = the DiT's ``in_dim``).
* TI2V-5B with an image: LANCZOS resize + center crop to the multiple-of-32 size of area <= ``W*H``
  closest in aspect; its one-frame latent replaces latent frame 0 before and after every solver step,
  and the tokens of that frame get timestep 0. Without an image: plain T2V at exactly ``size``.

Mixture of experts (A14B): the high-noise expert runs while the integer timestep ``t >= boundary *
1000`` (875 T2V / 900 I2V), then the low-noise expert; ``guide_scale = (low, high)``. With
``offload=True`` (default on CUDA) the experts' weights live on the CPU (pinned on CUDA) and only the
active expert is copied to the compute device; timesteps only decrease, so one switch per run.

Noise: ``torch.randn((z, F_lat, h, w), float32)`` from a CPU ``torch.Generator`` seeded with ``seed``
(the official code draws the same way on a CUDA generator; a CPU generator makes a seed reproduce on
any device). CFG is two separate forward passes per step: ``uncond + g * (cond - uncond)``.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .schedulers import SOLVERS, make_scheduler

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .configs import ModelSpec
    from .loading import Components

__all__ = [
    "MAX_SEED",
    "MAX_STEPS",
    "Callback",
    "ExpertOffloader",
    "GenerationCancelled",
    "GenerationError",
    "GenerationPlan",
    "LatentInputs",
    "RunRecord",
    "WanVideoPipeline",
    "best_output_size",
    "i2v_a14b_output_size",
    "load_pipeline",
    "parse_size",
    "plan_generation",
]

MAX_STEPS = 200
MAX_SEED = 2**63 - 1
MAX_LATENT_FRAMES = 1024  # rows of the DiT's temporal RoPE table (official rope_params(1024, ...))

# callback(step 1-based, total steps, expert name, latents [1, z, F_lat, h, w]) -> False to cancel
Callback = Callable[[int, int, str, Tensor], "bool | None"]


class GenerationError(ValueError):
    """An input to ``generate`` is invalid. ``field`` names the argument; the message says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class GenerationCancelled(Exception):
    """The callback asked to stop (returned False or raised this); no video was produced."""


# ----------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class GenerationPlan:
    """Every input of one run, validated and resolved (defaults filled in, seed drawn, sizes final).

    ``width``/``height`` are the output video size; ``guide_scale`` is ``(low_noise, high_noise)``
    (both equal for the dense 5B model); ``latent_shape`` is the noise shape ``(z, F_lat, h, w)``.
    ``image`` is None or an RGB PIL image: for TI2V-5B already LANCZOS-resized and center-cropped to
    ``(width, height)``; for I2V-A14B the original picture, bicubic-stretched to ``(width, height)`` as a
    tensor in ``prepare_latents`` (where the official code does it).
    """

    task: str
    prompt: str
    negative_prompt: str
    image: Any  # PIL.Image.Image | None
    width: int
    height: int
    frame_num: int
    sampling_steps: int
    shift: float
    guide_scale: tuple[float, float]
    sample_solver: str
    seed: int
    latent_shape: tuple[int, int, int, int]

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _fmt_size(size: tuple[int, int]) -> str:
    return f"{size[0]}*{size[1]}"


_SIZE_RE = re.compile(r"\s*(\d+)\s*[*xX]\s*(\d+)\s*", re.ASCII)


def parse_size(size: Any) -> tuple[int, int]:
    """``(W, H)`` from a pair of positive ints or an official ``"W*H"`` string (``"WxH"`` also accepted).

    Raises ``GenerationError(field="size")`` naming the accepted forms.
    """
    if isinstance(size, str):
        m = _SIZE_RE.fullmatch(size)
        if m is not None and int(m.group(1)) > 0 and int(m.group(2)) > 0:
            return int(m.group(1)), int(m.group(2))
        raise GenerationError(
            "size", f"must be (width, height) or a 'W*H' string of two positive integers such as '1280*720'; got {size!r}"
        )
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(v) for v in size):
        w, h = int(size[0]), int(size[1])
        if w > 0 and h > 0:
            return w, h
    raise GenerationError("size", f"must be (width, height) with two positive integers; got {size!r}")


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
    ``lat_h = round(sqrt(max_area * h/w) // stride // patch * patch)`` (same for ``lat_w`` with w/h),
    then ``(lat_w * stride, lat_h * stride)``. The aspect ratio is kept up to that rounding."""
    aspect = height / width
    lat_h = round(math.sqrt(max_area * aspect) // vae_stride // patch * patch)
    lat_w = round(math.sqrt(max_area / aspect) // vae_stride // patch * patch)
    return int(lat_w * vae_stride), int(lat_h * vae_stride)


def _load_image(image: Any) -> PILImage.Image:
    from PIL import Image

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise GenerationError("image", f"file not found: {str(path)!r}")
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except Image.DecompressionBombError as e:  # not an OSError; raised above 2 * MAX_IMAGE_PIXELS
            raise GenerationError(
                "image", f"{path.name!r} is too large to open safely: {e} (the size limit is PIL.Image.MAX_IMAGE_PIXELS)"
            ) from e
        except (OSError, ValueError) as e:  # unknown format, truncated data, bad header values
            raise GenerationError("image", f"cannot read {path.name!r} as an image ({e})") from e
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise GenerationError("image", f"is empty ({image.width}x{image.height})")
        return image.convert("RGB")
    raise GenerationError("image", f"must be a PIL image or a path to an image file; got {type(image).__name__}")


def _resize_for_task(
    spec: ModelSpec, image: PILImage.Image, max_area: int
) -> tuple[PILImage.Image, tuple[int, int]]:
    """Official image preparation -> (image, output ``(w, h)``). TI2V-5B: the image resized and cropped to
    the output size; I2V-A14B: the image unchanged (it is resized later, as a tensor)."""
    from PIL import Image

    stride, patch = spec.vae_stride[1], spec.patch_size[1]
    iw, ih = image.width, image.height
    if spec.moe:  # I2V-A14B: bicubic stretch happens on the tensor (see _image_tensor); size only here
        ow, oh = i2v_a14b_output_size(iw, ih, max_area, stride, patch)
        if ow < stride * patch or oh < stride * patch:
            raise GenerationError(
                "image", f"aspect ratio {iw}x{ih} is too extreme for an output area of {max_area} pixels"
            )
        return image, (ow, oh)  # resized later, as a tensor, with the official bicubic interpolation
    try:
        ow, oh = best_output_size(iw, ih, stride * patch, stride * patch, max_area)
    except ValueError as e:
        raise GenerationError("image", f"aspect ratio {iw}x{ih} cannot fit the output area: {e}") from e
    scale = max(ow / iw, oh / ih)
    resized = image.resize((round(iw * scale), round(ih * scale)), Image.LANCZOS)
    left, top = (resized.width - ow) // 2, (resized.height - oh) // 2
    return resized.crop((left, top, left + ow, top + oh)), (ow, oh)


def _image_tensor(image: PILImage.Image) -> Tensor:
    """RGB PIL image -> float32 ``[3, H, W]`` in [-1, 1] (``x / 255``, then ``(x - 0.5) / 0.5``)."""
    arr = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
    x = arr.permute(2, 0, 1).to(torch.float32).div(255)
    return x.sub(0.5).div(0.5)


def plan_generation(
    spec: ModelSpec,
    prompt: Any,
    *,
    image: Any = None,
    negative_prompt: Any = None,
    size: Any = None,
    frame_num: Any = None,
    sampling_steps: Any = None,
    shift: Any = None,
    guide_scale: Any = None,
    sample_solver: Any = "unipc",
    seed: Any = -1,
    any_size: bool = False,
) -> GenerationPlan:
    """Validates every input against ``spec`` and resolves defaults; raises ``GenerationError``.

    Cheap: no model runs here (an image path is opened and resized).
    """
    task = spec.task
    # -- text
    if not isinstance(prompt, str):
        raise GenerationError("prompt", f"must be a str; got {type(prompt).__name__}")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise GenerationError("negative_prompt", f"must be a str or None; got {type(negative_prompt).__name__}")
    negative = negative_prompt if negative_prompt else spec.negative_prompt  # official: "" -> default
    # -- image presence
    mode = spec.image_input
    if image is not None and mode == "none":
        raise GenerationError("image", f"{task} is text-to-video only and takes no image (use i2v-A14B or ti2v-5B)")
    if image is None and mode == "required":
        raise GenerationError("image", f"{task} needs an input image (a PIL image or a path)")
    if image is None and not prompt.strip():
        raise GenerationError("prompt", "must not be empty for a text-only generation")
    # -- size
    size_wh = spec.default_size if size is None else parse_size(size)
    multiple = spec.size_multiple
    if any_size:
        bad = [f"{name}={v}" for name, v in zip(("width", "height"), size_wh, strict=True) if v < multiple or v % multiple]
        if bad:
            raise GenerationError(
                "size", f"{', '.join(bad)}: with any_size, width and height must be positive multiples of {multiple} for {task}"
            )
    elif size_wh not in spec.sizes:
        allowed = ", ".join(_fmt_size(s) for s in spec.sizes)
        raise GenerationError(
            "size",
            f"{_fmt_size(size_wh)} is not supported by {task}; allowed (width*height): {allowed} "
            f"(or any multiple of {multiple} with any_size=True)",
        )
    # -- frames
    frames = spec.frame_num if frame_num is None else frame_num
    if not _is_int(frames) or frames < 1 or frames % 4 != 1:
        raise GenerationError("frame_num", f"must be an integer 4n+1 (1, 5, 9, ..., 81, ..., 121); got {frames!r}")
    frames = int(frames)
    f_lat = (frames - 1) // spec.vae_stride[0] + 1
    if f_lat > MAX_LATENT_FRAMES:
        raise GenerationError("frame_num", f"at most {4 * (MAX_LATENT_FRAMES - 1) + 1} frames; got {frames}")
    # -- sampler
    steps = spec.sample_steps if sampling_steps is None else sampling_steps
    if not _is_int(steps) or not 1 <= steps <= MAX_STEPS:
        raise GenerationError("sampling_steps", f"must be an integer from 1 to {MAX_STEPS}; got {steps!r}")
    shift_v = spec.sample_shift if shift is None else shift
    if not _is_number(shift_v) or not math.isfinite(float(shift_v)) or float(shift_v) <= 0:
        raise GenerationError("shift", f"must be a positive finite number (official: {spec.sample_shift}); got {shift_v!r}")
    if sample_solver not in SOLVERS:
        raise GenerationError("sample_solver", f"must be one of {', '.join(SOLVERS)}; got {sample_solver!r}")
    guide = _resolve_guide_scale(spec, guide_scale)
    # -- seed
    if not _is_int(seed) or not (seed == -1 or 0 <= seed <= MAX_SEED):
        raise GenerationError("seed", f"must be -1 (random) or an integer from 0 to {MAX_SEED}; got {seed!r}")
    seed_v = random.randint(0, MAX_SEED) if seed == -1 else int(seed)
    # -- image and final size
    pil = None
    out_w, out_h = size_wh
    if image is not None:
        pil, (out_w, out_h) = _resize_for_task(spec, _load_image(image), size_wh[0] * size_wh[1])
    stride = spec.vae_stride
    latent_shape = (spec.z_dim, f_lat, out_h // stride[1], out_w // stride[2])
    return GenerationPlan(
        task=task,
        prompt=prompt,
        negative_prompt=negative,
        image=pil,
        width=out_w,
        height=out_h,
        frame_num=frames,
        sampling_steps=int(steps),
        shift=float(shift_v),
        guide_scale=guide,
        sample_solver=sample_solver,
        seed=seed_v,
        latent_shape=latent_shape,
    )


def _resolve_guide_scale(spec: ModelSpec, guide_scale: Any) -> tuple[float, float]:
    value = spec.guide_scale if guide_scale is None else guide_scale
    if isinstance(value, (tuple, list)):
        if not spec.moe:
            raise GenerationError("guide_scale", f"{spec.task} has a single model: give one number >= 0; got {value!r}")
        if len(value) != 2:
            raise GenerationError("guide_scale", f"must be a number or a (low_noise, high_noise) pair; got {value!r}")
        pair = tuple(value)
    else:
        pair = (value, value)
    for v in pair:
        if not _is_number(v) or not math.isfinite(float(v)) or float(v) < 0:
            form = "a number >= 0 or a (low_noise, high_noise) pair of them" if spec.moe else "a number >= 0"
            raise GenerationError("guide_scale", f"must be {form}; got {value!r}")
    return (float(pair[0]), float(pair[1]))


# ------------------------------------------------------------------------------ expert offload


class ExpertOffloader:
    """Places the DiT experts on the compute device, all at once or one at a time.

    ``offload=False``: every expert is moved to ``device`` once and stays there.
    ``offload=True``: each expert's weights stay on the CPU (page-locked when ``device`` is CUDA, so the
    copies are fast and asynchronous) as the master copy; ``activate(name)`` copies that expert to the
    device and drops the device copy of the previously active one (its CPU master is still there, so
    nothing is copied back). ``release()`` drops every device copy. Counters: ``loads`` (expert copies
    to the device) and ``switches`` (changes of active expert), both since construction.
    """

    def __init__(self, experts: Mapping[str, nn.Module], device: torch.device, *, offload: bool) -> None:
        if not experts:
            raise ValueError("experts must not be empty")
        self.experts = dict(experts)
        self.device = torch.device(device)
        self.offload = bool(offload)
        self.loads = 0
        self.switches = 0
        self._active: str | None = None
        self._masters: dict[str, dict[str, Tensor]] = {}
        if not self.offload:
            for model in self.experts.values():
                model.to(self.device)
            return
        pin = self.device.type == "cuda" and torch.cuda.is_available()
        for name, model in self.experts.items():
            masters: dict[str, Tensor] = {}
            for key, tensor in _named_tensors(model):
                cpu = tensor.data.to("cpu")
                if pin and not cpu.is_pinned():
                    cpu = cpu.pin_memory()
                tensor.data = cpu
                masters[key] = cpu
            self._masters[name] = masters

    @property
    def resident(self) -> tuple[str, ...]:
        """Names of the experts whose weights are on the compute device now."""
        if not self.offload:
            return tuple(self.experts)
        return () if self._active is None else (self._active,)

    def placement(self) -> dict[str, torch.device]:
        """Device of each expert's weights (read from its parameters, not from bookkeeping)."""
        return {name: next(model.parameters()).device for name, model in self.experts.items()}

    def activate(self, name: str) -> nn.Module:
        """The expert ``name``, on the compute device (loading it and dropping the other if offloading)."""
        if name not in self.experts:
            raise KeyError(f"unknown expert {name!r}; have {sorted(self.experts)}")
        if self.offload and self._active != name:
            if self._active is not None:
                self._drop(self._active)
                self.switches += 1
            model = self.experts[name]
            for key, tensor in _named_tensors(model):
                tensor.data = self._masters[name][key].to(self.device, non_blocking=True)
            self._active = name
            self.loads += 1
        return self.experts[name]

    def release(self) -> None:
        """Drops the device copy of the active expert (offload mode); a no-op otherwise."""
        if self.offload and self._active is not None:
            self._drop(self._active)
            self._active = None

    def _drop(self, name: str) -> None:
        for key, tensor in _named_tensors(self.experts[name]):
            tensor.data = self._masters[name][key]


def _named_tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    out: list[tuple[str, Tensor]] = [(f"p:{k}", p) for k, p in model.named_parameters()]
    out += [(f"b:{k}", b) for k, b in model.named_buffers()]
    return out


# ------------------------------------------------------------------------------------ pipeline


@dataclass
class LatentInputs:
    """Output of ``prepare_latents`` (all on the compute device, float32).

    latents:     ``[1, z, F_lat, h, w]`` initial latents (noise; frame 0 = image latent for TI2V+image).
    y:           I2V-A14B: ``[1, 4 + z, F_lat, h, w]`` (mask, image-video latent), else None.
    first_frame: TI2V+image: ``[1, z, 1, h, w]`` image latent re-imposed on frame 0, else None.
    mask:        TI2V+image: ``[1, 1, F_lat, h, w]``, 0 on latent frame 0 and 1 elsewhere, else None.
    """

    latents: Tensor
    y: Tensor | None = None
    first_frame: Tensor | None = None
    mask: Tensor | None = None


@dataclass(frozen=True)
class RunRecord:
    """What the last ``generate`` did: the plan, the integer timesteps, the expert of each step, and
    how many expert copies to the device / expert switches it took."""

    plan: GenerationPlan
    timesteps: tuple[int, ...]
    experts: tuple[str, ...]
    loads: int
    switches: int
    completed: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class WanVideoPipeline:
    """Text/image-to-video for one task; build with ``load_pipeline``.

    ``device`` runs the DiT and the VAE; the text encoder runs on the CPU with ``t5_cpu`` and is
    otherwise moved to the device for encoding (and back when ``offload``). ``last_run`` describes
    the most recent run (seed used, timesteps, experts).
    """

    def __init__(
        self,
        components: Components,
        *,
        device: str | torch.device,
        offload: bool,
        t5_cpu: bool = False,
        any_size: bool = False,
    ) -> None:
        self.spec: ModelSpec = components.spec
        self.device = torch.device(device)
        self.offload = bool(offload)
        self.t5_cpu = bool(t5_cpu)
        self.any_size = bool(any_size)
        missing = [e for e in self.spec.experts if e not in components.experts]
        if missing:
            raise ValueError(f"{self.spec.task} needs experts {self.spec.experts}; missing {missing}")
        self.experts = ExpertOffloader(
            {name: components.experts[name].eval() for name in self.spec.experts}, self.device, offload=self.offload
        )
        self.vae = components.vae.to(self.device).eval()
        self.text_encoder = components.text_encoder
        text_device = "cpu" if (self.t5_cpu or self.offload) else self.device
        self.text_encoder.to(text_device)
        self.last_run: RunRecord | None = None

    # -- public

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the DiT weights (the text context is cast to it)."""
        model = next(iter(self.experts.experts.values()))
        return model.text_embedding[0].weight.dtype

    def plan(self, prompt: Any, **kwargs: Any) -> GenerationPlan:
        """``plan_generation`` for this pipeline's task (``any_size`` defaults to the pipeline's)."""
        if kwargs.get("any_size") is None:
            kwargs["any_size"] = self.any_size
        return plan_generation(self.spec, prompt, **kwargs)

    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        *,
        image: Any = None,
        negative_prompt: str | None = None,
        size: tuple[int, int] | str | None = None,
        frame_num: int | None = None,
        sampling_steps: int | None = None,
        shift: float | None = None,
        guide_scale: float | tuple[float, float] | None = None,
        sample_solver: str = "unipc",
        seed: int = -1,
        callback: Callback | None = None,
        any_size: bool | None = None,
    ) -> Tensor:
        """Generates one video -> float32 ``(3, frame_num, H, W)`` in [-1, 1] on the CPU.

        Defaults come from the task's ``ModelSpec``. ``size`` is ``(width, height)``; for image input it
        sets the output *area* and the image's aspect ratio sets the shape. ``guide_scale`` is a number
        or, for the A14B experts, ``(low_noise, high_noise)``. ``seed=-1`` draws one (see ``last_run``).
        Raises ``GenerationError`` (a ``ValueError``) for bad input before any model runs, and
        ``GenerationCancelled`` when ``callback`` returns False or raises it.
        """
        if callback is not None and not callable(callback):
            raise GenerationError("callback", f"must be callable or None; got {type(callback).__name__}")
        plan = self.plan(
            prompt,
            image=image,
            negative_prompt=negative_prompt,
            size=size,
            frame_num=frame_num,
            sampling_steps=sampling_steps,
            shift=shift,
            guide_scale=guide_scale,
            sample_solver=sample_solver,
            seed=seed,
            any_size=any_size,
        )
        context, context_null = self.encode_text(plan.prompt, plan.negative_prompt)
        inputs = self.prepare_latents(plan)
        latents = self.denoise(plan, inputs, context, context_null, callback)
        return self.decode(latents)

    # -- stages

    def encode_text(self, prompt: str, negative_prompt: str) -> tuple[Tensor, Tensor]:
        """-> ``(context, context_null)``, each ``[1, text_len, text_dim]`` zero-padded, on the device, DiT dtype."""
        from .modules.t5 import pad_context

        encoder = self.text_encoder
        move = not self.t5_cpu and encoder.device != self.device
        if move:
            encoder.to(self.device)
        try:
            cond, uncond = encoder.encode([prompt, negative_prompt])
        finally:
            if move and self.offload:
                encoder.to("cpu")
        text_len = self.spec.dit.text_len
        context = pad_context([cond], text_len).to(self.device, self.dtype)
        context_null = pad_context([uncond], text_len).to(self.device, self.dtype)
        return context, context_null

    def prepare_latents(self, plan: GenerationPlan) -> LatentInputs:
        """Seeded noise and the task's image conditioning (see the module docstring)."""
        generator = torch.Generator(device="cpu").manual_seed(plan.seed)
        noise = torch.randn(plan.latent_shape, dtype=torch.float32, generator=generator)
        latents = noise.unsqueeze(0).to(self.device)
        if plan.image is None:
            return LatentInputs(latents=latents)
        z_dim, f_lat, h_lat, w_lat = plan.latent_shape
        img = _image_tensor(plan.image)  # [3, H_img, W_img]
        if self.spec.moe:
            # I2V-A14B: bicubic stretch (CPU, official), then encode image + black frames as one video
            img = F.interpolate(img[None], size=(plan.height, plan.width), mode="bicubic")[0]
            video = torch.zeros(1, 3, plan.frame_num, plan.height, plan.width, dtype=torch.float32)
            video[0, :, 0] = img
            image_latent = self.vae.encode(video.to(self.device)).float()  # [1, z, F_lat, h, w]
            mask = torch.zeros(1, self.spec.vae_stride[0], f_lat, h_lat, w_lat, device=self.device)
            mask[:, :, 0] = 1.0  # the 4 sub-frames of latent frame 0 are the given image
            return LatentInputs(latents=latents, y=torch.cat([mask, image_latent], dim=1))
        # TI2V-5B: one-frame latent replaces latent frame 0
        first = self.vae.encode(img[None, :, None].to(self.device)).float()  # [1, z, 1, h, w]
        mask = torch.ones(1, 1, f_lat, h_lat, w_lat, device=self.device)
        mask[:, :, 0] = 0.0
        latents = (1.0 - mask) * first + mask * latents
        return LatentInputs(latents=latents, first_frame=first, mask=mask)

    def expert_for(self, timestep: int) -> str:
        """The expert that runs at integer timestep ``timestep``."""
        if not self.spec.moe:
            return "dense"
        boundary = self.spec.boundary_timestep
        assert boundary is not None
        return "high_noise" if timestep >= boundary else "low_noise"

    def denoise(
        self,
        plan: GenerationPlan,
        inputs: LatentInputs,
        context: Tensor,
        context_null: Tensor,
        callback: Callback | None = None,
    ) -> Tensor:
        """Runs the solver -> final latents ``[1, z, F_lat, h, w]`` float32 (frame 0 re-imposed for TI2V)."""
        scheduler = make_scheduler(plan.sample_solver, self.spec.num_train_timesteps)
        scheduler.set_timesteps(plan.sampling_steps, plan.shift)
        timesteps = [int(t) for t in scheduler.timesteps.tolist()]
        total = len(timesteps)
        latents = inputs.latents
        token_mask = None
        if inputs.mask is not None:
            p_h, p_w = self.spec.patch_size[1:]
            token_mask = inputs.mask[0, 0, :, ::p_h, ::p_w].flatten()[None]  # [1, L], 0 on frame-0 tokens
        used: list[str] = []
        loads0, switches0 = self.experts.loads, self.experts.switches
        completed = False
        contexts: tuple[Any, Any] = (context, context_null)
        contexts_of = ""  # expert whose text-side cache `contexts` holds ("" = raw tensors)
        try:
            for i, t in enumerate(timesteps):
                name = self.expert_for(t)
                model = self.experts.activate(name)
                if contexts_of != name and hasattr(model, "encode_context"):
                    # the text side of cross-attention is constant for the run: compute it once per expert
                    contexts = (model.encode_context(context), model.encode_context(context_null))
                    contexts_of = name
                low, high = plan.guide_scale
                scale = high if name == "high_noise" else low
                t_tensor = torch.tensor([t], dtype=torch.int64, device=self.device)
                t_model: Tensor = t_tensor if token_mask is None else token_mask * t_tensor
                velocity = self._guided_velocity(model, latents, t_model, contexts[0], contexts[1], inputs.y, scale)
                latents = scheduler.step(velocity, t, latents)
                if inputs.first_frame is not None and inputs.mask is not None:
                    latents = (1.0 - inputs.mask) * inputs.first_frame + inputs.mask * latents
                used.append(name)
                if callback is not None and callback(i + 1, total, name, latents) is False:
                    raise GenerationCancelled(f"cancelled by the callback after step {i + 1}/{total}")
            completed = True
        finally:
            if self.offload:
                self.experts.release()
            self.last_run = RunRecord(
                plan=plan,
                timesteps=tuple(timesteps),
                experts=tuple(used),
                loads=self.experts.loads - loads0,
                switches=self.experts.switches - switches0,
                completed=completed,
            )
        return latents

    @staticmethod
    def _guided_velocity(
        model: nn.Module,
        latents: Tensor,
        t: Tensor,
        context: Any,
        context_null: Any,
        y: Tensor | None,
        scale: float,
    ) -> Tensor:
        """Classifier-free guidance with two forward passes: ``uncond + scale * (cond - uncond)``.

        ``context``/``context_null`` are the padded embeddings, or the model's cached text side of them.

        ``scale == 1`` needs only the conditional pass, ``scale == 0`` only the unconditional one.
        """
        if scale == 1.0:
            return model(latents, t, context, y=y)
        uncond = model(latents, t, context_null, y=y)
        if scale == 0.0:
            return uncond
        cond = model(latents, t, context, y=y)
        return uncond + scale * (cond - uncond)

    def decode(self, latents: Tensor) -> Tensor:
        """Latents ``[1, z, F_lat, h, w]`` -> float32 video ``(3, F, H, W)`` in [-1, 1] on the CPU."""
        video = self.vae.decode(latents)
        return video[0].to("cpu", torch.float32)


# ------------------------------------------------------------------------------------- loading


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _floating_dtype(value: Any, name: str) -> torch.dtype:
    """``value`` (a dtype or its name, see ``loading.resolve_dtype``) as a floating ``torch.dtype``."""
    from .loading import resolve_dtype

    try:
        dtype: torch.dtype | None = resolve_dtype(value)
    except ValueError:
        dtype = None
    if dtype is None or not dtype.is_floating_point:
        raise ValueError(
            f"{name} must be a floating torch.dtype (torch.bfloat16, torch.float16, torch.float32) or its name "
            f"('bfloat16', 'float16', 'float32'); got {value!r}"
        )
    return dtype


def load_pipeline(
    task: str,
    ckpt_dir: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    offload: bool | None = None,
    *,
    t5_cpu: bool = False,
    t5_dtype: torch.dtype | str | None = None,
    any_size: bool = False,
) -> WanVideoPipeline:
    """Loads ``task`` from ``ckpt_dir`` (official or Diffusers layout) into a ``WanVideoPipeline``.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` (of the DiT weights) to bfloat16
    on CUDA and float32 on CPU; ``offload`` (one expert on the device at a time, text encoder back on
    the CPU after use) to True on CUDA, False on CPU. ``t5_cpu`` keeps the text encoder on the CPU.
    ``dtype``/``t5_dtype`` may be given as names (``"bfloat16"``, ``"fp16"``, ...). ``t5_dtype`` (of the
    umT5 weights) defaults to float32 when ``dtype`` is float32 and to bfloat16 otherwise (umT5
    overflows in float16; the official encoder is bf16). The DiT parameters that the forward computes
    in float32 anyway (``is_float32_parameter``) are kept in float32 whatever ``dtype`` is.
    ``any_size`` accepts any width/height that is a multiple of the task's ``size_multiple``.
    """
    from .configs import get_spec
    from .loading import load_components

    spec = get_spec(task)
    dev = _default_device() if device is None else torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    dtype = _floating_dtype(dtype, "dtype")
    if t5_dtype is None:
        t5_dtype = dtype if dtype == torch.float32 else torch.bfloat16
    t5_dtype = _floating_dtype(t5_dtype, "t5_dtype")
    if offload is None:
        offload = dev.type == "cuda"
    components = load_components(
        spec.task, ckpt_dir, dtype=dtype, device="cpu", t5_dtype=t5_dtype, keep_float32=True
    )
    return WanVideoPipeline(components, device=dev, offload=offload, t5_cpu=t5_cpu, any_size=any_size)
