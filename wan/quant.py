"""fp8 weights (``float8_e4m3fn`` storage, weight-only) for the Wan DiT and the umT5 encoder.

What is quantised
    :func:`quantize_dit` replaces the DiT's *block* linears — ``blocks.{i}.self_attn.{q,k,v,o}``,
    ``blocks.{i}.cross_attn.{q,k,v,o}``, ``blocks.{i}.ffn.{0,2}`` (≈ 99 % of the parameters) — with
    :class:`FP8Linear`. Everything else keeps its precision: norms, modulation tables, the patch
    embedding, the time embedding/projection and the head (the ``is_float32_parameter`` layers the
    forward evaluates in float32), the biases, and ``text_embedding`` (0.3 % of an A14B expert, run
    once per run; ``WanModel`` and the pipeline read ``text_embedding[0].weight.dtype`` as the compute
    dtype of the text context, so it stays a plain ``nn.Linear``). :func:`quantize_text_encoder` does
    the same for the umT5 attention and feed-forward linears (the token embedding and norms stay).

Numerics
    Round-to-nearest with amax scaling: ``scale = amax / 448`` (per output channel, ``[out, 1]``, or
    per tensor, ``[]``), ``W8 = round_rne(W / scale)`` in ``float8_e4m3fn``; an all-zero row/tensor gets
    scale 1. The forward dequantises per call to the compute dtype — ``w = W8.to(dtype) * scale.to(dtype)``
    (exact float32 math when the compute dtype is float32) — and runs ``F.linear``; the dequantised
    weight is a temporary of one layer. ``use_scaled_mm=True`` (CUDA, compute capability >= 8.9, sizes
    multiples of 16) instead quantises the activations per row to fp8 at run time and calls
    ``torch._scaled_mm`` (W8A8, fp32 accumulate); any failure falls back to the dequant path once,
    with a warning. On the CPU the flag is ignored.

Storage
    An :class:`FP8Linear` is an ``nn.Linear`` subclass (so LoRA fitting and forward hooks treat it as
    a linear) whose ``weight`` parameter is ``float8_e4m3fn`` (1 byte/elem) and whose ``weight_scale``
    parameter is float32; ``compute_dtype`` (a plain attribute) is the dtype it computes in and the
    dtype its inputs are cast to by the DiT (``wan.modules.layers.compute_dtype``). Its state-dict keys
    are ``<module>.weight`` / ``<module>.weight_scale`` / ``<module>.bias``: per-channel ``[out, 1]``
    scales give exactly the LightX2V file layout. Do not ``model.to(dtype)`` a quantised model (torch
    would cast the float8 weights); ``.to(device)`` is fine.

Scaled-fp8 files (:func:`split_scaled_fp8`)
    - ComfyUI / Kijai ``*_fp8_scaled.safetensors``: float8 ``<module>.weight`` + float32 scalar
      ``<module>.scale_weight`` (``[]`` or ``[1]``) + a root marker tensor ``scaled_fp8``; keys may carry
      the ``model.diffusion_model.`` (or ``diffusion_model.``) prefix. ``.scale_input`` keys (activation
      scales of the ``_fast`` modes) are ignored.
    - LightX2V: float8 ``<module>.weight`` + float32 ``<module>.weight_scale`` ``[out, 1]`` (or ``[out]``;
      a one-element ``weight_scale`` is per-tensor).
    ``wan.loading`` keeps the stored float8 tensors and scales as they are (no requantisation), so
    ``weight.float() * weight_scale`` equals the file's dequantised tensors exactly.

Everything imports torch at import time; ``wan.loading`` imports this module only when needed.
"""

from __future__ import annotations

import re
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FP8_DTYPE",
    "FP8_MAX",
    "QUANTIZE_MODES",
    "FP8Linear",
    "QuantReport",
    "ScaledFp8Split",
    "check_quantize",
    "dequantize_weight",
    "is_dit_quantizable",
    "is_t5_quantizable",
    "parameter_bytes",
    "quantize_dit",
    "quantize_text_encoder",
    "quantize_weight",
    "scaled_mm_supported",
    "split_scaled_fp8",
    "to_scaled_fp8_state_dict",
]

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
QUANTIZE_MODES: tuple[str | None, ...] = (None, "fp8")
Quantize = Literal["fp8"] | None

_DIT_LINEAR_RE = re.compile(r"^blocks\.\d+\.(?:(?:self_attn|cross_attn)\.[qkvo]|ffn\.[02])$")
_T5_LINEAR_RE = re.compile(
    r"^(?:encoder\.)?block\.\d+\.layer\.(?:0\.SelfAttention\.[qkvo]|1\.DenseReluDense\.(?:wi_0|wi_1|wo))$"
)
_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
MARKER_KEY = "scaled_fp8"
_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
_IGNORED_SUFFIXES = (".scale_input", ".input_scale")


def check_quantize(value: Any, name: str = "quantize") -> Quantize:
    """``None`` or ``"fp8"`` (also accepts ``"none"``/``""``/``False`` as None); ``ValueError`` otherwise."""
    if value is None or value is False or (isinstance(value, str) and value.lower() in ("", "none")):
        return None
    if isinstance(value, str) and value.lower() in ("fp8", "float8", "float8_e4m3fn", "e4m3fn"):
        return "fp8"
    raise ValueError(f"{name} must be None or 'fp8', got {value!r}")


def is_dit_quantizable(name: str) -> bool:
    """True for the DiT module names :func:`quantize_dit` replaces (block attention + FFN linears)."""
    return bool(_DIT_LINEAR_RE.match(name))


def is_t5_quantizable(name: str) -> bool:
    """True for the umT5 (HF naming) linears :func:`quantize_text_encoder` replaces."""
    return bool(_T5_LINEAR_RE.match(name))


# ----------------------------------------------------------------------------- tensor math


def quantize_weight(weight: Tensor, *, per_channel: bool = True) -> tuple[Tensor, Tensor]:
    """``(W8, scale)``: round-to-nearest ``float8_e4m3fn`` of ``weight / scale`` with
    ``scale = amax / 448`` per output channel (``[out, 1]``) or per tensor (``[]``), float32 math on
    ``weight``'s device. All-zero rows/tensors get scale 1. ``weight.float() ≈ W8.float() * scale``."""
    w = weight.detach().float()
    if per_channel:
        amax = w.abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True) if w.ndim > 1 else w.abs()
    else:
        amax = w.abs().amax()
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (w / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale.to(torch.float32).contiguous()


def dequantize_weight(weight: Tensor, scale: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``weight.to(dtype) * scale.to(dtype)`` (float32: exact product of the stored values)."""
    w = weight.to(dtype)
    return w.mul_(scale.to(device=w.device, dtype=dtype))


def _norm_scale(scale: Tensor, out_features: int) -> Tensor:
    """A file's scale as ``[]`` (one element) or ``[out, 1]``, float32."""
    scale = scale.to(torch.float32)
    if scale.numel() == 1:
        return scale.reshape(())
    if scale.numel() == out_features:
        return scale.reshape(out_features, 1)
    raise ValueError(f"scale has {scale.numel()} elements, expected 1 or {out_features} (one per output channel)")


# ----------------------------------------------------------------------------- the layer


def scaled_mm_supported(device: torch.device | str | None = None) -> bool:
    """``torch._scaled_mm`` with float8_e4m3fn is usable on ``device`` (CUDA, compute capability >= 8.9)."""
    if not hasattr(torch, "_scaled_mm") or not torch.cuda.is_available():
        return False
    dev = torch.device(device) if device is not None else torch.device("cuda")
    if dev.type != "cuda":
        return False
    return torch.cuda.get_device_capability(dev) >= (8, 9)


class FP8Linear(nn.Linear):
    """A linear layer with ``float8_e4m3fn`` weights and float32 scales (see the module docstring).

    ``weight [out, in]`` float8, ``weight_scale`` float32 ``[out, 1]`` (per channel) or ``[]`` (per
    tensor), ``bias [out]`` in its own dtype (or None). ``forward(x)`` returns ``x``'s dtype; inputs in
    another dtype than ``compute_dtype`` are computed in their own dtype (a float8 input is an error).
    """

    weight_scale: nn.Parameter

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        per_channel: bool = True,
        compute_dtype: torch.dtype = torch.bfloat16,
        bias_dtype: torch.dtype | None = None,
        use_scaled_mm: bool = False,
        device: Any = None,
    ) -> None:
        nn.Module.__init__(self)
        self.in_features = in_features
        self.out_features = out_features
        self.compute_dtype = compute_dtype
        self.use_scaled_mm = use_scaled_mm
        self._scaled_mm_failed = False
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8_DTYPE, device=device),
                                   requires_grad=False)  # fmt: skip
        scale_shape = (out_features, 1) if per_channel else ()
        self.weight_scale = nn.Parameter(torch.ones(scale_shape, dtype=torch.float32, device=device), requires_grad=False)
        if bias:
            self.bias = nn.Parameter(
                torch.zeros(out_features, dtype=bias_dtype or compute_dtype, device=device), requires_grad=False
            )
        else:
            self.register_parameter("bias", None)

    @property
    def per_channel(self) -> bool:
        return self.weight_scale.ndim > 0

    @property
    def scale(self) -> Tensor:
        """Alias of ``weight_scale``."""
        return self.weight_scale

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, per_channel: bool = True, compute_dtype: torch.dtype | None = None,
        use_scaled_mm: bool = False,
    ) -> FP8Linear:  # fmt: skip
        """Quantises ``linear`` (round-to-nearest, amax scaling; a ``meta`` linear gives a ``meta`` layer
        with the right shapes). ``compute_dtype`` defaults to the linear's weight dtype."""
        w = linear.weight
        dtype = compute_dtype or (w.dtype if w.dtype.itemsize >= 2 else torch.bfloat16)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, per_channel=per_channel,
                    compute_dtype=dtype, bias_dtype=None if linear.bias is None else linear.bias.dtype,
                    use_scaled_mm=use_scaled_mm, device="meta")  # fmt: skip
        if w.device.type != "meta":
            q, s = quantize_weight(w, per_channel=per_channel)
            layer.weight = nn.Parameter(q, requires_grad=False)
            layer.weight_scale = nn.Parameter(s, requires_grad=False)
            if linear.bias is not None:
                layer.bias = nn.Parameter(linear.bias.detach(), requires_grad=False)
        return layer

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> Tensor:
        """The weight the forward computes with, in ``dtype`` (default ``compute_dtype``)."""
        return dequantize_weight(self.weight, self.weight_scale, dtype or self.compute_dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype.itemsize < 2:
            raise TypeError(f"FP8Linear got a {x.dtype} input: cast inputs to the layer's compute_dtype "
                            f"({self.compute_dtype}), e.g. with wan.modules.layers.compute_dtype(layer)")  # fmt: skip
        if self.use_scaled_mm and not self._scaled_mm_failed and x.is_cuda:
            out = self._forward_scaled_mm(x)
            if out is not None:
                return out
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, dequantize_weight(self.weight, self.weight_scale, x.dtype), bias)

    def _forward_scaled_mm(self, x: Tensor) -> Tensor | None:
        """W8A8 through ``torch._scaled_mm`` (activations: per-row amax scaling); None on any failure."""
        try:
            x2 = x.reshape(-1, self.in_features)
            x_scale = x2.abs().amax(dim=1, keepdim=True).float().clamp_(min=1e-12) / FP8_MAX  # [M, 1]
            xq = (x2.float() / x_scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
            w_t = self.weight.t()  # [in, out], column-major as _scaled_mm wants
            if self.per_channel:
                scale_a, scale_b = x_scale, self.weight_scale.reshape(1, -1)
            else:  # tensor-wise scaling on both sides
                x_max = x_scale.amax()
                xq = (x2.float() / x_max).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
                scale_a, scale_b = x_max, self.weight_scale.reshape(())
            out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
            bias = None if self.bias is None else self.bias.to(out_dtype)
            out = torch._scaled_mm(xq, w_t, scale_a=scale_a, scale_b=scale_b, bias=bias, out_dtype=out_dtype)
            out = out[0] if isinstance(out, tuple) else out
            return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        except (RuntimeError, TypeError, ValueError) as exc:
            self._scaled_mm_failed = True
            warnings.warn(f"FP8Linear: torch._scaled_mm failed ({exc}); using the dequantise path", stacklevel=2)
            return None

    def extra_repr(self) -> str:
        kind = "per-channel" if self.per_channel else "per-tensor"
        mm = ", scaled_mm" if self.use_scaled_mm else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"float8_e4m3fn {kind}, compute_dtype={self.compute_dtype}{mm}")  # fmt: skip


# ----------------------------------------------------------------------------- replacing modules

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class QuantReport:
    """What a quantise call did: layers replaced, parameter bytes of the whole model before/after."""

    layers: int
    bytes_before: int
    bytes_after: int

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def __str__(self) -> str:
        gib = 1024**3
        return (f"{self.layers} linears -> fp8: {self.bytes_before / gib:.3f} GiB -> {self.bytes_after / gib:.3f} GiB "
                f"(saved {self.bytes_saved / gib:.3f} GiB)")  # fmt: skip


def parameter_bytes(module: nn.Module) -> int:
    """Bytes of the parameters and buffers of ``module`` (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _replace(
    model: nn.Module, select: Callable[[str], bool], *, per_channel: bool | Mapping[str, bool],
    compute_dtype: torch.dtype | None, use_scaled_mm: bool,
) -> list[str]:  # fmt: skip
    names = [n for n, m in model.named_modules() if select(n) and type(m) is nn.Linear]
    for name in names:
        linear = model.get_submodule(name)
        pc = per_channel.get(name, True) if isinstance(per_channel, Mapping) else per_channel
        _set_submodule(model, name, FP8Linear.from_linear(
            linear, per_channel=pc, compute_dtype=compute_dtype, use_scaled_mm=use_scaled_mm))  # fmt: skip
        del linear
    return names


def quantize_dit(
    model: M, *, per_channel: bool | Mapping[str, bool] = True, compute_dtype: torch.dtype | None = None,
    use_scaled_mm: bool = False, only: Iterable[str] | None = None,
) -> QuantReport:  # fmt: skip
    """Replaces the DiT's block linears (see the module docstring) by :class:`FP8Linear`, in place,
    one layer at a time (peak extra memory: one layer in float32). Works on a ``meta`` model (shapes
    only, for loading). ``per_channel``: ``[out, 1]`` scales (default) or per-tensor ``[]``; a mapping
    gives it per module name. ``compute_dtype`` defaults to each linear's weight dtype. ``only``:
    replace just these module names (a subset of the quantisable ones). Layers that are already
    FP8Linear are left as they are. Returns a :class:`QuantReport`."""
    before = parameter_bytes(model)
    chosen = None if only is None else set(only)
    names = _replace(model, lambda n: is_dit_quantizable(n) and (chosen is None or n in chosen),
                     per_channel=per_channel, compute_dtype=compute_dtype, use_scaled_mm=use_scaled_mm)  # fmt: skip
    return QuantReport(layers=len(names), bytes_before=before, bytes_after=parameter_bytes(model))


def _t5_ffn_forward(self: nn.Module, hidden_states: Tensor) -> Tensor:
    """``UMT5DenseGatedActDense.forward`` without its cast of the hidden states to ``wo.weight.dtype``
    (which would be float8 here)."""
    hidden = self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states)
    return self.wo(self.dropout(hidden))


def quantize_text_encoder(
    encoder: Any, *, per_channel: bool = True, use_scaled_mm: bool = False
) -> QuantReport:
    """fp8 storage for the umT5 encoder's attention (q, k, v, o) and gated-FFN (wi_0, wi_1, wo) linears,
    in place. ``encoder``: a ``wan.modules.t5.TextEncoder`` or its ``UMT5EncoderModel``. The token
    embedding and the norms keep their dtype (so ``TextEncoder.dtype`` is unchanged)."""
    model = getattr(encoder, "model", encoder)
    before = parameter_bytes(model)
    names = _replace(model, is_t5_quantizable, per_channel=per_channel, compute_dtype=None,
                     use_scaled_mm=use_scaled_mm)  # fmt: skip
    for name, module in model.named_modules():
        if name.endswith("DenseReluDense") and isinstance(getattr(module, "wo", None), FP8Linear):
            module.forward = types.MethodType(_t5_ffn_forward, module)
    return QuantReport(layers=len(names), bytes_before=before, bytes_after=parameter_bytes(model))


# ----------------------------------------------------------------------------- scaled-fp8 files


@dataclass
class ScaledFp8Split:
    """A state dict split by :func:`split_scaled_fp8`.

    ``tensors``: everything else, keys without the ComfyUI prefix (weights included: a float8
    ``<module>.weight`` stays here); ``scales``: module name -> its scale tensor (as stored);
    ``layout``: ``"comfyui"`` (``scale_weight`` / marker), ``"lightx2v"`` (``weight_scale``) or None
    (no scales: a plain file); ``marker``: the ``scaled_fp8`` marker key was present.
    """

    tensors: dict[str, Any]
    scales: dict[str, Any]
    layout: str | None
    marker: bool


def _strip_prefix(keys: Iterable[str]) -> str:
    keys = [k for k in keys if k != MARKER_KEY]
    for prefix in _PREFIXES:
        if keys and all(k.startswith(prefix) for k in keys):
            return prefix
    return ""


def split_scaled_fp8(sd: Mapping[str, Any]) -> ScaledFp8Split:
    """Normalises a (scaled-)fp8 DiT state dict (values: tensors, or anything, e.g. shapes): strips a
    ``model.diffusion_model.``/``diffusion_model.`` prefix carried by every key, drops the root
    ``scaled_fp8`` marker and ``.scale_input``/``.input_scale`` activation scales, and moves
    ``<module>.scale_weight`` / ``<module>.weight_scale`` into ``scales`` (keyed by module)."""
    prefix = _strip_prefix(sd)
    tensors: dict[str, Any] = {}
    scales: dict[str, Any] = {}
    layout: str | None = None
    marker = False
    for key, value in sd.items():
        if key == MARKER_KEY or key == prefix + MARKER_KEY:
            marker = True
            continue
        name = key[len(prefix):]
        if name.endswith(_IGNORED_SUFFIXES):
            continue
        suffix = next((s for s in _SCALE_SUFFIXES if name.endswith(s)), None)
        if suffix is not None:
            scales[name[: -len(suffix)]] = value
            layout = layout or ("comfyui" if suffix == ".scale_weight" else "lightx2v")
            continue
        tensors[name] = value
    if marker and layout is None:
        layout = "comfyui"
    return ScaledFp8Split(tensors=tensors, scales=scales, layout=layout, marker=marker)


def to_scaled_fp8_state_dict(
    model_or_sd: nn.Module | Mapping[str, Tensor], *, layout: Literal["comfyui", "lightx2v"] = "lightx2v",
    prefix: str = "",
) -> dict[str, Tensor]:  # fmt: skip
    """The state dict of a quantised model (or of its ``state_dict()``) in a scaled-fp8 file layout:
    ``"lightx2v"`` (``<module>.weight_scale``, as stored) or ``"comfyui"`` (``<module>.scale_weight``,
    per-tensor scales only, plus the ``scaled_fp8`` marker); every key gets ``prefix``."""
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, nn.Module) else dict(model_or_sd)
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if layout == "comfyui" and key.endswith(".weight_scale"):
            if value.numel() != 1:
                raise ValueError(f"{key}: the ComfyUI layout stores per-tensor scales; quantise with per_channel=False")
            out[prefix + key[: -len(".weight_scale")] + ".scale_weight"] = value.reshape(())
        else:
            out[prefix + key] = value
    if layout == "comfyui":
        out[prefix + MARKER_KEY] = torch.empty(0, dtype=FP8_DTYPE)
    return out
