"""Multi-process inference on torch.distributed (NCCL on GPU, gloo on CPU).

- ``ParallelConfig`` (``config``, torch-free): the layout, ``cfg_size x ulysses_size`` ranks, plus FSDP.
- ``init_parallel`` / ``ParallelState`` (``state``): groups and the pipeline's collectives
  (request broadcast = seed broadcast, input broadcast, CFG-parallel exchange, stop agreement).
- ``SequenceParallel`` (``ulysses``): Ulysses sequence parallel inside ``WanModel``.
- ``shard_dit`` / ``shard_text_encoder`` (``fsdp``): FSDP2 of the DiT and umT5 blocks.

Use: ``wan.load_pipeline(task, ckpt, parallel=ParallelConfig(ulysses_size=4, cfg_parallel=True))`` on
every rank of ``torchrun --nproc_per_node 8``; ``pipe.generate(request)`` on every rank returns the
video on rank 0 and None elsewhere. Importing this package does not import torch (``config`` is
torch-free; the other modules load on first use).
"""

from __future__ import annotations

from typing import Any

from .config import ParallelConfig, ParallelConfigError, check_heads, head_divisors

__all__ = [
    "ParallelConfig",
    "ParallelConfigError",
    "ParallelState",
    "SequenceParallel",
    "check_heads",
    "head_divisors",
    "init_parallel",
    "shard_dit",
    "shard_text_encoder",
    "start_parallel",
]

_LAZY = {"ParallelState": "state", "init_parallel": "state", "start_parallel": "state", "SequenceParallel": "ulysses",
         "shard_dit": "fsdp", "shard_text_encoder": "fsdp"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
