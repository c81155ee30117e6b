"""Wan 2.2 inference package: T2V-A14B, I2V-A14B and TI2V-5B.

Usage::

    import wan
    pipe = wan.load_pipeline("ti2v-5B", ckpt_dir, device="cuda", dtype=torch.bfloat16)
    video = pipe.generate("a red fox in the snow")   # torch.Tensor [3, F, H, W] in [-1, 1]

Importing ``wan`` is cheap: it imports neither torch nor anything else heavy, touches no GPU and no
network. The public names are resolved on first access (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .configs import LIMITS, TASKS, ModelSpec, get_spec
    from .errors import CheckpointError, GenerationCancelled, GenerationError, InputError
    from .pipeline import load_pipeline
    from .request import GenerationRequest, make_request
    from .stepcache import StepCache

__all__ = [
    "LIMITS",
    "TASKS",
    "CheckpointError",
    "GenerationCancelled",
    "GenerationError",
    "GenerationRequest",
    "InputError",
    "ModelSpec",
    "StepCache",
    "get_spec",
    "load_pipeline",
    "make_request",
]

# public name -> submodule that defines it
_LAZY: dict[str, str] = {
    "LIMITS": "configs",
    "TASKS": "configs",
    "ModelSpec": "configs",
    "get_spec": "configs",
    "CheckpointError": "errors",
    "GenerationCancelled": "errors",
    "GenerationError": "errors",
    "InputError": "errors",
    "load_pipeline": "pipeline",
    "GenerationRequest": "request",
    "make_request": "request",
    "StepCache": "stepcache",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'wan' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
