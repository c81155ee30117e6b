"""One attention entry point for the DiT, dispatching to a named or the fastest usable backend.

Backends:

- ``flash_attn_3``: FlashAttention 3 (``flash_attn_interface``), Hopper (sm90) CUDA, fp16/bf16.
- ``flash_attn_2``: FlashAttention 2 (``flash_attn``), Ampere+ (sm80+) CUDA, fp16/bf16.
- ``sage``: SageAttention (``pip install sageattention``; ``sageattn`` with layout ``"NHD"``),
  sm80+ CUDA, fp16/bf16, head_dim <= 128. Opt-in only, never chosen automatically: q and k are
  quantised to int8 per block (and p.v runs in fp16/fp8), so it is *not* exact. Documented
  tolerance against SDPA on random N(0, 1) inputs: cosine similarity >= 0.99 and relative L2
  error <= 0.08 (``SAGE_TOLERANCE``); flash backends: ``FLASH_TOLERANCE`` (bf16 rounding).
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``; always available (the CPU path).

Selection. A *name* (``auto`` | one of ``BACKENDS``; aliases ``fa3``, ``fa2``, ``torch``,
``sageattention``) comes from the caller (the request's ``attention`` setting, threaded through
``WanModel.forward(..., attention=...)``) or, for ``auto``, from the environment variable
``WAN_ATTENTION_BACKEND``. :func:`resolve_backend` turns it into a concrete backend for a device,
dtype and head dim: ``auto`` picks flash_attn_3, then flash_attn_2, then sdpa (never sage); a
named backend that cannot run raises :class:`AttentionBackendError` saying why (not installed,
needs CUDA sm80+, dtype, head dim) instead of silently falling back. No process state is mutated
to choose a backend: the choice is an argument, so two runs with different backends can coexist.

The libraries are imported lazily, only when a CUDA call could use them, and only once (the result,
module or None, is cached; an installed library that fails to import warns). :func:`attention` with
a concrete ``backend`` does no checks (the caller resolved it once per forward, outside any compiled
region); with ``backend=None`` it resolves per call from ``q``.

Shapes: ``q [B, Lq, heads, head_dim]``, ``k, v [B, Lk, heads, head_dim]`` -> ``[B, Lq, heads, head_dim]``
in the dtype of ``q``. No mask, no dropout, scale ``1/sqrt(head_dim)`` (all Wan needs).
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

__all__ = [
    "BACKENDS",
    "CHOICES",
    "ENV_VAR",
    "FLASH_TOLERANCE",
    "SAGE_TOLERANCE",
    "AttentionBackendError",
    "attention",
    "available_backends",
    "forced_backend",
    "normalize_backend",
    "resolve_backend",
    "select_backend",
    "unusable_reason",
]

ENV_VAR = "WAN_ATTENTION_BACKEND"
BACKENDS: tuple[str, ...] = ("flash_attn_3", "flash_attn_2", "sage", "sdpa")
CHOICES: tuple[str, ...] = ("auto", "sdpa", "flash_attn_2", "flash_attn_3", "sage")  # names a user may give
# Agreement with SDPA (float32 math on the same inputs) on random N(0, 1) q/k/v; see tests/test_attention.py.
FLASH_TOLERANCE: dict[str, float] = {"atol": 2e-2, "rtol": 2e-2}  # bf16/fp16 output rounding
SAGE_TOLERANCE: dict[str, float] = {"min_cosine": 0.99, "max_rel_l2": 0.08}  # int8 q/k quantisation

_ALIASES: dict[str, str] = {
    "auto": "auto",
    "": "auto",
    "flash_attn_3": "flash_attn_3",
    "flash3": "flash_attn_3",
    "fa3": "flash_attn_3",
    "flash_attn_2": "flash_attn_2",
    "flash2": "flash_attn_2",
    "fa2": "flash_attn_2",
    "sage": "sage",
    "sageattention": "sage",
    "sdpa": "sdpa",
    "torch": "sdpa",
}
_MODULES: dict[str, str] = {"flash_attn_3": "flash_attn_interface", "flash_attn_2": "flash_attn", "sage": "sageattention"}
_PIP: dict[str, str] = {"flash_attn_3": "FlashAttention 3 (built from the flash-attention repo's hopper/ folder)",
                        "flash_attn_2": "pip install flash-attn", "sage": "pip install sageattention"}  # fmt: skip
# CUDA compute-capability majors each library is built for (FA3: Hopper only).
_CAPABILITIES: dict[str, tuple[int, ...]] = {
    "flash_attn_3": (9,),
    "flash_attn_2": (8, 9, 10, 12),
    "sage": (8, 9, 10, 12),
}
_HALF_DTYPES = (torch.float16, torch.bfloat16)
_MAX_HEAD_DIM: dict[str, int] = {"flash_attn_3": 256, "flash_attn_2": 256, "sage": 128}
# Concrete backend -> kernel(q, k, v) in [B, L, H, D] layout; filled by _kernel() outside compiled code.
_KERNELS: dict[str, Callable[[Tensor, Tensor, Tensor], Any]] = {}


class AttentionBackendError(RuntimeError):
    """A backend that was asked for (by name or through ``WAN_ATTENTION_BACKEND``) cannot run this call."""


def normalize_backend(name: str | None) -> str:
    """``name`` (any case, aliases) -> ``"auto"`` or one of ``BACKENDS``; None -> ``"auto"``.

    Raises ``ValueError`` naming the accepted values.
    """
    raw = "" if name is None else str(name).strip().lower()
    if raw not in _ALIASES:
        raise ValueError(f"{name!r} is not a known attention backend; use one of: {', '.join(CHOICES)}")
    return _ALIASES[raw]


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
    """The library module of backend ``name`` (flash_attn_3, flash_attn_2 or sage), or None; imported
    once per process.

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


def _flash_unusable_reason(name: str, q: Any) -> str | None:
    """Why library backend ``name`` cannot run on a query like ``q`` (anything with ``device``,
    ``dtype`` and ``shape``), without importing anything; None if it can."""
    if q.device.type != "cuda":
        return f"it needs CUDA tensors, got device {q.device}"
    if q.dtype not in _HALF_DTYPES:
        return f"it needs float16/bfloat16 tensors, got {q.dtype}"
    head_dim, limit = q.shape[-1], _MAX_HEAD_DIM[name]
    if head_dim > limit or head_dim % 8:
        return f"it needs head_dim <= {limit} and a multiple of 8, got {head_dim}"
    major, minor = torch.cuda.get_device_capability(q.device)
    if major not in _CAPABILITIES[name]:
        caps = "/".join(f"sm{m}x" for m in _CAPABILITIES[name])
        return f"it supports GPUs of compute capability {caps}, this GPU is sm{major}{minor}"
    return None


def unusable_reason(name: str, device: torch.device | str, dtype: torch.dtype, head_dim: int) -> str | None:
    """Why backend ``name`` cannot run attention on ``device`` with ``dtype`` and ``head_dim``
    (including "not installed"), or None if it can. ``sdpa`` always can."""
    name = normalize_backend(name)
    if name in ("sdpa", "auto"):
        return None
    probe = SimpleNamespace(device=torch.device(device), dtype=dtype, shape=(head_dim,))
    reason = _flash_unusable_reason(name, probe)
    if reason is None and _import_flash(name) is None:
        reason = f"the module {_MODULES[name]!r} is not installed ({_PIP[name]})"
    return reason


def available_backends(device: torch.device | str, dtype: torch.dtype, head_dim: int) -> tuple[str, ...]:
    """The backends (of ``BACKENDS``) that can run on ``device``/``dtype``/``head_dim`` here."""
    return tuple(n for n in BACKENDS if unusable_reason(n, device, dtype, head_dim) is None)


def _auto(device: torch.device, dtype: torch.dtype, head_dim: int) -> str:
    if device.type != "cuda":
        return "sdpa"
    for name in ("flash_attn_3", "flash_attn_2"):
        if unusable_reason(name, device, dtype, head_dim) is None:
            return name
    return "sdpa"


def resolve_backend(
    name: str | None, device: torch.device | str, dtype: torch.dtype, head_dim: int, *, full_precision: bool = False
) -> str:
    """The concrete backend (one of ``BACKENDS``) for ``name`` on ``device``/``dtype``/``head_dim``.

    ``name`` None or ``"auto"``: ``WAN_ATTENTION_BACKEND`` when set, else the fastest exact backend.
    ``full_precision``: never sage (``auto`` falls back to automatic selection if the environment
    forces sage; a named sage is an error of the caller). A named or environment-forced backend
    that cannot run raises ``AttentionBackendError`` with the reason.
    """
    device = torch.device(device)
    requested = normalize_backend(name)
    source = "attention backend"
    if requested == "auto":
        env = forced_backend()
        if env is None or (full_precision and env == "sage"):
            return _auto(device, dtype, head_dim)
        requested, source = env, ENV_VAR
    if requested == "sdpa":
        return "sdpa"
    reason = unusable_reason(requested, device, dtype, head_dim)
    if reason is not None:
        if source == ENV_VAR:
            raise AttentionBackendError(
                f"{ENV_VAR}={requested} cannot be used: {reason}. Unset {ENV_VAR} (or set it to 'sdpa') "
                "to let Wan pick a working backend."
            )
        raise AttentionBackendError(f"attention backend {requested!r} cannot be used: {reason}; choose 'auto' or 'sdpa'")
    _kernel(requested)
    return requested


def select_backend(q: Tensor) -> str:
    """The backend :func:`attention` uses for ``q`` when given no name (see ``resolve_backend``)."""
    return resolve_backend(None, q.device, q.dtype, q.shape[-1])


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, tuple) else out  # some flash_attn_interface versions also return the LSE


def _kernel(name: str) -> Callable[[Tensor, Tensor, Tensor], Any]:
    """The [B, L, H, D] kernel of library backend ``name`` (cached in ``_KERNELS``)."""
    kernel = _KERNELS.get(name)
    if kernel is None:
        module = _import_flash(name)
        if module is None:
            raise AttentionBackendError(f"attention backend {name!r}: the module {_MODULES[name]!r} is not installed")
        if name == "sage":
            # run eagerly inside torch.compile (a graph break): its Python wrapper probes the GPU and
            # pads/casts per call, which dynamo should not trace
            kernel = torch.compiler.disable(functools.partial(module.sageattn, tensor_layout="NHD", is_causal=False))
        else:
            kernel = module.flash_attn_func
        _KERNELS[name] = kernel
    return kernel


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


def attention(q: Tensor, k: Tensor, v: Tensor, backend: str | None = None) -> Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(d)) v`` over all keys (no mask).

    q: ``[B, Lq, heads, head_dim]``; k, v: ``[B, Lk, heads, head_dim]``; all the same dtype and
    device. ``backend``: a concrete backend from :func:`resolve_backend` (not checked again), or
    None to resolve per call (environment, then automatic). Returns ``[B, Lq, heads, head_dim]`` in
    ``q.dtype``.
    """
    _check_shapes(q, k, v)
    if backend is None:
        backend = select_backend(q)
    if backend == "sdpa":
        out = F.scaled_dot_product_attention(
            rearrange(q, "b l h d -> b h l d"),
            rearrange(k, "b l h d -> b h l d"),
            rearrange(v, "b l h d -> b h l d"),
        )
        return rearrange(out, "b h l d -> b l h d")
    kernel = _KERNELS.get(backend)
    if kernel is None:
        kernel = _kernel(backend)
    return _first(kernel(q, k, v)).to(q.dtype)
