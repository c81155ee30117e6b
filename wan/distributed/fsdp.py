"""FSDP2 (``fully_shard``) of the DiT experts and of the umT5 encoder: memory only, same numbers.

Each DiT block is one FSDP unit (its parameters are all-gathered just before it runs and freed
after); each block's cross-attention is a unit of its own so that ``project_context`` (the cached
text side, ``WanModel.encode_context``) can gather it outside the block's forward; the root holds the
embeddings and the head. umT5: one unit per encoder block plus the root (embedding, final norm).
The parameters are frozen first (inference), which also lets float32-kept and bf16 parameters share
a unit. Every rank must run the same forwards in the same order (the pipeline does).
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["shard_dit", "shard_text_encoder"]


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def shard_dit(model: nn.Module, mesh: Any) -> nn.Module:
    """Shards a ``WanModel`` in place over ``mesh`` (a 1-D DeviceMesh); returns it."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    _freeze(model)
    for block in model.blocks:
        fully_shard(block.cross_attn, mesh=mesh)
        register_fsdp_forward_method(block.cross_attn, "project_context")
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    register_fsdp_forward_method(model, "encode_context")
    return model


def shard_text_encoder(encoder: Any, mesh: Any) -> Any:
    """Shards a ``wan.modules.t5.TextEncoder``'s umT5 model in place over ``mesh``; returns the encoder."""
    from torch.distributed.fsdp import fully_shard

    model = encoder.model
    _freeze(model)
    for block in model.encoder.block:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return encoder
