"""Hugging Face ZeroGPU support: detection, the GPU-duration estimate, and the ``spaces.GPU`` wrapper.

On ZeroGPU the GPU is attached per call for a declared duration; the quota is checked against that
declared value, so it should be close to the real cost. Off ZeroGPU ``wrap_gpu`` returns the function
unchanged and ``spaces`` is not imported at all.

The estimate follows the public Wan 2.2 Spaces (see research/ecosystem-survey.md, section 6): per-step
cost grows with the token count to the power 1.5 (attention), plus model load and VAE decode. Our
bf16 path has no fp8/AoT kernels, so the reference per-step costs are taken as measured on an H200
slice for the official code (about 15 s/step for the 5B at 1280×704×121 with offload).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_MAX_DURATION",
    "estimate_gpu_seconds",
    "gpu_duration",
    "max_duration",
    "on_zero_gpu",
    "wrap_gpu",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_DURATION = 600   # seconds per call; override with env WAN_ZEROGPU_MAX_DURATION
_MIN_DURATION = 30

# task -> (seconds per step at the task's official size and frame count, seconds to load the weights).
# The geometry (strides, patch size, reference size) is read from the task's ModelSpec.
_COST = {"t2v-A14B": (22.0, 40.0), "i2v-A14B": (22.0, 40.0), "ti2v-5B": (15.0, 20.0)}


def on_zero_gpu(environ: Mapping[str, str] | None = None) -> bool:
    """True on a Hugging Face ZeroGPU Space (``SPACES_ZERO_GPU`` is set to a true value)."""
    env = os.environ if environ is None else environ
    return env.get("SPACES_ZERO_GPU", "").strip().lower() in {"1", "true", "yes"}


def max_duration(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get("WAN_ZEROGPU_MAX_DURATION", "")
    return int(raw) if raw.strip().isdigit() else DEFAULT_MAX_DURATION


def _tokens(task: str, width: int, height: int, frames: int) -> int:
    from wan.configs import get_spec

    spec = get_spec(task)
    (_, sh, sw), (_, ph, pw) = spec.vae_stride, spec.patch_size
    return spec.latent_frames(frames) * math.ceil(height / sh / ph) * math.ceil(width / sw / pw)


def estimate_gpu_seconds(task: str, steps: int, frames: int, width: int, height: int) -> int:
    """Seconds of GPU time one generation is expected to take (load + denoise + decode), rounded up."""
    if task not in _COST:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(_COST)}")
    from wan.configs import get_spec

    spec = get_spec(task)
    (ref_w, ref_h), ref_f = spec.default_size, spec.frame_num
    ratio = _tokens(task, width, height, frames) / _tokens(task, ref_w, ref_h, ref_f)
    per_step_s, load_s = _COST[task]
    decode = 30.0 * ratio
    total = load_s + steps * per_step_s * ratio**1.5 + decode
    return max(_MIN_DURATION, int(math.ceil(total)))


def gpu_duration(task: str, steps: int, frames: int, width: int, height: int) -> int:
    """The duration to declare to ``spaces.GPU``: the estimate, capped at the per-call maximum.

    ZeroGPU refuses calls that declare more than its maximum ("illegal duration"), so a request
    whose estimate is higher is still attempted with the maximum; the UI shows the estimate so the
    user can lower steps, frames or resolution when it does not fit.
    """
    return min(estimate_gpu_seconds(task, steps, frames, width, height), max_duration())


def wrap_gpu(fn: F, duration: Callable[..., int], environ: Mapping[str, str] | None = None) -> F:
    """``spaces.GPU(duration=duration)(fn)`` on ZeroGPU, ``fn`` itself everywhere else.

    ``duration`` receives the same arguments as ``fn`` (the ``spaces`` dynamic-duration contract).
    """
    if not on_zero_gpu(environ):
        return fn
    import spaces  # only on ZeroGPU: the package patches CUDA initialisation there

    return spaces.GPU(duration=duration)(fn)  # type: ignore[no-any-return]
