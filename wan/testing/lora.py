"""Tiny random LoRA files for the tiny DiTs of ``wan.testing.synthetic``, in every key format ``wan.lora`` reads.

Used by the tests and by ``app.py --demo``. The factors are random and non-trivial (``up`` is not
zero as at the start of training), deterministic for a seed, and the same values in every format
(only the key names differ), so a file in any format is the same LoRA:

- ``"official"``: ``diffusion_model.<module>.lora_down.weight`` / ``lora_up.weight`` (+ ``.alpha``);
- ``"official-peft"``: ``diffusion_model.<module>.lora_A.weight`` / ``lora_B.weight``;
- ``"musubi"``: ``lora_unet_blocks_0_self_attn_q.lora_down.weight`` (+ ``.alpha``);
- ``"videox-fun"``: ``lora_unet__blocks_0_self_attn_q.lora_down.weight``;
- ``"diffusers"``: ``transformer.blocks.0.attn1.to_q.lora_A.weight`` (no alpha key: with ``alpha``
  the scale is folded into the factors, as diffusers does, so the LoRA is still the same);
- ``"peft"``: ``base_model.model.blocks.0.self_attn.q.lora_A.default.weight`` (official names);
- ``"peft-diffusers"``: ``base_model.model.blocks.0.attn1.to_q.lora_A.default.weight``;
- ``"diffsynth"``: ``pipe.dit.blocks.0.self_attn.q.lora_A.default.weight``.

Extras (official key spelling, any format): ``diff_b=True`` adds ``.diff_b`` bias deltas on the linears
(``lora_B.bias`` in the diffusers formats); ``head_diff=True`` adds ``head.head.diff`` (a full weight
delta with no up matrix, as the lightx2v distill LoRAs) and ``head.head.diff_b``;
``norm_diff=True`` adds ``norm3.diff``/``norm3.diff_b`` and ``modulation`` deltas (``.diff_m``);
``extra_modules=True`` adds LoRAs on ``text_embedding.{0,2}``, ``time_embedding.{0,2}``,
``time_projection.1`` (with ``.alpha`` unless ``extra_alpha=False``: diffusers reads no alpha there) (and ``patch_embedding`` as a 5-D conv LoRA when ``conv=True``);
``wan21_i2v=True`` adds Wan 2.1 image-branch keys (``cross_attn.k_img/v_img``, ``norm_k_img.diff``,
``img_emb.proj.1``) that a Wan 2.2 loader drops.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from torch import Tensor

    from ..modules.model import DiTConfig

__all__ = ["LORA_FORMATS", "tiny_lora_state_dict", "write_tiny_lora"]

LORA_FORMATS: Final[tuple[str, ...]] = (
    "official", "official-peft", "musubi", "videox-fun", "diffusers", "peft", "peft-diffusers", "diffsynth",
)  # fmt: skip

_DIFFUSERS_NAMES = {
    "self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0", "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v", "cross_attn.o": "attn2.to_out.0", "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj", "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj", "head.head": "proj_out",
    "patch_embedding": "patch_embedding", "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
}  # fmt: skip
_BLOCK_LINEARS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                  "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")  # fmt: skip


def _config(task_or_config: str | DiTConfig) -> DiTConfig:
    if isinstance(task_or_config, str):
        from .synthetic import tiny_dit_config

        return tiny_dit_config(task_or_config)
    return task_or_config


def _diffusers_module(module: str) -> str:
    if module.startswith("blocks.") and module.count(".") >= 2:
        _, i, rest = module.split(".", 2)
        return f"blocks.{i}.{_DIFFUSERS_NAMES[rest]}"
    return _DIFFUSERS_NAMES[module]


def tiny_lora_state_dict(
    task_or_config: str | DiTConfig,
    fmt: str = "official",
    *,
    seed: int = 0,
    rank: int = 4,
    alpha: float | None = 8.0,
    diff_b: bool = False,
    head_diff: bool = False,
    norm_diff: bool = False,
    extra_modules: bool = False,
    extra_alpha: bool = True,
    conv: bool = False,
    wan21_i2v: bool = False,
    dtype: str = "float32",
) -> dict[str, Tensor]:
    """A random LoRA for the tiny DiT of ``task`` (or any ``DiTConfig``) in key format ``fmt`` (see the module doc)."""
    import torch

    if fmt not in LORA_FORMATS:
        raise ValueError(f"unknown LoRA format {fmt!r}; use one of {LORA_FORMATS}")
    cfg = _config(task_or_config)
    g = torch.Generator().manual_seed(seed * 7919 + 12345)  # the same values in every format
    dim, ffn = cfg.dim, cfg.ffn_dim

    def rnd(*shape: int, std: float = 1.0) -> Tensor:
        return torch.randn(shape, generator=g) * std

    shapes: dict[str, tuple[int, int]] = {}  # module -> (out, in)
    for i in range(cfg.num_layers):
        for m in _BLOCK_LINEARS:
            out_f, in_f = (ffn, dim) if m == "ffn.0" else (dim, ffn) if m == "ffn.2" else (dim, dim)
            if m.startswith("cross_attn") and m[-1] in "kv":
                in_f = dim
            shapes[f"blocks.{i}.{m}"] = (out_f, in_f)
        if wan21_i2v:
            shapes[f"blocks.{i}.cross_attn.k_img"] = (dim, dim)
            shapes[f"blocks.{i}.cross_attn.v_img"] = (dim, dim)
    if extra_modules:
        shapes.update({
            "text_embedding.0": (dim, cfg.text_dim), "text_embedding.2": (dim, dim),
            "time_embedding.0": (dim, cfg.freq_dim), "time_embedding.2": (dim, dim),
            "time_projection.1": (6 * dim, dim),
        })  # fmt: skip
    # (official module, kind) -> tensor, kind in down/up/alpha/diff/diff_b/diff_m
    entries: dict[tuple[str, str], Tensor] = {}
    scale_eff = 1.0 if alpha is None else alpha / rank
    for module, (out_f, in_f) in shapes.items():
        entries[(module, "down")] = rnd(rank, in_f, std=1 / math.sqrt(in_f))
        # up sized so that the effective delta is ~0.1 of a weight's scale
        s_eff = scale_eff if extra_alpha or module.startswith("blocks.") else 1.0
        entries[(module, "up")] = rnd(out_f, rank, std=0.1 / math.sqrt(rank) / s_eff)
        if alpha is not None and (extra_alpha or module.startswith("blocks.")):
            entries[(module, "alpha")] = torch.tensor(float(alpha))
        if diff_b:
            entries[(module, "diff_b")] = rnd(out_f, std=0.05)
    if conv:
        kt, kh, kw = cfg.patch_size
        entries[("patch_embedding", "down")] = rnd(rank, cfg.in_dim, kt, kh, kw, std=1 / math.sqrt(cfg.in_dim * kt * kh * kw))
        entries[("patch_embedding", "up")] = rnd(dim, rank, 1, 1, 1, std=0.1 / math.sqrt(rank) / scale_eff)
        if alpha is not None:
            entries[("patch_embedding", "alpha")] = torch.tensor(float(alpha))
    if head_diff:
        out_h = math.prod(cfg.patch_size) * cfg.out_dim
        entries[("head.head", "diff")] = rnd(out_h, dim, std=0.1 / math.sqrt(dim))
        entries[("head.head", "diff_b")] = rnd(out_h, std=0.05)
    if norm_diff:
        for i in range(cfg.num_layers):
            entries[(f"blocks.{i}.norm3", "diff")] = rnd(dim, std=0.1)
            entries[(f"blocks.{i}.norm3", "diff_b")] = rnd(dim, std=0.1)
            entries[(f"blocks.{i}", "diff_m")] = rnd(1, 6, dim, std=0.1 / math.sqrt(dim))
    if wan21_i2v:
        for i in range(cfg.num_layers):
            entries[(f"blocks.{i}.cross_attn.norm_k_img", "diff")] = rnd(dim, std=0.1)
        entries[("img_emb.proj.1", "down")] = rnd(rank, 1280, std=1 / math.sqrt(1280))
        entries[("img_emb.proj.1", "up")] = rnd(dim, rank, std=0.1)
        if alpha is not None:
            entries[("img_emb.proj.1", "alpha")] = torch.tensor(float(alpha))

    out: dict[str, Tensor] = {}
    diffusers_like = fmt in ("diffusers", "peft-diffusers")
    for (module, kind), tensor in entries.items():
        has_lr = (module, "down") in entries
        name = _diffusers_module(module) if diffusers_like and has_lr else module
        out[_key(fmt, name, kind, diffusers_like and has_lr)] = tensor
    if diffusers_like and alpha is not None:  # no alpha keys in diffusers files: fold alpha/rank into the factors
        for key in [k for k in out if k.endswith(".alpha")]:
            a = out.pop(key).item()
            stem = key[: -len(".alpha")]
            up_key = next(k for k in out if k.startswith(stem + ".lora_B"))
            out[up_key] = out[up_key] * (a / rank)
    if dtype != "float32":
        out = {k: v.to(getattr(torch, dtype)) for k, v in out.items()}
    return out


def _key(fmt: str, module: str, kind: str, lora_bias: bool) -> str:
    peft_names = fmt != "official" and fmt not in ("musubi", "videox-fun")
    down, up = ("lora_A", "lora_B") if peft_names else ("lora_down", "lora_up")
    default = ".default" if fmt in ("peft", "peft-diffusers", "diffsynth") else ""
    if kind == "diff_b" and lora_bias and fmt in ("diffusers", "peft-diffusers"):
        suffix = f".{up}{default}.bias"
    else:
        suffix = {"down": f".{down}{default}.weight", "up": f".{up}{default}.weight", "alpha": ".alpha",
                  "diff": ".diff", "diff_b": ".diff_b", "diff_m": ".diff_m"}[kind]  # fmt: skip
    if fmt in ("musubi", "videox-fun"):
        prefix = "lora_unet__" if fmt == "videox-fun" else "lora_unet_"
        return prefix + module.replace(".", "_") + suffix
    prefix = {"official": "diffusion_model.", "official-peft": "diffusion_model.", "diffusers": "transformer.",
              "peft": "base_model.model.", "peft-diffusers": "base_model.model.", "diffsynth": "pipe.dit."}[fmt]
    return prefix + module + suffix


def write_tiny_lora(path: str | Path, task_or_config: str | DiTConfig, fmt: str = "official", **kwargs: object) -> Path:
    """Writes ``tiny_lora_state_dict(task_or_config, fmt, **kwargs)`` to ``path`` (safetensors) and returns it."""
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sd = tiny_lora_state_dict(task_or_config, fmt, **kwargs)  # type: ignore[arg-type]
    save_file({k: v.contiguous() for k, v in sd.items()}, str(p), metadata={"format": "pt"})
    return p
