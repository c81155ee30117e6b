"""One attention entry point for the DiT, dispatching to the fastest usable backend.

Backends, in order of preference when nothing is forced:

- ``flash_attn_3``: FlashAttention 3 (``flash_attn_interface``), Hopper (sm90) CUDA, fp16/bf16.
- ``flash_attn_2``: FlashAttention 2 (``flash_attn``), Ampere (sm80+) CUDA, fp16/bf16.
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``; always available (the CPU path).

The choice is made on every call from the tensors (device, dtype, head dim) and from what can be
imported; the flash libraries are imported lazily, only when a CUDA call could use them, and only
once (the result, module or None, is cached; an installed library that fails to import warns). The
environment variable ``WAN_ATTENTION_BACKEND`` (``auto`` | ``flash_attn_3`` | ``flash_attn_2`` |
``sdpa``; aliases ``fa3``, ``fa2``, ``torch``) forces one; a forced backend that cannot run the call
raises :class:`AttentionBackendError` instead of silently falling back.

Shapes: ``q [B, Lq, heads, head_dim]``, ``k, v [B, Lk, heads, head_dim]`` -> ``[B, Lq, heads, head_dim]``
in the dtype of ``q``. No mask, no dropout, scale ``1/sqrt(head_dim)`` (all Wan needs).
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from types import ModuleType

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "AttentionBackendError",
    "attention",
    "forced_backend",
    "select_backend",
]

ENV_VAR = "WAN_ATTENTION_BACKEND"
BACKENDS: tuple[str, ...] = ("flash_attn_3", "flash_attn_2", "sdpa")

_ALIASES: dict[str, str] = {
    "auto": "auto",
    "": "auto",
    "flash_attn_3": "flash_attn_3",
    "flash3": "flash_attn_3",
    "fa3": "flash_attn_3",
    "flash_attn_2": "flash_attn_2",
    "flash2": "flash_attn_2",
    "fa2": "flash_attn_2",
    "sdpa": "sdpa",
    "torch": "sdpa",
}
_MODULES: dict[str, str] = {"flash_attn_3": "flash_attn_interface", "flash_attn_2": "flash_attn"}
# CUDA compute-capability majors each flash library is built for (FA3: Hopper only).
_CAPABILITIES: dict[str, tuple[int, ...]] = {"flash_attn_3": (9,), "flash_attn_2": (8, 9, 10, 12)}
_FLASH_DTYPES = (torch.float16, torch.bfloat16)
_FLASH_MAX_HEAD_DIM = 256


class AttentionBackendError(RuntimeError):
    """The attention backend forced through ``WAN_ATTENTION_BACKEND`` cannot run this call."""


def forced_backend() -> str | None:
    """The backend named by ``WAN_ATTENTION_BACKEND``, or None for automatic selection.

    Raises ``ValueError`` naming the accepted values when the variable holds anything else.
    """
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    if raw not in _ALIASES:
        accepted = ", ".join(sorted(k for k in _ALIASES if k))
        raise ValueError(f"{ENV_VAR}={raw!r} is not a known attention backend; use one of: {accepted}")
    name = _ALIASES[raw]
    return None if name == "auto" else name


@functools.cache
def _import_flash(name: str) -> ModuleType | None:
    """The flash-attention module of backend ``name``, or None; imported once per process.

    Not installed (``ModuleNotFoundError`` for that module) is silent; an installed library that
    fails to import (e.g. an undefined symbol from a build against another torch/CUDA) warns once
    with the error, then the backend counts as unavailable.
    """
    module = _MODULES[name]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            _warn_broken(name, module, exc)  # the library is there but one of its dependencies is not
        return None
    except ImportError as exc:
        _warn_broken(name, module, exc)
        return None


def _warn_broken(name: str, module: str, exc: ImportError) -> None:
    warnings.warn(
        f"attention backend {name}: the module {module!r} is installed but cannot be imported "
        f"({type(exc).__name__}: {exc}); falling back to another backend. Reinstall it for this torch/CUDA "
        f"version, or set {ENV_VAR}=sdpa to silence this.",
        RuntimeWarning,
        stacklevel=3,
    )


def _flash_unusable_reason(name: str, q: Tensor) -> str | None:
    """Why ``name`` cannot run on ``q`` (without importing anything), or None if it can."""
    if q.device.type != "cuda":
        return f"it needs CUDA tensors, got device {q.device}"
    if q.dtype not in _FLASH_DTYPES:
        return f"it needs float16/bfloat16 tensors, got {q.dtype}"
    if q.shape[-1] > _FLASH_MAX_HEAD_DIM or q.shape[-1] % 8:
        return f"it needs head_dim <= {_FLASH_MAX_HEAD_DIM} and a multiple of 8, got {q.shape[-1]}"
    major, minor = torch.cuda.get_device_capability(q.device)
    if major not in _CAPABILITIES[name]:
        return f"it supports GPUs of compute capability {_CAPABILITIES[name]}.x, got {major}.{minor}"
    return None


def select_backend(q: Tensor) -> str:
    """The backend :func:`attention` will use for a query like ``q`` (see the module docstring).

    Raises ``AttentionBackendError`` when the forced backend is not installed or cannot handle
    ``q``'s device/dtype/head dim.
    """
    forced = forced_backend()
    if forced == "sdpa":
        return "sdpa"
    if forced is not None:
        reason = _flash_unusable_reason(forced, q)
        if reason is None and _import_flash(forced) is None:
            reason = f"the module {_MODULES[forced]!r} is not installed"
        if reason is not None:
            raise AttentionBackendError(
                f"{ENV_VAR}={forced} cannot be used: {reason}. Unset {ENV_VAR} (or set it to 'sdpa') "
                "to let Wan pick a working backend."
            )
        return forced
    if q.device.type != "cuda":
        return "sdpa"
    for name in ("flash_attn_3", "flash_attn_2"):
        if _flash_unusable_reason(name, q) is None and _import_flash(name) is not None:
            return name
    return "sdpa"


def _check_shapes(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            "attention expects q, k, v of shape [B, L, heads, head_dim]; got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(
            "attention: q [B, Lq, H, D] and k, v [B, Lk, H, D] must agree on B, H and D; got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(d)) v`` over all keys (no mask).

    q: ``[B, Lq, heads, head_dim]``; k, v: ``[B, Lk, heads, head_dim]``; all the same dtype and
    device. Returns ``[B, Lq, heads, head_dim]`` in ``q.dtype``.
    """
    _check_shapes(q, k, v)
    backend = select_backend(q)
    if backend == "sdpa":
        out = F.scaled_dot_product_attention(
            rearrange(q, "b l h d -> b h l d"),
            rearrange(k, "b l h d -> b h l d"),
            rearrange(v, "b l h d -> b h l d"),
        )
        return rearrange(out, "b h l d -> b l h d")
    module = _import_flash(backend)
    if module is None:  # select_backend only picks importable backends
        raise AttentionBackendError(f"attention backend {backend} vanished after selection")
    out = module.flash_attn_func(q, k, v)
    if isinstance(out, tuple):  # some flash_attn_interface versions also return the softmax LSE
        out = out[0]
    return out
