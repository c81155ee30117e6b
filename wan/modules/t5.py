"""umT5-XXL text encoder (encoder only), built on transformers' ``UMT5EncoderModel``.

Wan ships the encoder as ``models_t5_umt5-xxl-enc-bf16.pth`` with its own key names; this module maps
those keys onto the Hugging Face layout, infers the architecture from the tensors, and builds the
model from a state dict without ever materialising a randomly initialised model (meta device +
``assign=True``). HF-layout dicts (a Diffusers ``text_encoder/``) build too. This module reads no
files: ``wan.loading`` reads the checkpoint, the ``config.json`` and the tokenizer and calls
``TextEncoder.from_state_dict``.

Encoding follows the official pipeline: clean the prompt, tokenize to exactly ``text_len`` (512)
tokens with ``</s>`` appended, run the encoder over all positions with the key-padding mask, and
return each prompt's embeddings trimmed to its true length (EOS included). The DiT re-pads them with
zeros to ``text_len`` (``pad_context``).

Shapes: ``encode(prompts)`` -> list of ``[L_i, dim]``; ``pad_context`` -> ``[B, text_len, dim]``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from transformers import UMT5Config, UMT5EncoderModel

from ..errors import T5CheckpointError

__all__ = [
    "KeyLayout",
    "T5CheckpointError",
    "TextEncoder",
    "clean_prompt",
    "convert_official_t5_state_dict",
    "pad_context",
    "umt5_config_from_dict",
    "umt5_config_from_state_dict",
]

KeyLayout = Literal["official", "hf"]

# Constants of the official umT5 encoder that the tensors cannot tell us.
RELATIVE_ATTENTION_MAX_DISTANCE = 128
LAYER_NORM_EPS = 1e-6
FEED_FORWARD_PROJ = "gated-gelu"  # transformers maps this to the tanh GELU ("gelu_new"), as official

_OFFICIAL_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_HF_BLOCK_RE = re.compile(r"^encoder\.block\.(\d+)\.")

# official per-block suffix -> HF per-block suffix (under encoder.block.{i}.)
_BLOCK_KEY_MAP: dict[str, str] = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # the GELU branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_EMBED_KEYS = ("shared.weight", "encoder.embed_tokens.weight")


# ----------------------------------------------------------------------------- key conversion


def convert_official_t5_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Maps official Wan umT5 keys to ``UMT5EncoderModel`` keys (tensors are not copied).

    ``token_embedding.weight`` becomes both ``shared.weight`` and ``encoder.embed_tokens.weight``
    (tied in HF). Raises ``T5CheckpointError`` listing every key that is not an official umT5
    encoder key (an HF-layout dict is rejected: use it as is).
    """
    out: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in sd.items():
        if key == "token_embedding.weight":
            for hf_key in _EMBED_KEYS:
                out[hf_key] = tensor
            continue
        if key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = tensor
            continue
        match = _OFFICIAL_BLOCK_RE.match(key)
        if match is not None and match.group(2) in _BLOCK_KEY_MAP:
            out[f"encoder.block.{match.group(1)}.{_BLOCK_KEY_MAP[match.group(2)]}"] = tensor
            continue
        unexpected.append(key)
    if unexpected:
        shown = ", ".join(sorted(unexpected)[:8])
        more = f" (+{len(unexpected) - 8} more)" if len(unexpected) > 8 else ""
        raise T5CheckpointError(
            f"{len(unexpected)} key(s) are not official umT5 encoder keys: {shown}{more}. Expected "
            "token_embedding.weight, norm.weight and blocks.{i}.{" + ", ".join(_BLOCK_KEY_MAP) + "}"
        )
    return out


def _official_key_name(hf_key: str) -> str:
    """HF key -> official key, for error messages about official files (unknown keys unchanged)."""
    if hf_key in _EMBED_KEYS:
        return "token_embedding.weight"
    if hf_key == "encoder.final_layer_norm.weight":
        return "norm.weight"
    match = _HF_BLOCK_RE.match(hf_key)
    if match is not None:
        suffix = hf_key[match.end():]
        for official, hf in _BLOCK_KEY_MAP.items():
            if hf == suffix:
                return f"blocks.{match.group(1)}.{official}"
    return hf_key


def _is_hf_layout(sd: Mapping[str, Any]) -> bool:
    return any(key in sd for key in _EMBED_KEYS) or any(key.startswith("encoder.") for key in sd)


def _require(sd: Mapping[str, Tensor], key: str, ndim: int, official: bool) -> Tensor:
    shown = _official_key_name(key) if official else key
    if key not in sd:
        raise T5CheckpointError(f"missing key {shown!r}, needed to infer the umT5 architecture")
    tensor = sd[key]
    if not isinstance(tensor, Tensor) or tensor.ndim != ndim:
        shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        raise T5CheckpointError(f"key {shown!r} must be a {ndim}-D tensor, got {shape}")
    return tensor


def umt5_config_from_state_dict(sd: Mapping[str, Tensor]) -> UMT5Config:
    """Infers the ``UMT5Config`` of an encoder state dict (official Wan layout, or HF layout).

    vocab and d_model come from the token embedding, num_heads and num_buckets from the relative
    position table ``[num_buckets, num_heads]``, d_kv from the attention width / num_heads, d_ff from
    the FFN and num_layers from the block indices. The rest are the official umT5 settings:
    gated tanh-GELU FFN, relative_attention_max_distance 128, RMSNorm eps 1e-6, no attention scaling
    (built into HF UMT5), pad id 0, eos id 1.
    """
    official = not _is_hf_layout(sd)
    hf = convert_official_t5_state_dict(sd) if official else dict(sd)
    embed_key = "shared.weight" if "shared.weight" in hf else "encoder.embed_tokens.weight"
    vocab_size, d_model = _require(hf, embed_key, 2, official).shape
    layer_ids = sorted({int(m.group(1)) for key in hf if (m := _HF_BLOCK_RE.match(key)) is not None})
    if not layer_ids:
        raise T5CheckpointError("no encoder blocks found (expected blocks.{i}.* / encoder.block.{i}.*)")
    if layer_ids != list(range(len(layer_ids))):
        raise T5CheckpointError(f"encoder block indices must be 0..N-1 without gaps, got {layer_ids}")
    prefix = "encoder.block.0.layer."
    num_buckets, num_heads = _require(hf, prefix + "0.SelfAttention.relative_attention_bias.weight", 2, official).shape
    inner_dim = _require(hf, prefix + "0.SelfAttention.q.weight", 2, official).shape[0]
    d_ff = _require(hf, prefix + "1.DenseReluDense.wi_1.weight", 2, official).shape[0]
    if num_heads <= 0 or inner_dim % num_heads != 0:
        raise T5CheckpointError(
            f"attention width {inner_dim} (q.weight rows) is not divisible by num_heads {num_heads} "
            "(relative position table columns)"
        )
    return UMT5Config(
        vocab_size=int(vocab_size),
        d_model=int(d_model),
        d_kv=int(inner_dim // num_heads),
        d_ff=int(d_ff),
        num_layers=len(layer_ids),
        num_heads=int(num_heads),
        relative_attention_num_buckets=int(num_buckets),
        relative_attention_max_distance=RELATIVE_ATTENTION_MAX_DISTANCE,
        layer_norm_epsilon=LAYER_NORM_EPS,
        feed_forward_proj=FEED_FORWARD_PROJ,
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def umt5_config_from_dict(raw: Mapping[str, Any]) -> UMT5Config:
    """The encoder-only ``UMT5Config`` of an HF ``config.json`` dict (``model_type`` must be umt5).

    Raises ``T5CheckpointError`` when the dict is not a valid umT5 config (wrong ``model_type``,
    or a value ``UMT5Config`` rejects)."""
    try:
        if not isinstance(raw, Mapping):
            raise TypeError(f"expected a JSON object, got {type(raw).__name__}")
        if raw.get("model_type", "umt5") != "umt5":
            raise ValueError(f"model_type must be 'umt5', got {raw.get('model_type')!r}")
        return UMT5Config.from_dict({**raw, "is_encoder_decoder": False, "use_cache": False})
    except Exception as exc:  # wrong model_type, strict field validation of UMT5Config
        raise T5CheckpointError(f"not a valid umT5 config ({exc})") from exc


# ----------------------------------------------------------------------------- building the encoder


def _build_encoder(config: UMT5Config, hf_sd: Mapping[str, Tensor], dtype: torch.dtype, device: torch.device,
                   source: str | Path, official_names: bool) -> UMT5EncoderModel:
    """Builds the model on the meta device and assigns the (cast, moved) tensors with strict key checks.

    Errors name ``source`` and list keys in the file's own naming (official or HF).
    """
    name = _official_key_name if official_names else (lambda key: key)
    sd = dict(hf_sd)
    # The encoder reads encoder.embed_tokens; HF files may store it once under either name (tied).
    embedding = sd.get("encoder.embed_tokens.weight", sd.get("shared.weight"))
    if embedding is not None:
        sd["shared.weight"] = sd["encoder.embed_tokens.weight"] = embedding

    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    missing = sorted({name(k) for k in set(expected) - set(sd)})
    unexpected = sorted({name(k) for k in set(sd) - set(expected)})
    wrong = sorted({f"{name(k)}: {tuple(sd[k].shape)} != expected {expected[k]}" for k in set(sd) & set(expected)
                    if tuple(sd[k].shape) != expected[k]})
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}" + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else ""))
        if unexpected:
            parts.append(
                f"unexpected keys {unexpected[:8]}" + (f" (+{len(unexpected) - 8} more)" if len(unexpected) > 8 else "")
            )
        if wrong:
            parts.append(f"wrong shapes {wrong[:8]}" + (f" (+{len(wrong) - 8} more)" if len(wrong) > 8 else ""))
        raise T5CheckpointError(
            f"{source}: state dict does not match a umT5 encoder with d_model={config.d_model}, "
            f"num_layers={config.num_layers}, num_heads={config.num_heads}: " + "; ".join(parts)
        )

    # convert each distinct tensor once: the tied embedding is one tensor under two names, and a
    # per-key .to() would make two copies of it (the biggest tensor of the model) when casting
    by_id: dict[int, Tensor] = {}
    converted: dict[str, Tensor] = {}
    for key, t in sd.items():
        if id(t) not in by_id:
            by_id[id(t)] = t.to(device=device, dtype=dtype)
        converted[key] = by_id[id(t)]
    model.load_state_dict(converted, strict=True, assign=True)
    model.encoder.embed_tokens.weight = model.shared.weight  # re-tie (assign gives two Parameters)
    return model.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- prompts and encoder

_WHITESPACE_RE = re.compile(r"\s+")


def clean_prompt(text: str) -> str:
    """Official ``clean='whitespace'``: ftfy.fix_text, html.unescape twice, strip, collapse whitespace."""
    import ftfy

    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, got {type(text).__name__}")
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE_RE.sub(" ", text).strip()


class TextEncoder:
    """umT5 encoder + tokenizer. ``encode`` returns one ``[L_i, dim]`` tensor per prompt.

    ``dtype``/``device`` are those of the model weights; outputs are in that dtype and on that device.
    """

    def __init__(self, model: UMT5EncoderModel, tokenizer: Any, text_len: int = 512) -> None:
        if not isinstance(model, UMT5EncoderModel):
            raise TypeError(f"model must be a transformers UMT5EncoderModel, got {type(model).__name__}")
        if not isinstance(text_len, int) or text_len < 1:
            raise ValueError(f"text_len must be a positive int, got {text_len!r}")
        vocab = model.config.vocab_size
        if len(tokenizer) > vocab:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the text encoder's vocab_size is {vocab}: "
                "tokenizer and checkpoint do not belong together"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.text_len = text_len

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.shared.weight.dtype

    @classmethod
    def from_state_dict(
        cls,
        sd: Mapping[str, Tensor],
        tokenizer: Any,
        *,
        key_layout: KeyLayout,
        config: UMT5Config | None = None,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        text_len: int = 512,
        source: str | Path = "state dict",
    ) -> "TextEncoder":
        """Builds the encoder from an umT5 encoder state dict and a loaded tokenizer (no file access).

        ``key_layout`` is ``"official"`` (the keys of ``models_t5_umt5-xxl-enc-bf16.pth``) or
        ``"hf"`` (``UMT5EncoderModel`` keys, as in a Diffusers ``text_encoder/``).
        ``config`` defaults to the one inferred from the tensors (``umt5_config_from_state_dict``).
        The model is built on the meta device and the tensors are cast to ``dtype``, moved to
        ``device`` and assigned strictly. Errors are ``T5CheckpointError`` whose message starts with
        ``source`` (the file or folder the dict came from) and names keys in the dict's own naming.
        """
        if key_layout not in ("official", "hf"):
            raise ValueError(f"key_layout must be 'official' or 'hf', got {key_layout!r}")
        official = key_layout == "official"
        try:
            hf_sd = convert_official_t5_state_dict(sd) if official else dict(sd)
            if config is None:
                config = umt5_config_from_state_dict(sd)
        except T5CheckpointError as exc:
            raise T5CheckpointError(f"{source}: {exc}") from exc
        model = _build_encoder(config, hf_sd, dtype, torch.device(device), source, official_names=official)
        return cls(model, tokenizer, text_len=text_len)

    def tokenize(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Cleans and tokenizes to exactly ``text_len`` tokens -> (input_ids, attention_mask), int64 [B, text_len]."""
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise TypeError(f"prompts must be a list of str, got {type(prompts).__name__}")
        if len(prompts) == 0:
            raise ValueError("prompts must contain at least one prompt")
        texts = [clean_prompt(p) for p in prompts]
        batch = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return batch["input_ids"], batch["attention_mask"]

    def to(self, device: str | torch.device) -> "TextEncoder":
        """Moves the encoder weights (e.g. to offload to CPU after encoding); returns self."""
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> list[Tensor]:
        """-> one ``[L_i, dim]`` tensor per prompt, ``L_i`` = number of real tokens including ``</s>``."""
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, text_len, dim]
        lengths = mask.sum(dim=1).tolist()
        return [h[: int(n)] for h, n in zip(hidden, lengths)]


def pad_context(embs: Sequence[Tensor], text_len: int = 512) -> Tensor:
    """Stacks trimmed embeddings ``[L_i, dim]`` into ``[B, text_len, dim]``, zero padded at the end."""
    if len(embs) == 0:
        raise ValueError("embs must contain at least one [L, dim] tensor")
    dims = {e.shape[-1] for e in embs}
    if any(e.ndim != 2 for e in embs) or len(dims) != 1:
        raise ValueError(f"embs must all be [L, dim] with one dim, got shapes {[tuple(e.shape) for e in embs]}")
    too_long = [e.shape[0] for e in embs if e.shape[0] > text_len]
    if too_long:
        raise ValueError(f"embedding lengths {too_long} exceed text_len={text_len}")
    first = embs[0]
    out = first.new_zeros((len(embs), text_len, first.shape[-1]))
    for i, e in enumerate(embs):
        out[i, : e.shape[0]] = e.to(device=out.device, dtype=out.dtype)
    return out
