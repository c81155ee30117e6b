"""Finding, downloading and loading Wan 2.2 checkpoints (official and Diffusers layouts).

Official layout (``Wan-AI/Wan2.2-{T2V-A14B,I2V-A14B,TI2V-5B}``)::

    high_noise_model/ low_noise_model/    (A14B; the 5B has these two files at the root instead)
        config.json                        official WanModel config (12 keys)
        diffusion_pytorch_model.safetensors                      one file, or
        diffusion_pytorch_model.safetensors.index.json + diffusion_pytorch_model-0000k-of-0000n.safetensors
    models_t5_umt5-xxl-enc-bf16.pth        umT5 encoder, official key names (torch.save)
    Wan2.1_VAE.pth | Wan2.2_VAE.pth        VAE, official key names (torch.save)
    google/umt5-xxl/                       tokenizer

Diffusers layout (``...-Diffusers``): ``model_index.json``, ``transformer/`` (the high-noise expert,
used while ``t >= boundary``, or the 5B model), ``transformer_2/`` (low-noise expert), ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``. Weights are renamed to the official keys on load.

Loading never materialises random weights: each model is built on the ``meta`` device, the
safetensors files are memory-mapped (``safe_open``), cast to the target dtype only where needed and
assigned with ``load_state_dict(strict=True, assign=True)`` after an explicit key/shape check. Every
problem raises ``CheckpointError`` naming the file or folder and what was expected.

Nothing here runs at import; torch, safetensors and huggingface_hub are imported when used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from .configs import ModelSpec, check_dit_config, dit_config_from_json, get_spec
from .errors import CheckpointError, T5CheckpointError, T5FileNotFoundError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from .modules.model import DiTConfig, WanModel
    from .modules.t5 import TextEncoder
    from .modules.vae21 import Wan21VAE
    from .modules.vae22 import Wan22VAE

__all__ = [
    "DIT_INDEX",
    "DIT_WEIGHTS",
    "LAYOUTS",
    "CheckpointError",
    "T5CheckpointError",
    "T5FileNotFoundError",
    "Components",
    "Layout",
    "detect_layout",
    "download_checkpoint",
    "find_checkpoint",
    "hf_cache_dir",
    "load_components",
    "load_dit",
    "T5_FP8_FILES",
    "find_text_encoder_file",
    "load_text_encoder",
    "load_text_encoder_file",
    "load_text_encoder_hf",
    "load_text_encoder_official",
    "load_umt5_tokenizer",
    "load_vae",
    "missing_files",
    "read_state_dict_file",
    "read_text_encoder_file",
    "read_weight_folder",
    "required_files",
    "resolve_dtype",
]

Layout = Literal["official", "diffusers"]
LAYOUTS: Final[tuple[Layout, ...]] = ("official", "diffusers")

DIT_WEIGHTS: Final[str] = "diffusion_pytorch_model.safetensors"
DIT_INDEX: Final[str] = DIT_WEIGHTS + ".index.json"
TEXT_ENCODER_WEIGHTS: Final[str] = "model.safetensors"
TEXT_ENCODER_INDEX: Final[str] = TEXT_ENCODER_WEIGHTS + ".index.json"
MODEL_INDEX: Final[str] = "model_index.json"
# Ready fp8 umT5 encoders, used when the official bf16 .pth is absent: LightX2V's (official keys,
# float8 attn/ffn weights + per-channel <module>.weight_scale [out, 1]) and ComfyUI's (HF keys,
# per-tensor <module>.scale_weight + the root 'scaled_fp8' marker).
T5_FP8_FILES: Final[tuple[str, ...]] = ("models_t5_umt5-xxl-enc-fp8.pth", "umt5_xxl_fp8_e4m3fn_scaled.safetensors")
_TOKENIZER_MARKERS: Final[tuple[str, ...]] = ("tokenizer.json", "spiece.model", "tokenizer_config.json")
_MAX_LISTED: Final[int] = 8
_OFFLINE_VALUES: Final[frozenset[str]] = frozenset({"1", "true", "yes", "on"})


# ----------------------------------------------------------------------------- small helpers


def _listed(items: Iterable[str], limit: int = _MAX_LISTED) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _read_json(path: Path, cache: dict[Path, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON object in ``path``. With ``cache`` (one per ``load_components`` call) a file parsed
    before is not read again."""
    if cache is not None and path in cache:
        return cache[path]
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if cache is not None:
        cache[path] = data
    return data


def resolve_dtype(dtype: Any) -> torch.dtype:
    """A ``torch.dtype`` from a dtype or a name (``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"``,
    ``"float32"``/``"fp32"``, optionally prefixed ``"torch."``). Raises ``ValueError`` otherwise."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}  # fmt: skip
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in names:
        return names[dtype.lower().removeprefix("torch.")]
    raise ValueError(f"dtype must be a torch floating dtype or one of {sorted(names)}, got {dtype!r}")


# ----------------------------------------------------------------------------- safetensors


def _weight_files(
    model_dir: Path,
    single: str,
    index: str,
    json_cache: dict[Path, dict[str, Any]] | None = None,
    *,
    any_single: bool = False,
) -> list[Path]:
    """The safetensors files of a model folder: the shards listed by ``index``, or ``single``. With
    ``any_single``, a folder with neither but exactly one ``*.safetensors`` file uses that file."""
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: model folder not found")
    index_path = model_dir / index
    if index_path.is_file():
        weight_map = _read_json(index_path, json_cache).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index_path}: expected a non-empty 'weight_map' of tensor name -> shard file")
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (model_dir / s).is_file()]
        if missing:
            raise CheckpointError(f"{index_path}: lists shard(s) missing from {model_dir}: {_listed(missing)}")
        return [model_dir / s for s in shards]
    if (model_dir / single).is_file():
        return [model_dir / single]
    present = sorted(p.name for p in model_dir.glob("*.safetensors") if p.is_file())
    if any_single and len(present) == 1:
        return [model_dir / present[0]]
    found = f"only {_listed(present)}" if present else "no safetensors files"
    raise CheckpointError(f"{model_dir}: expected {single}, or {index} with its shards; found neither ({found})")


def _open_safetensors(path: Path) -> Any:
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # SafetensorError (truncated, bad header), OSError
        raise CheckpointError(f"{path}: cannot read the safetensors file, it is truncated or corrupt ({exc})") from exc


def _safetensors_shapes(files: Iterable[Path]) -> dict[str, tuple[tuple[int, ...], Path]]:
    """Tensor name -> (shape, file) from the headers only (no tensor data is read)."""
    out: dict[str, tuple[tuple[int, ...], Path]] = {}
    for path in files:
        with _open_safetensors(path) as handle:
            for key in handle.keys():
                if key in out:
                    raise CheckpointError(f"{path}: tensor {key!r} is also in {out[key][1].name}")
                out[key] = (tuple(handle.get_slice(key).get_shape()), path)
    return out


def _read_safetensors(files: Iterable[Path]) -> dict[str, Tensor]:
    """All tensors of ``files``, memory-mapped on the CPU (copy-on-write; no data is copied). A tensor
    name found in two files raises ``CheckpointError`` naming both."""
    out: dict[str, Tensor] = {}
    origin: dict[str, Path] = {}
    for path in files:
        with _open_safetensors(path) as handle:
            for key in handle.keys():
                if key in origin:
                    raise CheckpointError(f"{path}: tensor {key!r} is also in {origin[key].name}")
                try:
                    out[key] = handle.get_tensor(key)
                except Exception as exc:
                    raise CheckpointError(f"{path}: cannot read tensor {key!r} ({exc})") from exc
                origin[key] = path
    return out


def read_weight_folder(
    folder: str | Path, single_name: str, index_name: str, *, any_single: bool = False
) -> dict[str, Tensor]:
    """All tensors of a safetensors model folder, memory-mapped on the CPU: ``single_name``, or the
    shards listed by ``index_name`` (``any_single``: see below). Raises ``CheckpointError`` naming
    the folder or file: folder or shard missing, index invalid, file truncated or corrupt, or one
    tensor stored in two shards (both named). With ``any_single``, a folder with neither file but
    exactly one ``*.safetensors`` file reads that file."""
    return _read_safetensors(_weight_files(Path(folder), single_name, index_name, any_single=any_single))


def read_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """The flat ``{name: tensor}`` dict of one checkpoint file on the CPU: ``.safetensors``
    (memory-mapped), otherwise a torch file (``.pth``/``.pt``/``.bin``: ``torch.load`` with
    ``weights_only``, memory-mapped; only a file that cannot be memory-mapped, the legacy non-zip
    format, is read again without mmap). A dict nested under ``"state_dict"`` is unwrapped. Raises
    ``CheckpointError`` naming the file: not found, truncated or corrupt, or not a flat tensor dict."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    if path.suffix == ".safetensors":
        return _read_safetensors([path])
    try:
        try:
            sd: Any = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):  # legacy (non-zip) format cannot be memory-mapped: retry
                raise
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, not a torch file
        raise CheckpointError(f"{path}: cannot read the file as a torch state dict, it is truncated or corrupt ({exc})") from exc
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{path}: expected a flat dict of tensor name -> tensor, got {type(sd).__name__}")
    return dict(sd)


# ----------------------------------------------------------------------------- state-dict checks


def _check_state_dict(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]], *, source: str | Path, what: str
) -> None:
    """Raises ``CheckpointError`` listing missing / unexpected keys and shape mismatches (first few)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k}: {tuple(found[k])} (expected {tuple(expected[k])})"
             for k in sorted(set(expected) & set(found)) if tuple(found[k]) != tuple(expected[k])]  # fmt: skip
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listed(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatch(es): {_listed(wrong)}")
    raise CheckpointError(f"{source}: the weights do not match the {what}: " + "; ".join(parts))


def _assign(model: Any, sd: Mapping[str, Tensor], *, source: str | Path, what: str, checked: bool = False) -> None:
    """Assigns ``sd`` to the ``meta``-built ``model`` (strict). The keys and shapes are checked first
    (a ``CheckpointError`` listing the differences) unless the caller already did (``checked``)."""
    if not checked:
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        _check_state_dict(expected, {k: tuple(v.shape) for k, v in sd.items()}, source=source, what=what)
    try:
        model.load_state_dict(dict(sd), strict=True, assign=True)
    except RuntimeError as exc:  # defensive: the check above should catch every mismatch
        raise CheckpointError(f"{source}: cannot load the weights into the {what} ({exc})") from exc


# ----------------------------------------------------------------------------- layout


def detect_layout(ckpt_dir: str | Path) -> Layout:
    """``"diffusers"`` if ``ckpt_dir`` has ``model_index.json`` or ``transformer/``, ``"official"`` if
    it has ``high_noise_model/``, ``low_noise_model/``, a root ``config.json``, a ``.pth`` file or
    ``google/umt5-xxl/``. Raises ``CheckpointError`` otherwise."""
    root = Path(ckpt_dir)
    if not root.is_dir():
        raise CheckpointError(f"{root}: checkpoint folder not found")
    if (root / MODEL_INDEX).is_file() or (root / "transformer").is_dir():
        return "diffusers"
    official_markers = ("high_noise_model", "low_noise_model", "config.json", "google/umt5-xxl")
    if any((root / m).exists() for m in official_markers) or any(root.glob("*.pth")):
        return "official"
    raise CheckpointError(
        f"{root}: not a Wan checkpoint folder: expected the official layout (high_noise_model/, low_noise_model/ "
        f"or config.json + {DIT_WEIGHTS}, a VAE .pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/) or the "
        f"Diffusers layout ({MODEL_INDEX}, transformer/, vae/, text_encoder/, tokenizer/)"
    )


# ----------------------------------------------------------------------------- DiT


@dataclass(frozen=True)
class _DiTSource:
    """A validated DiT folder: its config, weight files, whether keys are in Diffusers naming and the
    tensor name -> shape of the files as inspected (file naming; already checked against the model
    that ``config`` builds). ``_load_dit_source`` loads it without inspecting it again."""

    folder: Path
    config: DiTConfig
    files: tuple[Path, ...]
    diffusers: bool
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        """The folder and its weight file names, for error messages."""
        return f"{self.folder} ({', '.join(p.name for p in self.files)})"


def _text_dim_from_shapes(shapes: Mapping[str, tuple[tuple[int, ...], Path]]) -> int | None:
    for key in ("text_embedding.0.weight", "condition_embedder.text_embedder.linear_1.weight"):
        if key in shapes and len(shapes[key][0]) == 2:
            return int(shapes[key][0][1])
    return None


def _inspect_dit(
    model_dir: Path,
    spec: ModelSpec | None,
    json_cache: dict[Path, dict[str, Any]] | None = None,
    files: Iterable[Path] | None = None,
) -> _DiTSource:
    """Reads config.json, the shard index and the safetensors headers of a DiT folder once, and checks
    the key names and shapes against a ``meta`` WanModel of that config (and the task, with ``spec``).
    ``text_dim`` is the width of the text embedding's first weight. ``files``: the weight files to use
    instead of the folder's (``dit_files``; the folder then only needs ``config.json``). Scaled-fp8
    files are checked under their normalised names (``wan.quant.split_scaled_fp8``: prefix stripped,
    scales and marker set aside)."""
    import torch

    from .modules.model import WanModel
    from .quant import split_scaled_fp8

    config_path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: DiT folder not found (expected config.json + {DIT_WEIGHTS})")
    raw = _read_json(config_path, json_cache)
    if files is None:
        files = _weight_files(model_dir, DIT_WEIGHTS, DIT_INDEX, json_cache)
    else:
        files = [Path(f) for f in files]
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{f}: DiT weights file not found (given as dit_files for {model_dir})")
    shapes = _safetensors_shapes(files)
    normalised = split_scaled_fp8(shapes).tensors
    cfg = dit_config_from_json(raw, source=config_path, text_dim=_text_dim_from_shapes(normalised))
    if spec is not None:
        check_dit_config(spec, cfg, source=config_path)
    diffusers = raw.get("_class_name") == "WanTransformer3DModel"
    file_shapes: dict[str, tuple[int, ...]] = {k: s for k, (s, _) in shapes.items()}
    found = {k: s for k, (s, _) in normalised.items()}
    if diffusers:
        meta = {k: torch.empty(s, device="meta") for k, s in found.items()}
        found = {k: tuple(v.shape) for k, v in _convert_dit_keys(meta, model_dir).items()}
    with torch.device("meta"):
        model = WanModel(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    del model
    source = _DiTSource(folder=model_dir, config=cfg, files=tuple(files), diffusers=diffusers, shapes=file_shapes)
    _check_state_dict(expected, found, source=source.label, what=f"DiT described by {config_path.name}")
    return source


def _convert_dit_keys(sd: Mapping[str, Tensor], model_dir: Path) -> dict[str, Tensor]:
    from .modules.conversion import DiTCheckpointError, convert_diffusers_dit_state_dict

    try:
        return convert_diffusers_dit_state_dict(sd)
    except DiTCheckpointError as exc:  # unknown keys; anything else is a bug and propagates as is
        raise CheckpointError(f"{model_dir}: not a Diffusers WanTransformer3DModel state dict ({exc})") from exc


def load_dit(
    model_dir: str | Path, *, dtype: Any, device: Any = "cpu", quantize: str | None = None,
    weights_file: str | Path | None = None,
) -> WanModel:  # fmt: skip
    """Loads one DiT (an A14B expert or the 5B model) from a folder with ``config.json`` and
    ``diffusion_pytorch_model.safetensors`` (or its sharded ``.index.json`` form), official or
    Diffusers naming (converted to the official keys).

    The model is built on ``meta``, the weights are memory-mapped and cast to ``dtype`` (no copy
    when the file already has that dtype and ``device`` is the CPU) and assigned strictly.
    ``text_dim`` is the width of ``text_embedding.0.weight``. ``quantize="fp8"``: see
    ``_load_dit_source``; ``weights_file``: a safetensors file to read instead of the folder's (e.g. a
    ComfyUI/LightX2V scaled-fp8 file; the folder then only needs ``config.json``). Returns the model in
    eval mode without gradients. Raises ``CheckpointError``.
    """
    from .quant import check_quantize

    dtype = resolve_dtype(dtype)  # a bad dtype fails before any file is read
    quantize = check_quantize(quantize)
    files = None if weights_file is None else [Path(weights_file)]
    source = _inspect_dit(Path(model_dir), None, files=files)
    return _load_dit_source(source, dtype=dtype, device=device, quantize=quantize)


def _load_dit_source(
    source: _DiTSource, *, dtype: Any, device: Any = "cpu", keep_float32: bool = False, quantize: str | None = None
) -> WanModel:
    """Loads an inspected DiT folder (see ``load_dit``) without inspecting it again: config.json and
    the index are not re-read and each safetensors file is opened once, to map its tensors. The keys
    and shapes were checked against the model by ``_inspect_dit``; only a change of the files since
    then is checked here (same names and shapes as inspected). ``keep_float32`` keeps the parameters
    that the forward computes in float32 anyway (``is_float32_parameter``: time embedding/projection,
    modulation, head, norm3) in float32.

    fp8 (``wan.quant``): a scaled-fp8 file (ComfyUI/Kijai ``scale_weight`` + ``scaled_fp8`` marker,
    or LightX2V ``weight_scale``; ``model.diffusion_model.`` prefix stripped) loads its block linears
    as ``FP8Linear`` with exactly the stored float8 weights and float32 scales, whatever ``quantize``;
    float8 weights of other layers are dequantised (float32 product) and cast like any tensor.
    ``quantize="fp8"`` also quantises every block linear stored in higher precision (per output
    channel, on ``device``, one tensor at a time). A float8 weight without a scale raises
    ``CheckpointError`` naming the file."""
    import torch

    from .modules.model import WanModel, is_float32_parameter
    from .quant import FP8_DTYPE, dequantize_weight, is_dit_quantizable, quantize_dit, quantize_weight, split_scaled_fp8

    dtype = resolve_dtype(dtype)
    device = torch.device(device)
    sd = _read_safetensors(source.files)
    _check_state_dict(
        source.shapes, {k: tuple(v.shape) for k, v in sd.items()}, source=source.label,
        what="safetensors headers read when the folder was validated (the files changed since)",
    )  # fmt: skip
    split = split_scaled_fp8(sd)
    sd, scales = split.tensors, _checked_fp8_scales(split.tensors, split.scales, source.label)
    if source.diffusers:
        if scales:
            raise CheckpointError(f"{source.label}: scaled-fp8 weights in Diffusers naming are not supported "
                                  "(use the official/ComfyUI key names)")  # fmt: skip
        sd = _convert_dit_keys(sd, source.folder)
    with torch.device("meta"):
        model = WanModel(source.config)
    stored_fp8 = {m: scales[m].numel() > 1 for m in scales if is_dit_quantizable(m)
                  and sd[f"{m}.weight"].dtype == FP8_DTYPE}  # fmt: skip
    layers = dict(stored_fp8)
    if quantize == "fp8":
        layers.update({n: True for n, _ in model.named_modules() if is_dit_quantizable(n) and n not in stored_fp8})
    if layers:
        quantize_dit(model, per_channel=layers, compute_dtype=dtype, only=layers)
    cast: dict[str, Tensor] = {}
    for key, tensor in sd.items():
        module, is_weight = key.rsplit(".", 1)[0], key.endswith(".weight")
        if is_weight and module in stored_fp8:  # exactly as stored
            cast[key], cast[f"{module}.weight_scale"] = tensor.to(device), scales[module].to(device)
            continue
        if is_weight and module in scales:  # another float8 weight (a layer kept in precision, or e5m2)
            tensor = dequantize_weight(tensor, scales[module], torch.float32)
        if is_weight and module in layers:
            cast[key], cast[f"{module}.weight_scale"] = quantize_weight(tensor.to(device), per_channel=True)
            continue
        target = torch.float32 if keep_float32 and is_float32_parameter(key) else dtype
        cast[key] = tensor.to(device=device, dtype=target) if tensor.is_floating_point() else tensor.to(device)
    del sd
    _assign(model, cast, source=source.folder, what="DiT", checked=True)
    return model.eval().requires_grad_(False)


def _checked_fp8_scales(sd: Mapping[str, Tensor], scales: Mapping[str, Tensor], label: str) -> dict[str, Tensor]:
    """The scales of a scaled-fp8 state dict, float32 ``[]`` (one element) or ``[out, 1]``; every
    float8 weight must have one and every scale a float8 weight (``CheckpointError`` naming ``label``)."""
    import torch

    fp8_dtypes = {torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz}
    no_scale = [k for k, v in sd.items() if v.dtype in fp8_dtypes and (not k.endswith(".weight") or k[:-7] not in scales)]
    if no_scale:
        raise CheckpointError(
            f"{label}: {len(no_scale)} float8 tensor(s) without a scale: {_listed(no_scale)}. A scaled-fp8 file "
            "stores <module>.scale_weight (ComfyUI/Kijai *_fp8_scaled, with the root 'scaled_fp8' marker) or "
            "<module>.weight_scale (LightX2V) next to each float8 weight; unscaled fp8 files are not supported"
        )
    out: dict[str, Tensor] = {}
    for module, scale in scales.items():
        weight = sd.get(f"{module}.weight")
        if weight is None or weight.dtype not in fp8_dtypes or weight.ndim != 2:
            what = "missing" if weight is None else f"{weight.dtype} {list(weight.shape)}"
            raise CheckpointError(f"{label}: scale for {module!r} without a 2-D float8 weight ({what})")
        s = scale.to(torch.float32)
        if s.numel() == 1:
            out[module] = s.reshape(())
        elif s.numel() == weight.shape[0]:
            out[module] = s.reshape(weight.shape[0], 1)
        else:
            raise CheckpointError(f"{label}: the scale of {module!r} has shape {list(scale.shape)}; expected one "
                                  f"element or one per output channel ({weight.shape[0]})")  # fmt: skip
    return out


# ----------------------------------------------------------------------------- VAE


def _vae_classes(kind: str) -> tuple[Any, Any, Callable[[Mapping[str, Tensor]], dict[str, Tensor]]]:
    if kind == "wan2.1":
        from .modules.vae21 import Wan21VAE, Wan21VAEConfig, convert_diffusers_vae21_state_dict

        return Wan21VAE, Wan21VAEConfig, convert_diffusers_vae21_state_dict
    if kind == "wan2.2":
        from .modules.vae22 import Wan22VAE, Wan22VAEConfig, convert_diffusers_vae22_state_dict

        return Wan22VAE, Wan22VAEConfig, convert_diffusers_vae22_state_dict
    raise ValueError(f"VAE kind must be 'wan2.1' or 'wan2.2', got {kind!r}")


def load_vae(path: str | Path, *, kind: str | None = None, device: Any = "cpu") -> Wan21VAE | Wan22VAE:
    """Loads a Wan VAE in float32: an official ``Wan2.1_VAE.pth`` / ``Wan2.2_VAE.pth`` file, or a
    Diffusers ``vae/`` folder (``config.json`` with ``latents_mean``/``latents_std`` +
    ``diffusion_pytorch_model.safetensors``). ``kind`` ("wan2.1" | "wan2.2") is inferred from the
    weights (nested ``downsamples`` / ``is_residual``) and, when given, must match. Raises
    ``CheckpointError``."""
    import torch

    path = Path(path)
    device = torch.device(device)
    if path.is_dir():
        config_path = path / "config.json"
        raw = _read_json(config_path)
        found_kind = "wan2.2" if raw.get("is_residual", False) else "wan2.1"
        if kind is not None and kind != found_kind:
            raise CheckpointError(f"{config_path}: this is a {found_kind} VAE, the task needs a {kind} VAE")
        vae_cls, cfg_cls, convert = _vae_classes(found_kind)
        try:
            cfg = cfg_cls.from_diffusers_config(raw)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{config_path}: invalid AutoencoderKLWan config ({exc})") from exc
        files = _weight_files(path, DIT_WEIGHTS, DIT_INDEX)
        try:
            sd = convert(_read_safetensors(files))
        except ValueError as exc:
            raise CheckpointError(f"{path}: not a Diffusers {found_kind} VAE state dict ({exc})") from exc
    elif path.exists() or path.suffix == ".pth":
        sd = read_state_dict_file(path)
        found_kind = "wan2.2" if any(k.startswith("encoder.downsamples.0.downsamples.") for k in sd) else "wan2.1"
        if kind is not None and kind != found_kind:
            raise CheckpointError(f"{path}: this is a {found_kind} VAE state dict, the task needs a {kind} VAE")
        vae_cls, cfg_cls, _ = _vae_classes(found_kind)
        try:
            cfg = cfg_cls.from_state_dict(sd)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a {found_kind} VAE state dict ({exc})") from exc
    else:
        raise CheckpointError(f"{path}: VAE not found (expected an official .pth file or a Diffusers vae/ folder)")
    with torch.device("meta"):
        vae = vae_cls(cfg)
    sd = {k: v.to(device=device, dtype=torch.float32) for k, v in sd.items()}
    _assign(vae, sd, source=path, what=f"{found_kind} VAE")
    return vae.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- text encoder


@contextmanager
def _as_t5_error() -> Iterator[None]:
    """Re-raises a generic ``CheckpointError`` of the shared readers as a ``T5CheckpointError`` with
    the same message (it already names the file)."""
    try:
        yield
    except T5CheckpointError:
        raise
    except CheckpointError as exc:
        raise T5CheckpointError(str(exc)) from exc


def read_text_encoder_file(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a text-encoder file (``.pth``/``.pt``/``.bin`` or ``.safetensors``) on the CPU,
    read by ``read_state_dict_file``; its errors are raised as ``T5CheckpointError`` and a missing
    file as ``T5FileNotFoundError``."""
    path = Path(path)
    if not path.is_file():
        raise T5FileNotFoundError(
            f"{path}: text encoder checkpoint not found (expected the umT5 encoder weights, e.g. the official "
            "models_t5_umt5-xxl-enc-bf16.pth, as a .pth/.pt/.bin or .safetensors file)"
        )
    with _as_t5_error():
        return read_state_dict_file(path)


def load_umt5_tokenizer(tokenizer_dir: str | Path) -> Any:
    """The umT5 tokenizer of a folder (``AutoTokenizer``, local files only). A missing folder raises
    ``T5FileNotFoundError``."""
    from transformers import AutoTokenizer

    tokenizer_dir = Path(tokenizer_dir)
    if not tokenizer_dir.is_dir():
        raise T5FileNotFoundError(
            f"{tokenizer_dir}: tokenizer folder not found (expected the umT5 tokenizer files, e.g. "
            "<ckpt>/google/umt5-xxl or a Diffusers tokenizer/ folder)"
        )
    return AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)


def _text_encoder_tensors(
    sd: Mapping[str, Tensor], label: str | Path
) -> tuple[dict[str, Tensor], str, dict[str, tuple[Tensor, Tensor]]]:
    """An umT5 encoder file's tensors, any float8 weights dequantised (float32 ``weight * scale``:
    LightX2V ``<module>.weight_scale`` per channel, ComfyUI ``<module>.scale_weight`` per tensor, marker
    dropped), and its key layout: ``"official"`` (``token_embedding.weight``, ``blocks.N.*``) or ``"hf"``
    (``shared.weight`` / ``encoder.block.N.*``), and the stored float8 weights with their float32 scales
    by ``UMT5EncoderModel`` module name. Raises ``T5CheckpointError`` naming ``label``."""
    import torch

    from .quant import dequantize_weight, split_scaled_fp8

    split = split_scaled_fp8(sd)
    with _as_t5_error():
        scales = _checked_fp8_scales(split.tensors, split.scales, str(label))
    tensors = split.tensors
    stored = {module: (tensors[f"{module}.weight"], scale) for module, scale in scales.items()}
    for module, scale in scales.items():
        tensors[f"{module}.weight"] = dequantize_weight(tensors[f"{module}.weight"], scale, torch.float32)
    if "token_embedding.weight" in tensors or any(k.startswith("blocks.") for k in tensors):
        from .modules.t5 import convert_official_t5_state_dict

        def hf_name(module: str) -> str:  # the same renaming as the weights', one key at a time
            with _as_t5_error():
                (key,) = convert_official_t5_state_dict({f"{module}.weight": stored[module][0]})
            return key.removesuffix(".weight")

        return tensors, "official", {hf_name(m): pair for m, pair in stored.items()}
    if "shared.weight" in tensors or any(k.startswith("encoder.") for k in tensors):
        return tensors, "hf", stored
    raise T5CheckpointError(
        f"{label}: not an umT5 encoder file: found neither the official keys (token_embedding.weight, "
        f"blocks.N.attn.q.weight, ...) nor the HF keys (shared.weight, encoder.block.N....); first keys: "
        f"{_listed(sorted(tensors)[:4])}"
    )


def load_text_encoder_file(
    path: str | Path, tokenizer_dir: str | Path, *, dtype: Any = "bfloat16", device: Any = "cpu", text_len: int = 512,
    quantize: str | None = None,
) -> TextEncoder:  # fmt: skip
    """The encoder of one umT5 weight file with the tokenizer of ``tokenizer_dir``: the official
    ``models_t5_umt5-xxl-enc-bf16.pth`` (official keys), a single HF-key file (``UMT5EncoderModel``
    names; config inferred from the tensors), or a ready fp8 file (``T5_FP8_FILES``: LightX2V
    ``models_t5_umt5-xxl-enc-fp8.pth``, ComfyUI ``umt5_xxl_fp8_e4m3fn_scaled.safetensors``), whose
    float8 weights are dequantised (``weight * scale`` in float32, then ``dtype``).
    ``quantize="fp8"``: fp8 linears (``wan.quant.quantize_text_encoder``); the ones a fp8 file stores
    keep exactly its float8 weights and scales (no second rounding). Raises ``T5CheckpointError``
    naming the file (``T5FileNotFoundError`` for a missing file or folder)."""
    import torch

    from .modules.t5 import TextEncoder
    from .quant import FP8Linear, check_quantize, quantize_text_encoder

    dtype = resolve_dtype(dtype)
    quantize = check_quantize(quantize, "t5_quantize")
    sd, key_layout, stored = _text_encoder_tensors(read_text_encoder_file(path), path)
    tokenizer = load_umt5_tokenizer(tokenizer_dir)
    encoder = TextEncoder.from_state_dict(
        sd, tokenizer, key_layout=key_layout, dtype=dtype, device=device, text_len=text_len, source=path
    )
    del sd
    if quantize == "fp8":
        quantize_text_encoder(encoder)
        for name, (q, scale) in stored.items():
            layer = encoder.model.get_submodule(name)
            if not isinstance(layer, FP8Linear):
                raise T5CheckpointError(f"{path}: {name!r} holds float8 weights but is not a quantisable linear")
            layer.weight = torch.nn.Parameter(q.to(device=device, dtype=layer.weight.dtype), requires_grad=False)
            layer.weight_scale = torch.nn.Parameter(scale.to(device), requires_grad=False)
    return encoder


def load_text_encoder_official(
    pth_path: str | Path, tokenizer_dir: str | Path, *, dtype: Any = "bfloat16", device: Any = "cpu", text_len: int = 512
) -> TextEncoder:
    """The encoder of an official ``models_t5_umt5-xxl-enc-bf16.pth`` (official keys) with the
    tokenizer of ``tokenizer_dir`` (``google/umt5-xxl/``); ``load_text_encoder_file`` (so the fp8
    files load too). Raises ``T5CheckpointError`` naming the file (``T5FileNotFoundError`` for a
    missing file or folder)."""
    return load_text_encoder_file(pth_path, tokenizer_dir, dtype=dtype, device=device, text_len=text_len)


def load_text_encoder_hf(
    model_dir: str | Path, tokenizer_dir: str | Path, *, dtype: Any = "bfloat16", device: Any = "cpu", text_len: int = 512
) -> TextEncoder:
    """The encoder of an HF/Diffusers ``text_encoder/`` folder (``config.json`` + ``model.safetensors``,
    its index + shards, or a lone ``*.safetensors`` file; HF keys) with the tokenizer of
    ``tokenizer_dir``. Raises ``T5CheckpointError`` naming the file or folder
    (``T5FileNotFoundError`` for a missing ``config.json`` or tokenizer folder)."""
    from .modules.t5 import TextEncoder, umt5_config_from_dict

    dtype = resolve_dtype(dtype)
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise T5FileNotFoundError(
            f"{config_path}: text encoder config not found (expected a Diffusers/HF text_encoder/ folder "
            "with config.json and model.safetensors)"
        )
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise T5CheckpointError(f"{config_path}: not a valid umT5 config ({exc})") from exc
    try:
        config = umt5_config_from_dict(raw)
    except T5CheckpointError as exc:
        raise T5CheckpointError(f"{config_path}: {exc}") from exc
    with _as_t5_error():
        sd = read_weight_folder(model_dir, TEXT_ENCODER_WEIGHTS, TEXT_ENCODER_INDEX, any_single=True)
    tokenizer = load_umt5_tokenizer(tokenizer_dir)
    return TextEncoder.from_state_dict(
        sd, tokenizer, key_layout="hf", config=config, dtype=dtype, device=device, text_len=text_len, source=model_dir
    )


def find_text_encoder_file(ckpt_dir: str | Path, spec: ModelSpec) -> Path | None:
    """The umT5 weight file of an official-layout folder: ``spec.t5_file`` (bf16), else the first of
    ``T5_FP8_FILES`` present, else None."""
    root = Path(ckpt_dir)
    return next((root / n for n in (spec.t5_file, *T5_FP8_FILES) if (root / n).is_file()), None)


def load_text_encoder(
    ckpt_dir: str | Path, spec: ModelSpec, *, layout: Layout | None = None, dtype: Any = "bfloat16", device: Any = "cpu",
    t5_file: str | Path | None = None, quantize: str | None = None,
) -> TextEncoder:  # fmt: skip
    """The umT5 encoder + tokenizer of a checkpoint: official ``models_t5_umt5-xxl-enc-bf16.pth`` (or,
    when it is absent, a ready fp8 file of ``T5_FP8_FILES`` in the folder) + ``google/umt5-xxl/``, or
    Diffusers ``text_encoder/`` + ``tokenizer/``. ``t5_file``: this weight file instead (any
    ``load_text_encoder_file`` format), with the checkpoint's tokenizer. ``quantize="fp8"``: fp8
    linears (a fp8 file's stored ones exactly as stored). Raises ``CheckpointError``."""
    from .quant import check_quantize, quantize_text_encoder

    root = Path(ckpt_dir)
    layout = layout or detect_layout(root)
    tokenizer = root / spec.tokenizer_dir if layout == "official" else root / "tokenizer"
    if t5_file is not None:
        weights = Path(t5_file)
        if not weights.is_file():
            raise T5FileNotFoundError(f"{weights}: text encoder file (t5_file) not found")
    elif layout == "official":
        found = find_text_encoder_file(root, spec)
        if found is None:
            raise CheckpointError(f"{root / spec.t5_file}: text encoder file not found (nor an fp8 one: "
                                  f"{', '.join(T5_FP8_FILES)})")  # fmt: skip
        weights = found
    else:
        weights = root / "text_encoder"
        if not (weights / "config.json").is_file():
            raise CheckpointError(f"{weights}: expected config.json + {TEXT_ENCODER_WEIGHTS} (Diffusers text_encoder/)")
    if not tokenizer.is_dir() or not any((tokenizer / m).is_file() for m in _TOKENIZER_MARKERS):
        raise CheckpointError(
            f"{tokenizer}: tokenizer folder missing or empty (expected {', '.join(_TOKENIZER_MARKERS)})"
        )
    dtype = resolve_dtype(dtype)
    try:
        if weights.is_file():
            return load_text_encoder_file(weights, tokenizer, dtype=dtype, device=device, text_len=spec.text_len,
                                          quantize=quantize)  # fmt: skip
        encoder = load_text_encoder_hf(weights, tokenizer, dtype=dtype, device=device, text_len=spec.text_len)
        if check_quantize(quantize, "t5_quantize") == "fp8":
            quantize_text_encoder(encoder)
        return encoder
    except CheckpointError:
        raise
    except Exception as exc:  # tokenizer files unreadable, vocab mismatch, missing config ...
        raise CheckpointError(f"{weights} / {tokenizer}: cannot load the text encoder ({exc})") from exc


# ----------------------------------------------------------------------------- components


@dataclass(eq=False)
class Components:
    """Everything a pipeline needs for one task, loaded from one checkpoint folder.

    ``experts`` holds the DiTs: ``{"high_noise", "low_noise"}`` for A14B, ``{"dense"}`` for the 5B
    (moving them between devices is the pipeline's ``ExpertOffloader``). ``vae`` is float32;
    ``text_encoder`` is a ``TextEncoder``.
    """

    spec: ModelSpec
    ckpt_dir: Path
    layout: str
    experts: dict[str, WanModel]
    vae: Wan21VAE | Wan22VAE
    text_encoder: TextEncoder


def _dit_file_overrides(spec: ModelSpec, dit_files: Any) -> dict[str, list[Path]]:
    """``dit_files`` of ``load_components`` as ``{expert: [file]}`` (``ValueError`` for a bad value)."""
    if dit_files is None:
        return {}
    if isinstance(dit_files, (str, os.PathLike)):
        if len(spec.experts) != 1:
            raise ValueError(f"{spec.task} has two experts: pass dit_files as {{'high_noise': path, 'low_noise': path}}")
        dit_files = {spec.experts[0]: dit_files}
    if not isinstance(dit_files, Mapping):
        raise ValueError(f"dit_files must be a path or a mapping expert -> path, got {type(dit_files).__name__}")
    unknown = sorted(set(dit_files) - set(spec.experts))
    if unknown:
        raise ValueError(f"dit_files: unknown expert(s) {unknown} for {spec.task}; experts are {list(spec.experts)}")
    return {name: [Path(path).expanduser()] for name, path in dit_files.items() if path is not None}


def _expert_dir(root: Path, spec: ModelSpec, layout: Layout, expert: str) -> Path:
    sub = spec.official_subfolder(expert) if layout == "official" else spec.diffusers_subfolder(expert)
    return root / sub if sub else root


def load_components(
    task: str,
    ckpt_dir: str | Path,
    *,
    dtype: Any,
    device: Any = "cpu",
    t5_dtype: Any = None,
    keep_float32: bool = False,
    quantize: str | None = None,
    t5_quantize: str | None = None,
    dit_files: str | Path | Mapping[str, str | Path] | None = None,
    t5_file: str | Path | None = None,
) -> Components:
    """Loads the DiT expert(s), VAE (float32) and text encoder of ``task`` from ``ckpt_dir`` (layout
    detected).

    ``dtype`` is for the DiT(s), ``t5_dtype`` (default ``dtype``) for the text encoder; everything
    is put on ``device``. ``keep_float32``: see ``_load_dit_source``. Every expert folder is validated
    first (config, task, key names and shapes, from the headers only), then the VAE and the text
    encoder are loaded, then the experts' tensors. Raises ``CheckpointError`` naming the file.

    fp8 (``wan.quant``): ``quantize="fp8"`` stores the DiT block linears in float8_e4m3fn with
    per-output-channel scales (quantised on load from bf16/fp32 files); ``t5_quantize="fp8"`` does the
    same for the umT5 linears. Ready scaled-fp8 DiT files (ComfyUI/Kijai ``*_fp8_scaled.safetensors``,
    LightX2V ``weight_scale`` files) load as stored, whatever ``quantize``: either as the expert
    folder's ``diffusion_pytorch_model.safetensors`` (e.g. a symlink), or through ``dit_files`` —
    a path (single-expert tasks) or ``{"high_noise": path, "low_noise": path}`` (either or both) —
    which replaces that expert's weights; its folder then needs only ``config.json``.
    The text encoder is ``t5_file`` when given, else the folder's (an official folder without the bf16
    ``.pth`` may hold a ready fp8 one instead: ``T5_FP8_FILES``, dequantised on load; with
    ``t5_quantize="fp8"`` its float8 linears stay exactly as stored).
    """
    from .quant import check_quantize

    spec = get_spec(task)
    root = Path(ckpt_dir)
    layout = detect_layout(root)
    dtype = resolve_dtype(dtype)
    quantize, t5_quantize = check_quantize(quantize), check_quantize(t5_quantize, "t5_quantize")
    overrides = _dit_file_overrides(spec, dit_files)
    json_cache: dict[Path, dict[str, Any]] = {}  # each shard index / config.json is parsed once
    missing = _missing_files(spec.task, root, layout, json_cache)
    if t5_file is not None:  # the text encoder comes from elsewhere
        missing = [m for m in missing if m != spec.t5_file and not m.startswith("text_encoder/")]
    for name in overrides:  # an expert read from dit_files needs only its config.json
        sub = spec.official_subfolder(name) if layout == "official" else spec.diffusers_subfolder(name)
        stem = DIT_WEIGHTS.removesuffix(".safetensors")  # the single file, its index or a shard
        missing = [m for m in missing if not (m.rpartition("/")[0] == sub and m.rpartition("/")[2].startswith(stem))]
    if missing:
        raise CheckpointError(f"{root}: incomplete {layout} {spec.task} checkpoint, missing {_listed(missing)}")
    sources = {
        name: _inspect_dit(_expert_dir(root, spec, layout, name), spec, json_cache, files=overrides.get(name))
        for name in spec.experts
    }
    text_dims = {name: source.config.text_dim for name, source in sources.items()}
    if len(set(text_dims.values())) > 1:
        raise CheckpointError(f"{root}: the experts disagree on text_dim: {text_dims}")
    vae_path = root / spec.vae_file if layout == "official" else root / "vae"
    vae = load_vae(vae_path, kind=spec.vae, device=device)
    text_encoder = load_text_encoder(
        root, spec, layout=layout, dtype=t5_dtype if t5_dtype is not None else dtype, device=device, t5_file=t5_file,
        quantize=t5_quantize,
    )
    text_dim = next(iter(text_dims.values()))
    if text_encoder.dim != text_dim:
        raise CheckpointError(
            f"{root}: the text encoder outputs {text_encoder.dim} channels but the DiT expects text_dim={text_dim}"
        )
    experts = {
        name: _load_dit_source(source, dtype=dtype, device=device, keep_float32=keep_float32, quantize=quantize)
        for name, source in sources.items()
    }
    return Components(
        spec=spec, ckpt_dir=root, layout=layout, experts=experts, vae=vae, text_encoder=text_encoder
    )


# ----------------------------------------------------------------------------- required files


def required_files(task: str, layout: Layout = "official") -> tuple[str, ...]:
    """Relative paths a complete checkpoint needs (a trailing "/" means a folder). DiT weights are
    written as ``<dir>/diffusion_pytorch_model.safetensors`` (or the sharded ``.index.json`` form)."""
    spec = get_spec(task)
    if layout == "official":
        dits = [spec.official_subfolder(e) for e in spec.experts]
        files = [f"{d}/config.json" if d else "config.json" for d in dits]
        files += [f"{d}/{DIT_WEIGHTS}" if d else DIT_WEIGHTS for d in dits]
        return (*files, spec.t5_file, spec.vae_file, spec.tokenizer_dir + "/")
    if layout == "diffusers":
        dits = [spec.diffusers_subfolder(e) for e in spec.experts]
        return (
            MODEL_INDEX,
            *(f"{d}/config.json" for d in dits),
            *(f"{d}/{DIT_WEIGHTS}" for d in dits),
            "vae/config.json",
            f"vae/{DIT_WEIGHTS}",
            "text_encoder/config.json",
            f"text_encoder/{TEXT_ENCODER_WEIGHTS}",
            "tokenizer/",
        )
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _weights_missing(
    folder: Path, single: str, index: str, rel: str, json_cache: dict[Path, dict[str, Any]] | None = None
) -> list[str]:
    if (folder / single).is_file():
        return []
    index_path = folder / index
    if not index_path.is_file():
        return [rel]
    try:  # CheckpointError: unreadable, not JSON or not an object; AttributeError: weight_map not a dict
        shards = set(_read_json(index_path, json_cache).get("weight_map", {}).values())
    except (CheckpointError, AttributeError):
        return [f"{rel} (unreadable {index})"]
    prefix = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
    return [prefix + s for s in sorted(shards) if not (folder / s).is_file()] or ([] if shards else [rel])


def missing_files(task: str, folder: str | Path, layout: Layout | None = None) -> list[str]:
    """Entries of ``required_files`` (sharded weights: the listed shards) absent from ``folder``."""
    return _missing_files(task, Path(folder), layout)


def _missing_files(
    task: str, root: Path, layout: Layout | None, json_cache: dict[Path, dict[str, Any]] | None = None
) -> list[str]:
    layout = layout or detect_layout(root)
    out: list[str] = []
    t5_file = get_spec(task).t5_file
    for rel in required_files(task, layout):
        if layout == "official" and rel == t5_file:  # the bf16 .pth, or a ready fp8 one in its place
            if not any((root / n).is_file() for n in (rel, *T5_FP8_FILES)):
                out.append(rel)
        elif rel.endswith("/"):
            path = root / rel
            if not path.is_dir() or not any((path / m).is_file() for m in _TOKENIZER_MARKERS):
                out.append(rel)
        elif rel.endswith(DIT_WEIGHTS) or rel.endswith(TEXT_ENCODER_WEIGHTS):
            single = DIT_WEIGHTS if rel.endswith(DIT_WEIGHTS) else TEXT_ENCODER_WEIGHTS
            index = DIT_INDEX if single == DIT_WEIGHTS else TEXT_ENCODER_INDEX
            out += _weights_missing((root / rel).parent, single, index, rel, json_cache)
        elif not (root / rel).is_file():
            out.append(rel)
    return out


def _present_entries(task: str, folder: Path, layout: Layout) -> int:
    return len(required_files(task, layout)) - len(missing_files(task, folder, layout))


# ----------------------------------------------------------------------------- discovery


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment at call time (``HF_HUB_CACHE``,
    ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``/hub, ``XDG_CACHE_HOME``/huggingface/hub, ~/.cache/...)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _hf_snapshots(repo_id: str) -> list[Path]:
    """Snapshot folders of ``repo_id`` in the hub cache: the one ``refs/main`` points to first, then
    the others, newest first."""
    repo_dir = hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snapshots_dir = repo_dir / "snapshots"
    if not snapshots_dir.is_dir():
        return []
    snapshots = sorted((p for p in snapshots_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        head = snapshots_dir / ref.read_text(encoding="utf-8").strip()
        if head in snapshots:
            snapshots.remove(head)
            snapshots.insert(0, head)
    return snapshots


def _check_candidates(spec: ModelSpec, candidates: Iterable[Path]) -> Path | None:
    """The first complete candidate; if none, raises for the first one that holds part of a
    checkpoint (naming the missing files); None when no candidate looks like a checkpoint."""
    partial: tuple[Path, str, list[str]] | None = None
    seen: set[Path] = set()
    for folder in candidates:
        if not folder.is_dir() or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        for layout in LAYOUTS:
            missing = missing_files(spec.task, folder, layout)
            if not missing:
                _check_task(spec, folder, layout)
                return folder
            if partial is None and _present_entries(spec.task, folder, layout) > 0:
                if layout == "official" and (folder / MODEL_INDEX).is_file():
                    continue  # a Diffusers folder: report its own missing files
                partial = (folder, layout, missing)
    if partial is not None:
        folder, layout, missing = partial
        raise CheckpointError(
            f"{folder}: incomplete {layout}-layout {spec.task} checkpoint, missing {_listed(missing)}. "
            f"Download it with: {_download_command(spec, layout, folder)}" + _other_task_hint(spec, folder)
        )
    return None


def _check_task(spec: ModelSpec, folder: Path, layout: Layout) -> None:
    """A complete folder must hold this task's DiT (model type / channels from config.json)."""
    expert = spec.experts[0]
    config_path = _expert_dir(folder, spec, layout, expert) / "config.json"
    check_dit_config(spec, dit_config_from_json(_read_json(config_path), source=config_path), source=config_path)


def _other_task_hint(spec: ModelSpec, folder: Path) -> str:
    from .configs import TASKS

    for other in TASKS:
        if other != spec.task and any(not missing_files(other, folder, lay) for lay in LAYOUTS):
            return f" (the folder holds a complete {other} checkpoint: choose that task, or another folder)"
    return ""


def _download_command(spec: ModelSpec, layout: str, local_dir: Path | None = None) -> str:
    repo = spec.hf_repo if layout == "official" else spec.hf_diffusers_repo
    dest = local_dir if local_dir is not None else Path("./ckpts") / repo.split("/")[-1]
    return f"hf download {repo} --local-dir {dest}"


def find_checkpoint(task: str, ckpt_dir: str | Path | None = None) -> Path | None:
    """A folder holding a complete checkpoint of ``task`` (official or Diffusers layout), or None.

    Searched in order: ``ckpt_dir``, ``ckpt_dir/<repo name>`` (``Wan2.2-T2V-A14B`` or
    ``Wan2.2-T2V-A14B-Diffusers``) and ``ckpt_dir/<task>``; the same under ``$WAN_CKPT_DIR``; the
    Hugging Face hub cache snapshots of the official and Diffusers repos. Within each of the three
    places a complete folder wins; if a place has only incomplete folders, ``CheckpointError`` names
    the folder and the missing files (and the download command). A complete folder holding another
    task's DiT also raises ``CheckpointError``.
    """
    spec = get_spec(task)
    names = [spec.hf_repo.split("/")[-1], spec.hf_diffusers_repo.split("/")[-1], spec.task]
    places: list[list[Path]] = []
    for base in (ckpt_dir, os.environ.get("WAN_CKPT_DIR") or None):
        if base is not None:
            base_path = Path(base).expanduser()
            places.append([base_path, *(base_path / n for n in names)])
    places.append([*_hf_snapshots(spec.hf_repo), *_hf_snapshots(spec.hf_diffusers_repo)])
    for candidates in places:
        found = _check_candidates(spec, candidates)
        if found is not None:
            return found
    return None


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (1/true/yes/on), read at call time."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE_VALUES


def download_checkpoint(task: str, local_dir: str | Path | None = None, *, layout: Layout = "official") -> Path:
    """Downloads the task's checkpoint from the Hugging Face Hub with ``snapshot_download`` (into the
    hub cache, or ``local_dir``) and returns the folder after checking it is complete.

    Raises ``CheckpointError`` (naming the repo, the files and the ``hf download``
    command) when ``HF_HUB_OFFLINE`` is set, when the download fails, or when files are missing.
    """
    spec = get_spec(task)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    repo = spec.hf_repo if layout == "official" else spec.hf_diffusers_repo
    dest = Path(local_dir).expanduser() if local_dir is not None else None
    command = _download_command(spec, layout, dest)
    files = ", ".join(required_files(spec.task, layout))
    if hub_offline():
        raise CheckpointError(
            f"cannot download {repo}: HF_HUB_OFFLINE is set. The checkpoint needs {files}. On a machine with "
            f"network access run `{command}` and pass that folder as ckpt_dir (or set WAN_CKPT_DIR)."
        )
    if layout == "official":
        allow: list[str] | None = ["*.json", "*.safetensors", spec.t5_file, spec.vae_file, f"{spec.tokenizer_dir}/*"]
    else:
        allow = None
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id=repo, local_dir=str(dest) if dest else None, allow_patterns=allow))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # network, authentication, disk full, offline mode of the hub client
        raise CheckpointError(
            f"downloading {repo} failed ({type(exc).__name__}: {exc}). The checkpoint needs {files}. "
            f"Retry, or run `{command}` and pass that folder as ckpt_dir (or set WAN_CKPT_DIR)."
        ) from exc
    missing = missing_files(spec.task, path, layout)
    if missing:
        raise CheckpointError(f"{path}: the download of {repo} is incomplete, missing {_listed(missing)}; run `{command}`")
    return path
