"""Tiny random Wan 2.2 checkpoints in the exact official (or Diffusers) file layout and key names.

Used by the tests and by ``app.py --demo``: every loader code path (sharded and single safetensors,
``.pth`` state dicts, tokenizer folder, Diffusers key renaming) runs on a few hundred kilobytes of
weights. The weights are random but non-trivial (norm scales, modulation tables and the output head
are all random, not the zeros/ones of a fresh ``nn.Module``) and deterministic for a seed; the
official and Diffusers layouts written with the same seed hold the same values.

Tiny dimensions: DiT dim 32 (2 heads of 16), ffn 64, 2 layers, text_dim 32, the task's in/out
channels (16/16, 36/16, 48/48); umT5 d_model 32, 2 layers, 4 heads, ffn 64, the tiny tokenizer's
768-token vocabulary; VAE base dim 8 (Wan 2.1, z 16) or 8/16 encoder/decoder (Wan 2.2, z 48).

Official layout written (A14B; the 5B puts ``config.json`` + the sharded DiT at the root)::

    high_noise_model/{config.json, diffusion_pytorch_model.safetensors.index.json,
                      diffusion_pytorch_model-0000{1,2}-of-00002.safetensors}   (sharded)
    low_noise_model/{config.json, diffusion_pytorch_model.safetensors}          (single file)
    models_t5_umt5-xxl-enc-bf16.pth   Wan2.1_VAE.pth | Wan2.2_VAE.pth   google/umt5-xxl/

Diffusers layout: ``model_index.json``, ``transformer/`` (high-noise or 5B; sharded),
``transformer_2/`` (low-noise), ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``; loadable
by ``diffusers.WanPipeline`` / ``WanImageToVideoPipeline.from_pretrained``.
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..configs import ModelSpec, get_spec

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from ..modules.model import DiTConfig

__all__ = [
    "TINY_DIT",
    "TINY_T5",
    "TINY_VAE21",
    "TINY_VAE22",
    "TinyWeights",
    "tiny_dit_config",
    "scaled_fp8_state_dict",
    "tiny_weights",
    "write_scaled_fp8_file",
    "write_tiny_checkpoint",
]

_DIFFUSERS_VERSION: Final[str] = "0.35.0.dev0"


@dataclass(frozen=True)
class TinyDiTDims:
    dim: int = 32
    ffn_dim: int = 64
    num_heads: int = 2  # head_dim 16
    num_layers: int = 2
    text_dim: int = 32  # = TINY_T5.d_model


@dataclass(frozen=True)
class TinyT5Dims:
    d_model: int = 32
    num_layers: int = 2
    num_heads: int = 4
    d_ff: int = 64
    num_buckets: int = 32


@dataclass(frozen=True)
class TinyVAEDims:
    dim: int = 8
    dec_dim: int = 8  # Wan 2.2 only (decoder base width)


TINY_DIT: Final[TinyDiTDims] = TinyDiTDims()
TINY_T5: Final[TinyT5Dims] = TinyT5Dims()
TINY_VAE21: Final[TinyVAEDims] = TinyVAEDims(dim=8, dec_dim=8)
TINY_VAE22: Final[TinyVAEDims] = TinyVAEDims(dim=8, dec_dim=16)


@dataclass(frozen=True)
class TinyWeights:
    """The official-key state dicts of one tiny checkpoint (what ``write_tiny_checkpoint`` writes).

    ``experts``: expert name -> DiT state dict (float32); ``t5``: umT5 encoder (bfloat16, official
    keys); ``vae``: VAE (float32, official keys).
    """

    spec: ModelSpec
    dit_config: DiTConfig
    experts: dict[str, dict[str, Tensor]]
    t5: dict[str, Tensor]
    vae: dict[str, Tensor]
    vae_config: Any


def tiny_dit_config(task: str) -> DiTConfig:
    """The tiny DiT architecture of ``task`` (same model type and channels as the real one)."""
    from ..modules.model import DiTConfig

    spec = get_spec(task)
    return DiTConfig(
        model_type=spec.dit.model_type, dim=TINY_DIT.dim, ffn_dim=TINY_DIT.ffn_dim, num_heads=TINY_DIT.num_heads,
        num_layers=TINY_DIT.num_layers, in_dim=spec.dit.in_dim, out_dim=spec.dit.out_dim, text_dim=TINY_DIT.text_dim,
    )  # fmt: skip


def _tiny_vae_config(kind: str) -> Any:
    if kind == "wan2.1":
        from ..modules.vae21 import Wan21VAEConfig

        return Wan21VAEConfig(dim=TINY_VAE21.dim)
    from ..modules.vae22 import Wan22VAEConfig

    return Wan22VAEConfig(dim=TINY_VAE22.dim, dec_dim=TINY_VAE22.dec_dim)


# ----------------------------------------------------------------------------- random weights

_NORM_SCALE_RE = re.compile(r"(\.gamma$|norm[^.]*\.weight$|^norm\.weight$)")
_NORM_BIAS_RE = re.compile(r"norm[^.]*\.bias$")


def _generator(seed: int, component: str) -> torch.Generator:
    import torch

    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(component.encode())) % (2**63))


def _random_tensor(name: str, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    """A random value for parameter ``name``: norm scales ~ 1 + 0.1 N, norm biases ~ 0.1 N,
    modulation ~ N / sqrt(dim), embeddings ~ N, other weights ~ N / sqrt(fan_in), biases ~ 0.05 N."""
    import math

    import torch

    noise = torch.randn(shape, generator=g, dtype=torch.float32)
    if _NORM_SCALE_RE.search(name):
        return 1.0 + 0.1 * noise
    if _NORM_BIAS_RE.search(name):
        return 0.1 * noise
    if name.endswith("modulation"):
        return noise / math.sqrt(shape[-1])
    if name in ("token_embedding.weight",):
        return noise
    if name.endswith("pos_embedding.embedding.weight"):
        return 0.5 * noise
    if len(shape) >= 2:
        return noise / math.sqrt(math.prod(shape[1:]))
    return 0.05 * noise


def _random_state_dict(shapes: Mapping[str, tuple[int, ...]], seed: int, component: str) -> dict[str, Tensor]:
    g = _generator(seed, component)
    return {name: _random_tensor(name, shape, g) for name, shape in shapes.items()}


def _module_shapes(module_cls: Any, config: Any) -> dict[str, tuple[int, ...]]:
    import torch

    with torch.device("meta"):
        module = module_cls(config)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _t5_shapes(vocab: int) -> dict[str, tuple[int, ...]]:
    d, f = TINY_T5.d_model, TINY_T5.d_ff
    shapes: dict[str, tuple[int, ...]] = {"token_embedding.weight": (vocab, d)}
    for i in range(TINY_T5.num_layers):
        p = f"blocks.{i}."
        shapes[p + "norm1.weight"] = (d,)
        for proj in "qkvo":
            shapes[p + f"attn.{proj}.weight"] = (d, d)
        shapes[p + "norm2.weight"] = (d,)
        shapes[p + "ffn.gate.0.weight"] = (f, d)
        shapes[p + "ffn.fc1.weight"] = (f, d)
        shapes[p + "ffn.fc2.weight"] = (d, f)
        shapes[p + "pos_embedding.embedding.weight"] = (TINY_T5.num_buckets, TINY_T5.num_heads)
    shapes["norm.weight"] = (d,)
    return shapes


def tiny_weights(task: str, *, seed: int = 0) -> TinyWeights:
    """The state dicts ``write_tiny_checkpoint(task, ..., seed=seed)`` writes (deterministic)."""
    import torch

    from ..modules.model import WanModel
    from .tokenizer import TINY_TOKENIZER_VOCAB_SIZE

    spec = get_spec(task)
    dit_cfg = tiny_dit_config(spec.task)
    dit_shapes = _module_shapes(WanModel, dit_cfg)
    experts = {name: _random_state_dict(dit_shapes, seed, f"{spec.task}/dit/{name}") for name in spec.experts}
    t5 = {k: v.to(torch.bfloat16) for k, v in
          _random_state_dict(_t5_shapes(TINY_TOKENIZER_VOCAB_SIZE), seed, f"{spec.task}/t5").items()}  # fmt: skip
    vae_cfg = _tiny_vae_config(spec.vae)
    if spec.vae == "wan2.1":
        from ..modules.vae21 import Wan21VAE as vae_cls
    else:
        from ..modules.vae22 import Wan22VAE as vae_cls  # type: ignore[assignment]
    vae = _random_state_dict(_module_shapes(vae_cls, vae_cfg), seed, f"{spec.task}/vae")
    return TinyWeights(spec=spec, dit_config=dit_cfg, experts=experts, t5=t5, vae=vae, vae_config=vae_cfg)


# ----------------------------------------------------------------------------- official -> Diffusers names

def _inverse(mapping: Mapping[str, str], name: str) -> dict[str, str]:
    inverse = {official: theirs for theirs, official in mapping.items()}
    if len(inverse) != len(mapping):
        raise RuntimeError(f"internal error: {name} maps two names to one official name")
    return inverse


@functools.cache
def _resnet_to_diffusers() -> dict[str, str]:
    """Official residual-block parameter suffix -> Diffusers suffix: the inverse of the loader's
    ``conversion.DIFFUSERS_VAE_RESNET_TO_OFFICIAL`` (imported on first use: importing this module
    imports nothing from ``wan.modules``). ``_vae_to_diffusers`` checks the whole key map against the loader's converter."""
    from ..modules.conversion import DIFFUSERS_VAE_RESNET_TO_OFFICIAL

    return _inverse(DIFFUSERS_VAE_RESNET_TO_OFFICIAL, "DIFFUSERS_VAE_RESNET_TO_OFFICIAL")


_RESAMPLE_RE = re.compile(r"(resample\.1|time_conv)\.(weight|bias)")


def _vae_shared_key_to_diffusers(key: str) -> str | None:
    from ..modules.conversion import DIFFUSERS_VAE_ENDS_TO_OFFICIAL, DIFFUSERS_VAE_TOP_TO_OFFICIAL

    resnet = _resnet_to_diffusers()
    for old, new in _inverse(DIFFUSERS_VAE_TOP_TO_OFFICIAL, "DIFFUSERS_VAE_TOP_TO_OFFICIAL").items():
        if key.startswith(old):
            return new + key[len(old):]
    m = re.fullmatch(r"(encoder|decoder)\.(conv1|head\.0|head\.2)\.(.+)", key)
    if m:
        part = _inverse(DIFFUSERS_VAE_ENDS_TO_OFFICIAL, "DIFFUSERS_VAE_ENDS_TO_OFFICIAL")[m.group(2)]
        return f"{m.group(1)}.{part}.{m.group(3)}"
    m = re.fullmatch(r"(encoder|decoder)\.middle\.([02])\.(.+)", key)
    if m and m.group(3) in resnet:
        return f"{m.group(1)}.mid_block.resnets.{int(m.group(2)) // 2}.{resnet[m.group(3)]}"
    m = re.fullmatch(r"(encoder|decoder)\.middle\.1\.(.+)", key)
    if m:
        return f"{m.group(1)}.mid_block.attentions.0.{m.group(2)}"
    return None


def _vae_key_to_diffusers(key: str, kind: str, vae_cfg: Any) -> str:
    resnet = _resnet_to_diffusers()
    new = _vae_shared_key_to_diffusers(key)
    if new is not None:
        return new
    if kind == "wan2.1":
        m = re.fullmatch(r"encoder\.downsamples\.(\d+)\.(.+)", key)
        if m:
            rest = m.group(2)
            return f"encoder.down_blocks.{m.group(1)}.{resnet.get(rest, rest)}"
        m = re.fullmatch(r"decoder\.upsamples\.(\d+)\.(.+)", key)
        if m:
            stage_len = vae_cfg.num_res_blocks + 2  # resnets + the upsampler
            stage, j = divmod(int(m.group(1)), stage_len)
            rest = m.group(2)
            if rest in resnet:
                return f"decoder.up_blocks.{stage}.resnets.{j}.{resnet[rest]}"
            if _RESAMPLE_RE.fullmatch(rest):
                return f"decoder.up_blocks.{stage}.upsamplers.0.{rest}"
    else:
        m = re.fullmatch(r"(encoder|decoder)\.(down|up)samples\.(\d+)\.(?:down|up)samples\.(\d+)\.(.+)", key)
        if m:
            side, direction, stage, j, rest = m.groups()
            if rest in resnet:
                return f"{side}.{direction}_blocks.{stage}.resnets.{j}.{resnet[rest]}"
            if _RESAMPLE_RE.fullmatch(rest):
                return f"{side}.{direction}_blocks.{stage}.{direction}sampler.{rest}"
    raise ValueError(f"no Diffusers name for the {kind} VAE key {key!r}")


def _vae_to_diffusers(sd: Mapping[str, Tensor], kind: str, vae_cfg: Any) -> dict[str, Tensor]:
    """Official VAE keys -> Diffusers ``AutoencoderKLWan`` keys, verified by the loader's converter."""
    out = {_vae_key_to_diffusers(k, kind, vae_cfg): v for k, v in sd.items()}
    if kind == "wan2.1":
        from ..modules.vae21 import convert_diffusers_vae21_state_dict as back
    else:
        from ..modules.vae22 import convert_diffusers_vae22_state_dict as back  # type: ignore[assignment]
    round_trip = back(out)
    if set(round_trip) != set(sd) or any(round_trip[k] is not sd[k] for k in sd):
        raise RuntimeError(f"internal error: the {kind} VAE key map does not invert the loader's converter")
    return out


# ----------------------------------------------------------------------------- writers


def _save_safetensors(sd: Mapping[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt"})


def _write_weights(sd: Mapping[str, Tensor], folder: Path, single: str, *, shards: int) -> None:
    """``single`` (e.g. ``diffusion_pytorch_model.safetensors``), or ``shards`` files
    ``<stem>-0000k-of-0000n.safetensors`` plus ``<single>.index.json`` (the Hugging Face format)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shards <= 1:
        _save_safetensors(sd, folder / single)
        return
    stem = single.removesuffix(".safetensors")
    keys = list(sd)
    per_shard = -(-len(keys) // shards)
    weight_map: dict[str, str] = {}
    total = 0
    for i in range(shards):
        name = f"{stem}-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in keys[i * per_shard:(i + 1) * per_shard]}
        _save_safetensors(part, folder / name)
        weight_map.update(dict.fromkeys(part, name))
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    _write_json(folder / f"{single}.index.json", index)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_official(weights: TinyWeights, out: Path) -> None:
    import torch

    from .tokenizer import write_tiny_umt5_tokenizer

    spec = weights.spec
    for i, (name, sd) in enumerate(weights.experts.items()):
        sub = spec.official_subfolder(name)
        folder = out / sub if sub else out
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / "config.json", weights.dit_config.to_config_json())
        _write_weights(sd, folder, "diffusion_pytorch_model.safetensors", shards=2 if i == 0 else 1)
    torch.save(weights.t5, out / spec.t5_file)
    torch.save(weights.vae, out / spec.vae_file)
    write_tiny_umt5_tokenizer(out / spec.tokenizer_dir)


def _write_diffusers(weights: TinyWeights, out: Path) -> None:
    from ..modules.conversion import to_diffusers_dit_state_dict
    from ..modules.t5 import convert_official_t5_state_dict, umt5_config_from_state_dict
    from .tokenizer import write_tiny_umt5_tokenizer

    spec = weights.spec
    transformer_config = {"_class_name": "WanTransformer3DModel", "_diffusers_version": _DIFFUSERS_VERSION,
                          **weights.dit_config.to_diffusers_config(), "pos_embed_seq_len": None}  # fmt: skip
    transformer_config["patch_size"] = list(transformer_config["patch_size"])
    for i, (name, sd) in enumerate(weights.experts.items()):
        folder = out / spec.diffusers_subfolder(name)
        _write_json(folder / "config.json", transformer_config)
        _write_weights(to_diffusers_dit_state_dict(sd), folder, "diffusion_pytorch_model.safetensors",
                       shards=2 if i == 0 else 1)  # fmt: skip

    vae_config = {"_class_name": "AutoencoderKLWan", "_diffusers_version": _DIFFUSERS_VERSION,
                  **weights.vae_config.to_diffusers_config()}  # fmt: skip
    _write_json(out / "vae" / "config.json", vae_config)
    _write_weights(_vae_to_diffusers(weights.vae, spec.vae, weights.vae_config), out / "vae",
                   "diffusion_pytorch_model.safetensors", shards=1)  # fmt: skip

    hf_t5 = convert_official_t5_state_dict(weights.t5)
    hf_t5.pop("encoder.embed_tokens.weight")  # tied to shared.weight (as save_pretrained writes it)
    t5_config = umt5_config_from_state_dict(weights.t5).to_dict()
    t5_config["architectures"] = ["UMT5EncoderModel"]
    t5_config["torch_dtype"] = "bfloat16"
    _write_json(out / "text_encoder" / "config.json", t5_config)
    _write_weights(hf_t5, out / "text_encoder", "model.safetensors", shards=1)
    write_tiny_umt5_tokenizer(out / "tokenizer")

    _write_json(out / "scheduler" / "scheduler_config.json", {
        "_class_name": "UniPCMultistepScheduler",
        "_diffusers_version": _DIFFUSERS_VERSION,
        "num_train_timesteps": spec.num_train_timesteps,
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "flow_shift": spec.sample_shift,
        "solver_order": 2,
        "solver_type": "bh2",
        "predict_x0": True,
        "lower_order_final": True,
        "final_sigmas_type": "zero",
        "disable_corrector": [],
    })  # fmt: skip

    none = [None, None]
    index: dict[str, Any] = {
        "_class_name": "WanImageToVideoPipeline" if spec.image_input == "required" else "WanPipeline",
        "_diffusers_version": _DIFFUSERS_VERSION,
        "boundary_ratio": spec.boundary,
        "expand_timesteps": not spec.moe,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": ["diffusers", "WanTransformer3DModel"] if spec.moe else none,
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    if spec.image_input == "required":
        index["image_encoder"] = none
        index["image_processor"] = none
    _write_json(out / "model_index.json", index)


def write_tiny_checkpoint(task: str, out_dir: str | Path, *, seed: int = 0, layout: str = "official") -> Path:
    """Writes a tiny random checkpoint of ``task`` into ``out_dir`` (created) and returns it.

    ``layout`` is "official" (the file and key names of ``Wan-AI/Wan2.2-*``) or "diffusers" (those of
    ``Wan-AI/Wan2.2-*-Diffusers``). The weights are ``tiny_weights(task, seed=seed)`` in both layouts.
    Existing files of the same names are overwritten.
    """
    if layout not in ("official", "diffusers"):
        raise ValueError(f"layout must be 'official' or 'diffusers', got {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = tiny_weights(task, seed=seed)
    if layout == "official":
        _write_official(weights, out)
    else:
        _write_diffusers(weights, out)
    return out


# ----------------------------------------------------------------------------- scaled-fp8 DiT files


def scaled_fp8_state_dict(
    sd: Mapping[str, Tensor], *, layout: str = "comfyui", prefix: str | None = None, also: tuple[str, ...] = ()
) -> dict[str, Tensor]:
    """An official-key DiT state dict as a ready scaled-fp8 file stores it: the block linears
    (``wan.quant.is_dit_quantizable``) and the modules in ``also`` (e.g. ``"text_embedding.0"``) get
    a float8_e4m3fn ``.weight`` (round-to-nearest, amax/448 scaling) and a float32 scale, everything else
    is kept as is.

    ``layout="comfyui"`` (ComfyUI / Kijai ``*_fp8_scaled.safetensors``): per-tensor ``<module>.scale_weight``
    (shape ``[]``), the root marker ``scaled_fp8`` (an empty float8 tensor) and every key prefixed with
    ``prefix`` (default ``"model.diffusion_model."``). ``layout="lightx2v"``: per-output-channel
    ``<module>.weight_scale`` ``[out, 1]``, no marker, ``prefix`` default ``""``.
    """
    import torch

    from ..quant import FP8_DTYPE, is_dit_quantizable, quantize_weight

    if layout not in ("comfyui", "lightx2v"):
        raise ValueError(f"layout must be 'comfyui' or 'lightx2v', got {layout!r}")
    pre = ("model.diffusion_model." if layout == "comfyui" else "") if prefix is None else prefix
    out: dict[str, Tensor] = {}
    for key, tensor in sd.items():
        module = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and (is_dit_quantizable(module) or module in also):
            q, scale = quantize_weight(tensor, per_channel=layout == "lightx2v")
            out[pre + key] = q
            out[pre + module + (".scale_weight" if layout == "comfyui" else ".weight_scale")] = scale
        else:
            out[pre + key] = tensor
    if layout == "comfyui":
        out[pre + "scaled_fp8"] = torch.empty(0, dtype=FP8_DTYPE)
    return out


def write_scaled_fp8_file(
    task: str, path: str | Path, *, expert: str | None = None, seed: int = 0, layout: str = "comfyui",
    prefix: str | None = None, also: tuple[str, ...] = (), dtype: Any = None,
) -> Path:  # fmt: skip
    """Writes the tiny ``expert`` DiT of ``task`` (default: the first expert; ``tiny_weights(task, seed=seed)``,
    optionally cast to ``dtype`` first) as one scaled-fp8 safetensors file at ``path`` (see
    ``scaled_fp8_state_dict``) and returns ``path``."""
    weights = tiny_weights(task, seed=seed)
    sd = weights.experts[expert or weights.spec.experts[0]]
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_safetensors(scaled_fp8_state_dict(sd, layout=layout, prefix=prefix, also=also), path)
    return path


# ----------------------------------------------------------------------------- fp8 umT5 files

_T5_OFFICIAL_LINEAR_RE = re.compile(r"^blocks\.\d+\.(?:attn\.[qkvo]|ffn\.(?:fc1|fc2|gate\.0))$")


def fp8_t5_state_dict(sd: Mapping[str, Tensor], *, layout: str = "lightx2v") -> dict[str, Tensor]:
    """An official-key umT5 encoder state dict as a ready fp8 text-encoder file stores it: the attention
    (q, k, v, o) and gated-FFN (gate.0, fc1, fc2) weights as float8_e4m3fn (round-to-nearest, amax/448
    scaling) with a float32 scale, everything else as is.

    ``layout="lightx2v"`` (``models_t5_umt5-xxl-enc-fp8.pth``): official keys, per-output-channel
    ``<module>.weight_scale`` ``[out, 1]``. ``layout="comfyui"`` (``umt5_xxl_fp8_e4m3fn_scaled.safetensors``):
    ``UMT5EncoderModel`` keys (``shared.weight``, ``encoder.block.N.layer.0.SelfAttention.q.weight``, ...),
    per-tensor ``<module>.scale_weight`` ``[]`` and the root marker ``scaled_fp8``.
    """
    import torch

    from ..modules.t5 import convert_official_t5_state_dict
    from ..quant import FP8_DTYPE, quantize_weight

    if layout not in ("comfyui", "lightx2v"):
        raise ValueError(f"layout must be 'comfyui' or 'lightx2v', got {layout!r}")
    out: dict[str, Tensor] = {}
    scale_suffix = ".weight_scale" if layout == "lightx2v" else ".scale_weight"
    for key, tensor in sd.items():
        module = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and _T5_OFFICIAL_LINEAR_RE.match(module):
            q, scale = quantize_weight(tensor, per_channel=layout == "lightx2v")
            out[key], out[module + scale_suffix] = q, scale
        else:
            out[key] = tensor
    if layout == "lightx2v":
        return out
    weights = {k: v for k, v in out.items() if not k.endswith(scale_suffix)}
    scales = {k[: -len(scale_suffix)] + ".weight": v for k, v in out.items() if k.endswith(scale_suffix)}
    hf = convert_official_t5_state_dict(weights)
    hf_scales = convert_official_t5_state_dict(scales)  # the same renaming, for the scales' modules
    hf.pop("encoder.embed_tokens.weight", None)  # stored once, as shared.weight (tied)
    hf.update({k[: -len(".weight")] + scale_suffix: v for k, v in hf_scales.items()})
    hf["scaled_fp8"] = torch.empty(0, dtype=FP8_DTYPE)
    return hf


def write_fp8_t5_file(task: str, path: str | Path, *, layout: str = "lightx2v", seed: int = 0) -> Path:
    """Writes the tiny umT5 encoder of ``task`` (``tiny_weights(task, seed=seed).t5``) as a ready fp8
    file at ``path`` (see ``fp8_t5_state_dict``): ``torch.save`` for ``lightx2v`` (a ``.pth``),
    safetensors for ``comfyui``. Returns ``path``."""
    import torch

    sd = fp8_t5_state_dict(tiny_weights(task, seed=seed).t5, layout=layout)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "lightx2v":
        torch.save(sd, path)
    else:
        _save_safetensors(sd, path)
    return path
