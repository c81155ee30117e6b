"""LoRAs for the Wan DiT: read every format in circulation, check the fit, apply per expert, remove exactly.

Reading (:func:`load_lora`)
    Every key family found for Wan 2.1/2.2 LoRAs is normalised to our official module names
    (``blocks.{i}.self_attn.q``, ``blocks.{i}.cross_attn.o``, ``blocks.{i}.ffn.0``,
    ``text_embedding.0``, ``time_embedding.2``, ``time_projection.1``, ``head.head``,
    ``patch_embedding``, ``blocks.{i}.norm3``, ``blocks.{i}.modulation`` ...):

    - official / ComfyUI ``diffusion_model.<module>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``,
      and the same with PEFT names ``lora_A`` / ``lora_B``;
    - musubi-tuner / kohya ``lora_unet_blocks_0_self_attn_q.lora_down.weight`` (+ ``.alpha``) and the
      VideoX-Fun ``lora_unet__blocks_0_...`` spelling (also ``lycoris_``);
    - diffusers / PEFT ``transformer.blocks.0.attn1.to_q.lora_A.weight`` (``attn1``/``attn2``/``ffn.net``/
      ``condition_embedder``/``proj_out``/``norm2``/``scale_shift_table``; ``lora_B.bias`` = bias delta),
      with the ``base_model.model.`` / ``pipe.dit.`` / ``model.`` prefixes and the ``.default.`` infix,
      and PEFT ``lora_adapter_metadata`` (``lora_alpha``, ``alpha_pattern``, ``use_rslora``) when present;
    - full deltas ``<module>.diff`` (weight), ``<module>.diff_b`` (bias) and ``<block>.diff_m``
      (modulation), e.g. the lightx2v distill LoRAs' ``head.head.diff`` (no up matrix) and the norm
      deltas, which are *applied* (diffusers drops norm deltas);
    - Wan 2.1 I2V-only keys (``cross_attn.k_img/v_img/norm_k_img``, ``img_emb.*``) are dropped with ONE
      warning giving the count (Wan 2.2 has no CLIP branch).

    ``delta W = strength * (alpha / rank) * up @ down`` (``alpha`` missing: scale 1; rsLoRA metadata:
    ``alpha / sqrt(rank)``); 5-D conv factors (``patch_embedding``) are supported. Bad input raises
    :class:`LoraError` (a :class:`wan.errors.CheckpointError`) naming the file: not a LoRA, unknown keys
    (a few listed), incomplete pairs, DoRA/LyCORIS variants, a truncated/corrupt file, and (when applied or
    checked) shapes that do not fit the model (the dim the LoRA was made for vs the model's).

Applying (:func:`apply_loras` / :func:`remove_loras` / :class:`LoraPatcher`)
    Design: **unmerged by default**, exact by construction.

    - The block linears (``self_attn.*``, ``cross_attn.*``, ``ffn.0/2``) and ``text_embedding.0/2`` —
      the modules the DiT calls as modules, i.e. ~all LoRA parameters — get a forward hook that adds
      ``up_cat @ (down_cat @ x)`` (every active LoRA of that module concatenated along the rank, the
      strengths and alpha/rank folded into ``up_cat``; plus ``x @ diff^T`` for a dense ``.diff``), stored in
      the layer's dtype and accumulated in place into the layer's fresh output (``addmm_``). Base weights are never written, so removing the hooks is bit-identical, and it
      works on any base weight format (bf16, or ``wan.quant.FP8Linear`` float8 layers, which are
      hooked even with ``merge=True``: a float8 weight is never swapped). Cost: two thin matmuls per hooked layer
      (rank r vs dim: ~2r/dim extra FLOPs, ~2.5% for r = 64 at dim 5120) and one device copy of the
      active LoRA factors (rank 64 over every linear of an A14B expert: ~0.6 GB bf16).
    - Everything else — parameter deltas (``diff_b`` biases, norm ``.diff``, modulation), the float32
      layers the DiT evaluates through ``linear_f32`` rather than a module call (``time_embedding``,
      ``time_projection``, ``head.head``) and the conv ``patch_embedding`` — is patched by *tensor swap*:
      ``param.data`` is pointed at a new tensor ``(W.float() + delta).to(W.dtype)`` and the original
      tensor object is kept by reference (not copied) and put back on removal, so removal is
      bit-identical too. Extra memory: one copy of the swapped tensors only (biases/norms/modulation
      are tiny; ``time_projection`` is 0.16 B params for A14B if a LoRA targets it: 0.6 GB fp32).
    - ``merge=True`` (option, for a model that stays resident): every target is swapped to its merged
      weight, so the per-step cost is exactly the base model's. The originals are kept for an exact
      restore: by reference on a CPU model, moved to (pinned) CPU RAM for a CUDA model, so device memory
      does not grow but **CPU RAM grows by the size of every touched weight** (~all linears: ~27 GB for
      a bf16 A14B expert with a full LoRA). Changing strengths re-merges from the originals (no error
      accumulates).

    ``apply_loras(model, [(lora, strength), ...])`` makes exactly that set active and returns whether
    anything changed; the same set (same objects, same strengths, same mode) again is a no-op, so the
    pipeline may call it every step. Entries with strength 0 are skipped. Everything is validated
    before anything is touched, and a failure while patching rolls back, so the model stays usable.
    Cross-attention k/v cached with ``WanModel.encode_context`` depend on the LoRA: rebuild the cache
    whenever ``apply_loras`` returns True.

    Swapped tensors replaced by someone else (the pipeline's ``ExpertOffloader`` reloads an expert's
    pristine weights on every switch when offloading) are detected (the tensor under the parameter is
    no longer ours) and re-patched on the next ``apply_loras``. Do not ``model.to(...)`` a patched
    model: remove the LoRAs first.

Imports torch lazily (importing this module is cheap); nothing here imports ``wan.testing``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from .modules.model import DiTConfig, WanModel

__all__ = [
    "EXPERT_NAMES",
    "LoraError",
    "LoraPatcher",
    "LoraSpec",
    "LowRank",
    "NormalizedLora",
    "active_loras",
    "apply_loras",
    "check_lora_fits",
    "clear_lora_cache",
    "load_lora",
    "lora_fits",
    "loras_applied",
    "remove_loras",
]

EXPERT_NAMES = ("high_noise", "low_noise", "dense")
LORA_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


class LoraError(CheckpointError):
    """A LoRA file or state dict is unreadable, is not a Wan LoRA, or does not fit the model.

    The message starts with the LoRA's name (its file name) and says what is wrong."""


# ----------------------------------------------------------------------------- key normalisation

# official module names (relative to the block / the model)
_ATTN = ("q", "k", "v", "o", "norm_q", "norm_k")
_BLOCK_MODULES = (
    *(f"self_attn.{p}" for p in _ATTN),
    *(f"cross_attn.{p}" for p in _ATTN),
    "ffn.0",
    "ffn.2",
    "norm3",
    "modulation",
)
_BLOCK_I2V_ONLY = ("cross_attn.k_img", "cross_attn.v_img", "cross_attn.norm_k_img")
_TOP_MODULES = (
    "patch_embedding",
    "text_embedding.0",
    "text_embedding.2",
    "time_embedding.0",
    "time_embedding.2",
    "time_projection.1",
    "head.head",
    "head.modulation",
)
_TOP_I2V_ONLY_RE = re.compile(r"^img_emb\.")

# diffusers module names -> official (inside blocks / at the top)
_DIFFUSERS_BLOCK = {
    **{f"{d}.{dp}": f"{o}.{op}" for d, o in (("attn1", "self_attn"), ("attn2", "cross_attn"))
       for dp, op in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o"),
                      ("norm_q", "norm_q"), ("norm_k", "norm_k"))},
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
    "norm2": "norm3",
    "scale_shift_table": "modulation",
}  # fmt: skip
_DIFFUSERS_TOP = {
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "proj_out": "head.head",
    "scale_shift_table": "head.modulation",
    "patch_embedding": "patch_embedding",
    "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
}
_OFFICIAL_TOP_ALL = (*_TOP_MODULES, "img_emb.proj.0", "img_emb.proj.1", "img_emb.proj.3", "img_emb.proj.4")
_UNDERSCORE_BLOCK = {m.replace(".", "_"): m for m in (*_BLOCK_MODULES, *_BLOCK_I2V_ONLY)}
_UNDERSCORE_TOP = {m.replace(".", "_"): m for m in _OFFICIAL_TOP_ALL}

_DOT_PREFIXES = ("base_model.model.", "pipe.dit.", "model.diffusion_model.", "diffusion_model.", "transformer.",
                 "dit.", "model.", "unet.")  # fmt: skip
_UNDERSCORE_PREFIX_RE = re.compile(r"^(?:lora_unet__?|lycoris_|lora_transformer_)")
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_UNDERSCORE_BLOCK_RE = re.compile(r"^blocks_(\d+)_(.+)$")

# key suffix -> kind
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_A.default.weight", "down"),
    (".lora_B.default.weight", "up"),
    (".lora_B.bias", "diff_b"),
    (".lora_B.default.bias", "diff_b"),
    (".alpha", "alpha"),
    (".diff_b", "diff_b"),
    (".diff_m", "diff_m"),
    (".diff", "diff"),
)
_UNSUPPORTED = {
    "dora_scale": "DoRA",
    "hada_w1": "LyCORIS LoHa",
    "lokr_w1": "LyCORIS LoKr",
    "lora_mid": "LyCORIS LoCon (lora_mid)",
    ".oft_": "OFT",
}

_I2V_MARK = "<wan21-i2v>"


def _split_suffix(key: str) -> tuple[str, str] | None:
    for suffix, kind in _SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], kind
    return None


def _official_module(path: str) -> str | None:
    """A module path in any naming (prefix already stripped) -> official module name, ``_I2V_MARK``-prefixed
    for Wan 2.1 image-branch modules, or None if unknown."""
    m = _UNDERSCORE_PREFIX_RE.match(path)
    if m:  # musubi / kohya / VideoX-Fun: underscores everywhere
        rest = path[m.end():]
        bm = _UNDERSCORE_BLOCK_RE.match(rest)
        if re.fullmatch(r"blocks_\d+", rest):
            out = rest.replace("_", ".")
        elif bm:
            name = _UNDERSCORE_BLOCK.get(bm.group(2))
            out = None if name is None else f"blocks.{bm.group(1)}.{name}"
        else:
            out = _UNDERSCORE_TOP.get(rest)
        return None if out is None else _mark(out)
    stripped = True
    while stripped:
        stripped = False
        for prefix in _DOT_PREFIXES:
            if path.startswith(prefix):
                path = path[len(prefix):]
                stripped = True
    if re.fullmatch(r"blocks\.\d+|head", path):  # only valid with .diff_m (the block's / head's modulation)
        return path
    bm = _BLOCK_RE.match(path)
    if bm:
        i, rest = bm.groups()
        if rest in _BLOCK_MODULES or rest in _BLOCK_I2V_ONLY:
            return _mark(path)
        if rest in _DIFFUSERS_BLOCK:
            return _mark(f"blocks.{i}.{_DIFFUSERS_BLOCK[rest]}")
        return None
    if path in _OFFICIAL_TOP_ALL:
        return _mark(path)
    if path in _DIFFUSERS_TOP:
        return _mark(_DIFFUSERS_TOP[path])
    return None


def _mark(official: str) -> str:
    is_i2v = _TOP_I2V_ONLY_RE.match(official) or any(official.endswith("." + m) for m in _BLOCK_I2V_ONLY)
    return _I2V_MARK + official if is_i2v else official


def _param_of(module: str, kind: str) -> str:
    """The official parameter a full delta of ``kind`` on ``module`` applies to."""
    if kind == "diff_m":
        return f"{module}.modulation"
    if kind == "diff_b":
        return f"{module}.bias"
    return module if module.endswith("modulation") else f"{module}.weight"


# ----------------------------------------------------------------------------- normalised form


@dataclass(frozen=True, eq=False)
class LowRank:
    """One module's low-rank factors: ``delta = scale * up @ down`` (conv: over the flattened kernel).

    ``down``: ``[r, in]`` or ``[r, in, kt, kh, kw]``; ``up``: ``[out, r]`` or ``[out, r, 1, 1, 1]``;
    ``scale`` = alpha / rank (1 without alpha)."""

    down: Tensor
    up: Tensor
    scale: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def delta(self) -> Tensor:
        """float32 ``scale * up @ down`` in the weight's shape (``[out, in]`` or ``[out, in, kt, kh, kw]``)."""
        up = self.up.float().reshape(self.up.shape[0], -1)
        down = self.down.float().reshape(self.down.shape[0], -1)
        return (self.scale * (up @ down)).reshape(self.up.shape[0], *self.down.shape[1:])


@dataclass(frozen=True, eq=False)
class NormalizedLora:
    """A LoRA in one form, keyed by the official Wan module / parameter names (tensors on the CPU).

    ``low_rank``: module name (``"blocks.0.self_attn.q"``) -> :class:`LowRank`; ``deltas``: parameter name
    (``"blocks.0.norm3.weight"``, ``"head.head.bias"``, ``"blocks.3.modulation"``) -> full delta
    (added times the strength). ``dropped``: the original keys dropped (Wan 2.1 image branch).
    ``formats``: the key families seen (e.g. ``("official",)``). ``name``: file name or ``"<state dict>"``.
    """

    name: str
    low_rank: Mapping[str, LowRank]
    deltas: Mapping[str, Tensor]
    dropped: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    path: str | None = None

    @property
    def dim(self) -> int | None:
        """The model dim this LoRA was made for (from a block's attention / ffn factors or deltas), if known."""
        for mod, lr in self.low_rank.items():
            m = _BLOCK_RE.match(mod)
            if m and m.group(2).startswith(("self_attn.", "cross_attn.")) and m.group(2)[-1] in "qkvo":
                return int(lr.up.shape[0])
            if m and m.group(2) == "ffn.0":
                return int(lr.down.shape[1])
        for param, d in self.deltas.items():
            if _BLOCK_RE.match(param) and d.ndim >= 1:
                return int(d.shape[-1])
        return None

    @property
    def num_blocks(self) -> int:
        """1 + the highest block index the LoRA touches (0 if none)."""
        idx = [int(m.group(1)) for k in (*self.low_rank, *self.deltas) if (m := _BLOCK_RE.match(k))]
        return max(idx) + 1 if idx else 0

    @property
    def num_parameters(self) -> int:
        n = sum(lr.down.numel() + lr.up.numel() for lr in self.low_rank.values())
        return n + sum(d.numel() for d in self.deltas.values())

    def __repr__(self) -> str:
        return (f"NormalizedLora({self.name!r}, {len(self.low_rank)} low-rank modules, {len(self.deltas)} deltas, "
                f"dim={self.dim}, formats={self.formats})")  # fmt: skip


def _err(name: str, message: str) -> LoraError:
    return LoraError(f"LoRA {name}: {message}")


def _format_of(key: str) -> str:
    if key.startswith("lora_unet__"):
        return "videox-fun"
    if _UNDERSCORE_PREFIX_RE.match(key):
        return "musubi"
    for prefix, fmt in (("base_model.model.", "peft"), ("pipe.dit.", "diffsynth"), ("transformer.", "diffusers")):
        if key.startswith(prefix):
            return fmt
    if any(s in key for s in ("attn1.", "attn2.", "ffn.net.", "condition_embedder.", "proj_out.")):
        return "diffusers"
    return "official-peft" if ".lora_A." in key or ".lora_B." in key else "official"


def _peft_scales(metadata: Mapping[str, str] | None) -> Callable[[str, int], float] | None:
    """From diffusers' ``lora_adapter_metadata`` (a PEFT LoraConfig as JSON): (module, rank) -> scale."""
    if not metadata or "lora_adapter_metadata" not in metadata:
        return None
    try:
        cfg = json.loads(metadata["lora_adapter_metadata"])
    except (TypeError, ValueError):
        return None
    if not isinstance(cfg, dict) or cfg.get("lora_alpha") is None:
        return None
    alpha = float(cfg["lora_alpha"])
    patterns = {str(k): float(v) for k, v in (cfg.get("alpha_pattern") or {}).items()}
    rs = bool(cfg.get("use_rslora"))

    def scale(module: str, rank: int) -> float:
        a = alpha
        for pat, value in patterns.items():
            if module == pat or module.endswith("." + pat) or re.fullmatch(pat, module):
                a = value
        return a / math.sqrt(rank) if rs else a / rank

    return scale


def normalize_lora_state_dict(
    sd: Mapping[str, Any], *, name: str = "<state dict>", metadata: Mapping[str, str] | None = None,
    path: str | None = None,
) -> NormalizedLora:
    """Parses a LoRA state dict in any supported format (see the module docstring) into a :class:`NormalizedLora`.

    Raises :class:`LoraError` naming ``name``; warns once if Wan 2.1 image-branch keys are dropped."""
    import torch

    if not sd:
        raise _err(name, "is empty (no tensors)")
    parts: dict[str, dict[str, Any]] = {}  # official module -> kind -> tensor / (diffusers-key) ...
    diffusers_modules: dict[str, str] = {}  # official module -> its diffusers-style name (for PEFT metadata)
    unknown: list[str] = []
    dropped: list[str] = []
    unsupported: dict[str, list[str]] = {}
    formats: set[str] = set()
    lora_like = 0
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _err(name, f"entry {key!r} is not a tensor ({type(value).__name__}); not a LoRA state dict")
        for mark, what in _UNSUPPORTED.items():
            if mark in key:
                unsupported.setdefault(what, []).append(key)
                break
        else:
            split = _split_suffix(key)
            if split is None:
                unknown.append(key)
                continue
            lora_like += 1
            path_, kind = split
            official = _official_module(path_)
            if official is not None and kind != "diff_m" and re.fullmatch(r"blocks\.\d+|head", official):
                official = None
            if official is None:
                unknown.append(key)
                continue
            if kind in ("down", "up") or not formats:
                formats.add(_format_of(key))
            if official.startswith(_I2V_MARK):
                dropped.append(key)
                continue
            slot = parts.setdefault(official, {})
            if kind in slot:
                raise _err(name, f"two keys give the {kind} of {official} (the second is {key!r})")
            slot[kind] = value
            diffusers_modules[official] = path_
    if unsupported:
        what, keys = next(iter(unsupported.items()))
        raise _err(name, f"{what} weights are not supported ({len(keys)} keys, e.g. {keys[0]!r})")
    if lora_like == 0:
        hint = ""
        if any(k.endswith((".weight", ".bias")) for k in sd):
            hint = " It looks like a full model checkpoint, not a LoRA."
        raise _err(name, f"is not a LoRA: none of its {len(sd)} keys is a LoRA key (lora_down/lora_up, "
                         f"lora_A/lora_B, alpha, diff, diff_b), e.g. {sorted(sd)[:3]}.{hint}")  # fmt: skip
    if unknown:
        shown = ", ".join(repr(k) for k in sorted(unknown)[:5])
        more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise _err(name, f"{len(unknown)} keys are not Wan DiT LoRA keys: {shown}{more}")
    if dropped:
        warnings.warn(
            f"LoRA {name}: dropped {len(dropped)} Wan 2.1 image-branch keys (cross_attn.k_img/v_img/norm_k_img, "
            "img_emb.*); Wan 2.2 has no CLIP image branch",
            UserWarning,
            stacklevel=3,
        )
    peft_scale = _peft_scales(metadata)
    low_rank: dict[str, LowRank] = {}
    deltas: dict[str, Tensor] = {}

    def as_float(t: Tensor) -> Tensor:
        t = t.detach()
        return t if t.is_floating_point() and t.dtype.itemsize >= 2 else t.float()

    for module, slot in sorted(parts.items()):
        down, up, alpha = slot.pop("down", None), slot.pop("up", None), slot.pop("alpha", None)
        if (down is None) != (up is None):
            have, miss = ("down", "up") if up is None else ("up", "down")
            raise _err(name, f"{module} has a {have} matrix but no {miss} matrix")
        if down is not None:
            if down.ndim not in (2, 5) or up.ndim != down.ndim or up.shape[1] != down.shape[0] or \
                    (up.ndim == 5 and tuple(up.shape[2:]) != (1, 1, 1)):  # fmt: skip
                raise _err(name, f"{module}: down {list(down.shape)} and up {list(up.shape)} are not LoRA factors "
                                 "(down [r, in], up [out, r])")  # fmt: skip
            rank = int(down.shape[0])
            if alpha is not None:
                if alpha.numel() != 1:
                    raise _err(name, f"{module}.alpha has {alpha.numel()} values; expected a scalar")
                scale = float(alpha.float().item()) / rank
            elif peft_scale is not None:
                scale = peft_scale(diffusers_modules[module], rank)
            else:
                scale = 1.0
            if not math.isfinite(scale):
                raise _err(name, f"{module}: alpha/rank is not finite")
            low_rank[module] = LowRank(down=as_float(down), up=as_float(up), scale=scale)
        elif alpha is not None:
            raise _err(name, f"{module} has an alpha but no lora_down/lora_up matrices")
        for kind, tensor in slot.items():
            param = _param_of(module, kind)
            if param in deltas:
                raise _err(name, f"two keys give the delta of {param}")
            deltas[param] = as_float(tensor)
    return NormalizedLora(
        name=name, low_rank=types.MappingProxyType(low_rank), deltas=types.MappingProxyType(deltas),
        dropped=tuple(dropped), formats=tuple(sorted(formats)), path=path,
    )  # fmt: skip


# ----------------------------------------------------------------------------- reading files

_CACHE_SIZE = 4
_cache: OrderedDict[tuple[str, int, int], NormalizedLora] = OrderedDict()
_sha_cache: dict[tuple[str, int, int], str] = {}
_cache_lock = threading.Lock()


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def read_lora_file(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str] | None]:
    """The raw tensors (and safetensors metadata) of a LoRA file; :class:`LoraError` naming it otherwise."""
    import torch

    p = Path(path)
    name = p.name
    if not p.is_file():
        raise _err(name, f"file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                metadata = f.metadata()
                return {k: f.get_tensor(k) for k in f.keys()}, metadata  # noqa: SIM118
        except Exception as exc:  # SafetensorsError, OSError, ...
            raise _err(name, f"cannot read {p} as safetensors (truncated or corrupt?): {exc}") from exc
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _err(name, f"cannot read {p} (not a safetensors or torch state dict, truncated or corrupt?): "
                         f"{exc}") from exc  # fmt: skip
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise _err(name, f"{p} holds a {type(obj).__name__}, not a state dict")
    return dict(obj), None


def load_lora(source: str | os.PathLike[str] | Mapping[str, Any], *, name: str | None = None) -> NormalizedLora:
    """Reads and normalises a LoRA file (``.safetensors``, or a torch ``.pt``/``.pth``/``.bin``) or state dict.

    Files are parsed once and cached by (resolved path, mtime, size) (the last 4; :func:`clear_lora_cache`).
    Raises :class:`LoraError` naming the file. Does not look at any model: check with :func:`lora_fits`."""
    if isinstance(source, Mapping):
        return normalize_lora_state_dict(source, name=name or "<state dict>")
    p = Path(source)
    try:
        key = _file_key(p)
    except OSError:
        raise _err(name or p.name, f"file not found: {p}") from None
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    sd, metadata = read_lora_file(p)
    lora = normalize_lora_state_dict(sd, name=name or p.name, metadata=metadata, path=key[0])
    with _cache_lock:
        _cache[key] = lora
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return lora


def clear_lora_cache() -> None:
    """Forgets the parsed LoRAs kept by :func:`load_lora`."""
    with _cache_lock:
        _cache.clear()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Full hex sha256 of a file (cached by path, mtime and size)."""
    p = Path(path)
    key = _file_key(p)
    with _cache_lock:
        if key in _sha_cache:
            return _sha_cache[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _cache_lock:
        _sha_cache[key] = digest
    return digest


# ----------------------------------------------------------------------------- the request-side spec


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA of a request: ``source`` (a path or a state dict) and its ``strength``.

    ``strength`` is one float for every expert or a mapping expert name -> float
    (``{"high_noise": 1.0, "low_noise": 0.0}``, ``{"dense": 0.8}``; an expert missing from the mapping
    gets 0, i.e. the LoRA is not applied to it). Values must be finite."""

    source: str | os.PathLike[str] | Mapping[str, Any]
    strength: float | Mapping[str, float] = 1.0
    _strengths: Mapping[str, float] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.source, Mapping):
            pass
        elif isinstance(self.source, (str, os.PathLike)):
            object.__setattr__(self, "source", os.fspath(self.source))
        else:
            raise TypeError(f"LoraSpec.source must be a path or a state dict, not {type(self.source).__name__}")
        if isinstance(self.strength, Mapping):
            bad = sorted(set(self.strength) - set(EXPERT_NAMES))
            if bad:
                raise ValueError(f"LoraSpec strength: unknown expert names {bad}; use {list(EXPERT_NAMES)}")
            values = {str(k): float(v) for k, v in self.strength.items()}
            object.__setattr__(self, "strength", types.MappingProxyType(values))
        else:
            values = {}
            object.__setattr__(self, "strength", float(self.strength))
        for v in [*values.values(), *([] if values else [self.strength])]:
            if not math.isfinite(v):  # type: ignore[arg-type]
                raise ValueError(f"LoraSpec strength must be finite, got {v}")

    def strength_for(self, expert: str) -> float:
        """The strength for the expert ``"high_noise"`` / ``"low_noise"`` / ``"dense"``."""
        if isinstance(self.strength, Mapping):
            return float(self.strength.get(expert, 0.0))
        return float(self.strength)

    @property
    def name(self) -> str:
        """The file name (``"<state dict>"`` for an in-memory source)."""
        return "<state dict>" if isinstance(self.source, Mapping) else Path(self.source).name

    @property
    def sha256_short(self) -> str | None:
        """First 12 hex digits of the file's sha256 (None for a state dict)."""
        if isinstance(self.source, Mapping):
            return None
        return file_sha256(self.source)[:12]

    def load(self) -> NormalizedLora:
        """``load_lora(self.source)`` (cached)."""
        return load_lora(self.source)


# ----------------------------------------------------------------------------- fitting


def _model_signature(model_or_config: WanModel | DiTConfig) -> tuple[str, dict[str, tuple[tuple[int, ...], str]]]:
    """(description, {official parameter name: (shape, owner module kind)})."""
    from .modules.model import DiTConfig, WanModel

    if isinstance(model_or_config, DiTConfig):
        return _config_signature(model_or_config)
    if not isinstance(model_or_config, WanModel):
        raise TypeError(f"expected a WanModel or DiTConfig, got {type(model_or_config).__name__}")
    return _describe(model_or_config.config), _param_table(model_or_config)


_SIG_CACHE: dict[Any, tuple[str, dict[str, tuple[tuple[int, ...], str]]]] = {}


def _config_signature(cfg: DiTConfig) -> tuple[str, dict[str, tuple[tuple[int, ...], str]]]:
    hit = _SIG_CACHE.get(cfg)
    if hit is None:
        import torch

        from .modules.model import WanModel

        with torch.device("meta"):
            model = WanModel(cfg)
        hit = _SIG_CACHE[cfg] = (_describe(cfg), _param_table(model))
    return hit


def _param_table(model: nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    from torch import nn

    out = {}
    for mod_name, module in model.named_modules():
        kind = "linear" if isinstance(module, nn.Linear) else "conv" if isinstance(module, nn.Conv3d) else "other"
        for pname, p in module.named_parameters(recurse=False):
            out[f"{mod_name}.{pname}" if mod_name else pname] = (tuple(p.shape), kind)
    return out


_KNOWN_DIMS = {5120: "A14B (or Wan 2.1 14B)", 3072: "TI2V-5B", 1536: "Wan 2.1 1.3B"}


def _describe(cfg: DiTConfig) -> str:
    known = _KNOWN_DIMS.get(cfg.dim)
    size = f", {known}" if known else ""
    return f"the loaded {cfg.model_type} DiT (dim {cfg.dim}, {cfg.num_layers} layers{size})"


def _made_for(dim: int | None) -> str:
    if dim is None:
        return ""
    known = _KNOWN_DIMS.get(dim)
    return f"it was made for a DiT with dim {dim}" + (f" ({known})" if known else "") + "; "


def lora_problems(lora: NormalizedLora, model_or_config: WanModel | DiTConfig) -> list[str]:
    """Every reason ``lora`` does not fit the model (empty list: it fits)."""
    _, table = _model_signature(model_or_config)
    problems: list[str] = []
    for module, lr in lora.low_rank.items():
        entry = table.get(f"{module}.weight")
        if entry is None or entry[1] not in ("linear", "conv"):
            problems.append(f"{module} is not a linear/conv layer of this model")
            continue
        shape, _ = entry
        want_down = (lr.rank, *shape[1:])
        up_ok = tuple(lr.up.shape[:2]) == (shape[0], lr.rank)
        if tuple(lr.down.shape) != want_down or not up_ok:
            problems.append(f"{module}: LoRA down {list(lr.down.shape)} / up {list(lr.up.shape)} vs weight "
                            f"{list(shape)}")  # fmt: skip
    for param, d in lora.deltas.items():
        entry = table.get(param)
        if entry is None:
            problems.append(f"{param} is not a parameter of this model")
        elif tuple(d.shape) != entry[0] and not (d.numel() == math.prod(entry[0]) and param.endswith("modulation")):
            problems.append(f"{param}: delta {list(d.shape)} vs parameter {list(entry[0])}")
    return problems


def check_lora_fits(lora: NormalizedLora, model_or_config: WanModel | DiTConfig) -> None:
    """Raises :class:`LoraError` (naming the file, the dim it seems made for and the model) if it does not fit."""
    problems = lora_problems(lora, model_or_config)
    if problems:
        desc, _ = _model_signature(model_or_config)
        shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
        raise _err(lora.name, f"does not fit {desc}: {_made_for(lora.dim)}{shown}")


def lora_fits(lora: NormalizedLora | str | os.PathLike[str], model_or_config: WanModel | DiTConfig) -> bool | str:
    """``True`` if the LoRA (object or file) fits the model / config, else a one-line reason (for UI lists)."""
    try:
        normalized = lora if isinstance(lora, NormalizedLora) else load_lora(lora)
        check_lora_fits(normalized, model_or_config)
    except LoraError as exc:
        return str(exc)
    return True


# ----------------------------------------------------------------------------- applying

_HOOKED_RE = re.compile(r"^(blocks\.\d+\.(self_attn|cross_attn)\.[qkvo]|blocks\.\d+\.ffn\.[02]|text_embedding\.[02])$")


def _hookable(module: str) -> bool:
    """Linear layers the DiT calls as modules (so a forward hook sees every call). The float32 layers
    evaluated through ``layers.linear_f32`` (time_embedding, time_projection, head.head) are not."""
    return bool(_HOOKED_RE.match(module))


class _HookTerms:
    """The extra output of one hooked linear: ``x @ down^T @ up^T (+ x @ dense^T)``, in x's dtype."""

    def __init__(self, down: Tensor | None, up: Tensor | None, dense: Tensor | None) -> None:
        self.master = (down, up, dense)
        self.cast: tuple[Any, ...] = (None, None, None, None)  # (device, dtype, down, up, dense)

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
        import torch
        import torch.nn.functional as F  # noqa: N812

        x = args[0]
        if self.cast[0] != x.device or self.cast[1] != x.dtype:
            self.cast = (x.device, x.dtype, *(None if t is None else t.to(x.device, x.dtype) for t in self.master))
        _, _, down, up, dense = self.cast
        in_place = not torch.is_grad_enabled() and output.dtype == x.dtype and output.is_contiguous()
        if in_place:  # output is the layer's fresh result: accumulate into it (addmm fuses the up-projection)
            out2d = output.view(-1, output.shape[-1])
            if down is not None:
                out2d.addmm_(F.linear(x, down).reshape(-1, down.shape[0]), up.t())
            if dense is not None:
                out2d.addmm_(x.reshape(-1, x.shape[-1]), dense.t())
            return output
        if down is not None:
            output = output + F.linear(F.linear(x, down), up)
        if dense is not None:
            output = output + F.linear(x, dense)
        return output


@dataclass
class _Swap:
    param: Tensor  # the nn.Parameter
    original: Tensor  # the original tensor (same object) or its CPU copy (merged mode on an accelerator)
    original_device: Any
    patched: Tensor  # what param.data points to while patched (kept to detect replacement)

    def intact(self) -> bool:
        return self.param.data_ptr() == self.patched.data_ptr() and self.param.shape == self.patched.shape

    def restore(self) -> None:
        if self.intact():
            orig = self.original
            self.param.data = orig if orig.device == self.original_device else orig.to(self.original_device)


class LoraPatcher:
    """The LoRA state of one :class:`WanModel` (one per model; get it with ``LoraPatcher.of(model)``).

    ``set(loras, merge=False) -> bool`` makes ``loras`` (``[(NormalizedLora, strength), ...]``) the
    active set and returns True if anything changed; ``clear()`` removes everything (bit-identical
    base weights). See the module docstring for the two modes and their memory cost."""

    _ATTR = "_wan_lora_patcher"

    def __init__(self, model: WanModel) -> None:
        self.model = model
        self._key: tuple[Any, ...] = ()
        self._hooks: list[Any] = []
        self._swaps: dict[str, _Swap] = {}
        self.merged = False

    @classmethod
    def of(cls, model: WanModel) -> LoraPatcher:
        patcher = model.__dict__.get(cls._ATTR)
        if patcher is None:
            patcher = cls(model)
            model.__dict__[cls._ATTR] = patcher
        return patcher

    @property
    def active(self) -> tuple[tuple[str, float], ...]:
        """(name, strength) of each applied LoRA (strength-0 entries excluded)."""
        return tuple((lora.name, s) for lora, s in self._entries)

    _entries: tuple[tuple[NormalizedLora, float], ...] = ()

    def _intact(self) -> bool:
        return all(s.intact() for s in self._swaps.values())

    def set(self, loras: Sequence[tuple[NormalizedLora, float]], *, merge: bool = False) -> bool:
        """Makes exactly ``loras`` active (validated first; rolled back on failure). True if anything changed."""
        import torch

        entries = []
        for item in loras:
            lora, strength = item
            if not isinstance(lora, NormalizedLora):
                raise TypeError(f"expected (NormalizedLora, strength) pairs, got {type(lora).__name__}")
            strength = float(strength)
            if not math.isfinite(strength):
                raise ValueError(f"LoRA {lora.name}: strength must be finite, got {strength}")
            if strength != 0.0:
                entries.append((lora, strength))
        key = (bool(merge) and bool(entries), *((id(lora), s) for lora, s in entries))
        if key == self._key and self._intact():
            return False
        for lora, _ in entries:  # validate everything before touching anything
            check_lora_fits(lora, self.model)
        changed = bool(self._hooks or self._swaps)
        self._forget_replaced()
        self._remove_hooks()
        try:
            with torch.no_grad(), torch.inference_mode(False):
                self._apply(entries, merge=bool(merge))
        except BaseException:
            self.clear()
            raise
        self._key = key
        self._entries = tuple(entries)
        self.merged = bool(merge) and bool(entries)
        return changed or bool(entries)

    def clear(self) -> bool:
        """Removes every LoRA; base parameters are then bit-identical to before. True if anything was applied."""
        had = bool(self._hooks or self._swaps or self._entries)
        self._remove_hooks()
        for swap in self._swaps.values():
            swap.restore()
        self._swaps.clear()
        self._key = ()
        self._entries = ()
        self.merged = False
        return had

    # -- internals

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def _forget_replaced(self) -> None:
        """Drops the records of swapped tensors someone replaced (e.g. an offloader reloaded the weights)."""
        for name in [n for n, s in self._swaps.items() if not s.intact()]:
            del self._swaps[name]

    def _apply(self, entries: list[tuple[NormalizedLora, float]], *, merge: bool) -> None:
        import torch

        params = dict(self.model.named_parameters())
        modules = dict(self.model.named_modules())
        # fp8 layers (wan.quant.FP8Linear: weight_scale) are always hooked, even with merge=True: their
        # float8 weight cannot take a merged delta, and the tensor-swap path must never touch it
        fp8 = {name for name, m in modules.items() if hasattr(m, "weight_scale")}
        # parameter -> list of float32 deltas (computed lazily, one target at a time)
        swap_terms: dict[str, list[Callable[[], Tensor]]] = {}
        hook_terms: dict[str, tuple[list[Tensor], list[Tensor], list[Tensor]]] = {}
        for lora, strength in entries:
            for module, lr in lora.low_rank.items():
                if (not merge or module in fp8) and _hookable(module):
                    downs, ups, _ = hook_terms.setdefault(module, ([], [], []))
                    downs.append(lr.down.float())
                    ups.append(lr.up.float().reshape(lr.up.shape[0], -1) * (strength * lr.scale))
                else:
                    swap_terms.setdefault(f"{module}.weight", []).append(lambda lr=lr, s=strength: lr.delta() * s)
            for param, delta in lora.deltas.items():
                module = param.rsplit(".", 1)[0]
                if (not merge or module in fp8) and param.endswith(".weight") and _hookable(module):
                    hook_terms.setdefault(module, ([], [], []))[2].append(delta.float() * strength)
                else:
                    swap_terms.setdefault(param, []).append(lambda d=delta, s=strength: d.float() * s)
        # swaps: restore the ones no longer needed, (re)patch the others from the original tensors
        for name in [n for n in self._swaps if n not in swap_terms]:
            self._swaps.pop(name).restore()
        for name, terms in swap_terms.items():
            param = params[name]
            swap = self._swaps.get(name)
            base = param.data if swap is None else swap.original
            device = param.device if swap is None else swap.original_device
            total = terms[0]()
            for term in terms[1:]:
                total = total + term()
            work = base.to(device) if base.device != device else base
            patched = (work.float() + total.to(device).reshape(work.shape)).to(work.dtype)
            if swap is None:
                original = base
                if merge and base.device.type != "cpu":  # keep the exact original in (pinned) CPU RAM
                    original = base.to("cpu")
                    if base.device.type == "cuda":
                        original = original.pin_memory()
                swap = _Swap(param=param, original=original, original_device=device, patched=patched)
                self._swaps[name] = swap
            swap.patched = patched
            param.data = patched
            del work, total
        for module, (downs, ups, denses) in hook_terms.items():
            down = torch.cat(downs, dim=0) if downs else None
            up = torch.cat(ups, dim=1) if ups else None
            dense = None
            for d in denses:
                dense = d if dense is None else dense + d
            weight = modules[module].weight
            # stored in the layer's dtype (its inputs' dtype: no per-call cast); fp8 layers: their compute dtype
            dtype = getattr(modules[module], "compute_dtype", None) or weight.dtype
            dtype = dtype if dtype.itemsize >= 2 else torch.bfloat16
            terms = _HookTerms(*(None if t is None else t.to(weight.device, dtype) for t in (down, up, dense)))
            self._hooks.append(modules[module].register_forward_hook(terms))


def apply_loras(
    model: WanModel, loras: Sequence[tuple[NormalizedLora, float]], *, merge: bool = False
) -> bool:
    """Makes ``loras`` the active set of ``model`` (see :meth:`LoraPatcher.set`); True if anything changed
    (then rebuild any ``encode_context`` cache). ``[]`` removes everything."""
    return LoraPatcher.of(model).set(loras, merge=merge)


def remove_loras(model: WanModel) -> bool:
    """Removes every LoRA from ``model`` (bit-identical base weights); True if there was any."""
    patcher = model.__dict__.get(LoraPatcher._ATTR)
    return patcher.clear() if patcher is not None else False


def active_loras(model: WanModel) -> tuple[tuple[str, float], ...]:
    """(name, strength) of the LoRAs applied to ``model``."""
    patcher = model.__dict__.get(LoraPatcher._ATTR)
    return patcher.active if patcher is not None else ()


@contextmanager
def loras_applied(
    model: WanModel, loras: Sequence[tuple[NormalizedLora, float]], *, merge: bool = False
) -> Iterator[WanModel]:
    """``with loras_applied(model, [(lora, 1.0)]): ...`` — applied inside, removed on exit."""
    apply_loras(model, loras, merge=merge)
    try:
        yield model
    finally:
        remove_loras(model)
