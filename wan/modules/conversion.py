"""Diffusers <-> official Wan key names (tensors are never copied, only renamed).

- DiT: ``convert_diffusers_dit_state_dict`` (Diffusers ``WanTransformer3DModel`` -> official
  ``WanModel`` keys) and its strict inverse ``to_diffusers_dit_state_dict``; unknown keys raise
  ``DiTCheckpointError`` listing them (with a hint for Wan 2.1 image weights or an already
  converted dict).
- VAE: the renaming both Wan VAEs share (``quant_conv``/``post_quant_conv``, ``conv_in``,
  ``norm_out``/``conv_out``, ``mid_block``, the residual-block parameter names):
  ``convert_diffusers_vae_shared_key`` and the ``DIFFUSERS_VAE_*_TO_OFFICIAL`` maps. The per-version
  stage layouts are converted next to each VAE (``vae21.convert_diffusers_vae21_state_dict``,
  ``vae22.convert_diffusers_vae22_state_dict``), on top of these.

Imports nothing heavy (no torch at import time).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from ..errors import CheckpointError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "DIFFUSERS_VAE_ENDS_TO_OFFICIAL",
    "DIFFUSERS_VAE_RESNET_TO_OFFICIAL",
    "DIFFUSERS_VAE_TOP_TO_OFFICIAL",
    "DiTCheckpointError",
    "convert_diffusers_dit_state_dict",
    "convert_diffusers_vae_shared_key",
    "raise_unknown_vae_keys",
    "to_diffusers_dit_state_dict",
]


class DiTCheckpointError(CheckpointError):
    """A DiT state dict has keys that are not part of the expected layout; the message lists them."""


# ----------------------------------------------------------------------------- DiT

# Diffusers WanTransformer3DModel name -> official name, outside the blocks.
_DIT_DIFFUSERS_TOP: dict[str, str] = {
    "patch_embedding.weight": "patch_embedding.weight",
    "patch_embedding.bias": "patch_embedding.bias",
    "condition_embedder.text_embedder.linear_1.weight": "text_embedding.0.weight",
    "condition_embedder.text_embedder.linear_1.bias": "text_embedding.0.bias",
    "condition_embedder.text_embedder.linear_2.weight": "text_embedding.2.weight",
    "condition_embedder.text_embedder.linear_2.bias": "text_embedding.2.bias",
    "condition_embedder.time_embedder.linear_1.weight": "time_embedding.0.weight",
    "condition_embedder.time_embedder.linear_1.bias": "time_embedding.0.bias",
    "condition_embedder.time_embedder.linear_2.weight": "time_embedding.2.weight",
    "condition_embedder.time_embedder.linear_2.bias": "time_embedding.2.bias",
    "condition_embedder.time_proj.weight": "time_projection.1.weight",
    "condition_embedder.time_proj.bias": "time_projection.1.bias",
    "proj_out.weight": "head.head.weight",
    "proj_out.bias": "head.head.bias",
    "scale_shift_table": "head.modulation",
}

# ... and inside ``blocks.{i}.`` (Diffusers' norm2 is the official norm3).
_DIT_DIFFUSERS_BLOCK: dict[str, str] = {
    "scale_shift_table": "modulation",
    "norm2.weight": "norm3.weight",
    "norm2.bias": "norm3.bias",
    "ffn.net.0.proj.weight": "ffn.0.weight",
    "ffn.net.0.proj.bias": "ffn.0.bias",
    "ffn.net.2.weight": "ffn.2.weight",
    "ffn.net.2.bias": "ffn.2.bias",
    **{
        f"{theirs}.{proj_d}.{p}": f"{ours}.{proj_o}.{p}"
        for theirs, ours in (("attn1", "self_attn"), ("attn2", "cross_attn"))
        for proj_d, proj_o in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o"))
        for p in ("weight", "bias")
    },
    **{
        f"{theirs}.{norm}.weight": f"{ours}.{norm}.weight"
        for theirs, ours in (("attn1", "self_attn"), ("attn2", "cross_attn"))
        for norm in ("norm_q", "norm_k")
    },
}

_BLOCK_KEY_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_WAN21_IMAGE_KEY_RE = re.compile(
    r"(add_k_proj|add_v_proj|norm_added_[kq]|image_embedder|k_img|v_img|norm_k_img|img_emb)"
)


def _is_known(key: str, top: Collection[str], block: Collection[str]) -> bool:
    match = _BLOCK_KEY_RE.match(key)
    return match.group(2) in block if match is not None else key in top


def _rename(
    sd: Mapping[str, Tensor], top: Mapping[str, str], block: Mapping[str, str], source: str
) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        match = _BLOCK_KEY_RE.match(key)
        if match is not None:
            suffix = block.get(match.group(2))
            new = None if suffix is None else f"blocks.{match.group(1)}.{suffix}"
        else:
            new = top.get(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        hint = ""
        if any(_WAN21_IMAGE_KEY_RE.search(k) for k in unknown):
            hint = " Wan 2.1 image-conditioning (CLIP) weights are not part of Wan 2.2 and are not supported."
        elif any(_is_known(k, top.values(), block.values()) for k in unknown):
            hint = " They are in the other naming scheme: the dict may already be converted."
        shown = ", ".join(sorted(unknown)[:10])
        more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise DiTCheckpointError(f"{len(unknown)} keys are not {source} Wan DiT keys: {shown}{more}.{hint}")
    return out


def convert_diffusers_dit_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Renames a Diffusers ``WanTransformer3DModel`` state dict to the official Wan keys.

    Tensors are not copied. Raises :class:`DiTCheckpointError` listing every key that is not a
    Diffusers Wan 2.2 DiT key (e.g. an already-official dict, or Wan 2.1 image-embedding weights).
    """
    return _rename(sd, _DIT_DIFFUSERS_TOP, _DIT_DIFFUSERS_BLOCK, "Diffusers")


def to_diffusers_dit_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`convert_diffusers_dit_state_dict`: official keys -> Diffusers keys (strict)."""
    top = {v: k for k, v in _DIT_DIFFUSERS_TOP.items()}
    block = {v: k for k, v in _DIT_DIFFUSERS_BLOCK.items()}
    return _rename(sd, top, block, "official")


# ----------------------------------------------------------------------------- VAE (shared by Wan 2.1 and 2.2)


# diffusers WanResidualBlock parameter names -> official ResidualBlock parameter names
DIFFUSERS_VAE_RESNET_TO_OFFICIAL: dict[str, str] = {
    "norm1.gamma": "residual.0.gamma",
    "conv1.weight": "residual.2.weight",
    "conv1.bias": "residual.2.bias",
    "norm2.gamma": "residual.3.gamma",
    "conv2.weight": "residual.6.weight",
    "conv2.bias": "residual.6.bias",
    "conv_shortcut.weight": "shortcut.weight",
    "conv_shortcut.bias": "shortcut.bias",
}


# diffusers top-level / encoder-decoder end layers -> official names (prefix and part maps)
DIFFUSERS_VAE_TOP_TO_OFFICIAL: dict[str, str] = {"quant_conv.": "conv1.", "post_quant_conv.": "conv2."}
DIFFUSERS_VAE_ENDS_TO_OFFICIAL: dict[str, str] = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}


def convert_diffusers_vae_shared_key(key: str) -> str | None:
    """Official name of a diffusers ``AutoencoderKLWan`` key that both VAE versions share, else None.

    Covers ``quant_conv``/``post_quant_conv``, ``conv_in``, ``norm_out``/``conv_out`` and ``mid_block``.
    """
    for old, new in DIFFUSERS_VAE_TOP_TO_OFFICIAL.items():
        if key.startswith(old):
            return new + key[len(old) :]
    m = re.fullmatch(r"(encoder|decoder)\.(conv_in|norm_out|conv_out)\.(.+)", key)
    if m:
        return f"{m.group(1)}.{DIFFUSERS_VAE_ENDS_TO_OFFICIAL[m.group(2)]}.{m.group(3)}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)", key)
    if m and m.group(3) in DIFFUSERS_VAE_RESNET_TO_OFFICIAL:
        return f"{m.group(1)}.middle.{2 * int(m.group(2))}.{DIFFUSERS_VAE_RESNET_TO_OFFICIAL[m.group(3)]}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(norm\.gamma|to_qkv\.\w+|proj\.\w+)", key)
    if m:
        return f"{m.group(1)}.middle.1.{m.group(2)}"
    return None


def raise_unknown_vae_keys(unknown: list[str], what: str) -> None:
    """``ValueError`` naming the first few ``unknown`` keys of a Diffusers ``what`` state dict (if any)."""
    if unknown:
        raise ValueError(f"unrecognised keys for a diffusers {what} state dict: {unknown[:5]} ({len(unknown)} total)")
