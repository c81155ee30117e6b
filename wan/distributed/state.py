"""The runtime side of a parallel run: process groups, and the few collectives the pipeline uses.

``init_parallel(config)`` joins (or starts, from the torchrun environment) the default process group
(NCCL on CUDA, gloo on CPU), checks the world against the config and builds the groups of
``wan.distributed.config``. The pipeline then calls, on every rank, in the same order:

- ``broadcast_object(request)``: rank 0's ``GenerationRequest`` (its seed, image, LoRAs) for all;
- ``broadcast_tensors(...)``: rank 0's prepared latents / image conditioning, bit-identical everywhere;
- ``guided_velocity(...)``: CFG-parallel, cond on ``cfg_rank`` 0 and uncond on ``cfg_rank`` 1, one
  all-gather per step over the pair of ranks with the same ``sp_rank``;
- ``agree_stop(flag)``: one small all-reduce per step, so rank 0's cancel stops every rank.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .config import ParallelConfig, ParallelConfigError
from .ulysses import SequenceParallel

__all__ = ["ParallelState", "init_parallel", "start_parallel"]

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(eq=False)
class ParallelState:
    """This process's place in a parallel run (see ``wan.distributed.config`` for the layout)."""

    config: ParallelConfig
    rank: int
    world_size: int
    device: torch.device
    sp: SequenceParallel | None = None      # Ulysses group (None when ulysses_size == 1)
    cfg_group: Any = None                   # the pair (cond, uncond) of ranks with this sp_rank
    cfg_rank: int = 0                       # 0: computes cond, 1: uncond
    mesh: Any = field(default=None, repr=False)  # 1-D DeviceMesh over the world (FSDP)

    @property
    def is_main(self) -> bool:
        """Rank 0: builds the request, decodes the video, writes files, reports progress."""
        return self.rank == 0

    def attach(self, pipe: Any) -> None:
        """Makes a loaded ``WanVideoPipeline`` parallel: head check, Ulysses hooks, FSDP shards."""
        from .config import check_heads
        from .fsdp import shard_dit, shard_text_encoder

        for name, model in pipe.experts.experts.items():
            check_heads(model.config.num_heads, self.config.ulysses_size, f"{pipe.spec.task} ({name})")
            if self.config.dit_fsdp:
                shard_dit(model, self.mesh)
            model.set_sequence_parallel(self.sp)
        if self.config.t5_fsdp:
            shard_text_encoder(pipe.text_encoder, self.mesh)
        pipe.parallel = self

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled)."""
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._object_device())
        return box[0]

    def _object_device(self) -> torch.device | None:
        return self.device if dist.get_backend() == "nccl" else None

    def broadcast_tensors(self, *tensors: Tensor | None) -> None:
        """Overwrites each (non-None) tensor in place with rank 0's copy (same shape on every rank)."""
        for t in tensors:
            if t is not None:
                dist.broadcast(t, src=0)

    def agree_stop(self, stop: bool) -> bool:
        """True on every rank if any rank asks to stop (rank 0's callback, in practice)."""
        flag = torch.tensor([1 if stop else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def guided_velocity(
        self, model: nn.Module, latents: Tensor, t: Tensor, context: Any, context_null: Any,
        y: Tensor | None, scale: float, *, attention: str | None = None,
    ) -> Tensor:  # fmt: skip
        """CFG-parallel ``uncond + scale * (cond - uncond)``: this rank runs one of the two passes and
        the pair exchanges them. ``scale`` 1 (cond only) / 0 (uncond only): every rank runs that pass."""
        if self.cfg_group is None:
            raise RuntimeError("guided_velocity needs cfg_parallel (a cond/uncond pair of ranks)")
        kw = {} if attention is None else {"attention": attention}
        if scale == 1.0:
            return model(latents, t, context, y=y, **kw)
        if scale == 0.0:
            return model(latents, t, context_null, y=y, **kw)
        mine = model(latents, t, context if self.cfg_rank == 0 else context_null, y=y, **kw).contiguous()
        both = [torch.empty_like(mine) for _ in range(2)]
        dist.all_gather(both, mine, group=self.cfg_group)
        cond, uncond = both
        return uncond + scale * (cond - uncond)


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init_parallel(
    config: ParallelConfig, device: str | torch.device | None = None, *, timeout_s: float = 1800.0
) -> ParallelState:
    """Joins the default process group (starting it from the torchrun environment if needed) and
    builds the Ulysses / CFG groups and the FSDP mesh of ``config``. Every rank must call it.

    ``device`` defaults to ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; the backend is
    NCCL for CUDA and gloo otherwise. Raises ``ParallelConfigError`` when the world does not match.
    """
    dev = _default_device() if device is None else torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        missing = [v for v in TORCHRUN_VARS if v not in os.environ]
        if missing:
            raise ParallelConfigError(
                f"a parallel run needs torch.distributed: start it with torchrun --nproc_per_node "
                f"{config.world_size} (the environment lacks {', '.join(missing)})"
            )
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=_dt.timedelta(seconds=timeout_s),
                                device_id=dev if dev.type == "cuda" else None)  # fmt: skip
    world, rank = dist.get_world_size(), dist.get_rank()
    config.check_world(world)
    u = config.ulysses_size
    state = ParallelState(config=config, rank=rank, world_size=world, device=dev)
    cfg_rank, sp_rank = divmod(rank, u)
    if u > 1:
        group = None  # the default (world) group when Ulysses spans every rank
        if config.cfg_parallel:
            groups = [dist.new_group(list(range(c * u, (c + 1) * u))) for c in range(2)]  # every rank makes both
            group = groups[cfg_rank]
        state.sp = SequenceParallel(group, u, sp_rank)
    if config.cfg_parallel:
        pairs = [dist.new_group([s, u + s]) for s in range(u)]
        state.cfg_group, state.cfg_rank = pairs[sp_rank], cfg_rank
    if config.dit_fsdp or config.t5_fsdp:
        from torch.distributed.device_mesh import init_device_mesh

        state.mesh = init_device_mesh(dev.type, (world,))
    return state


def start_parallel(
    config: Any, *, device: Any, offload: Any, quantize: Any, dit_files: Any, t5_cpu: bool, t5_quantize: Any
) -> tuple[ParallelState, torch.device, Any]:
    """``load_pipeline``'s first step with ``parallel=``: checks the config against the load options
    (FSDP: profile ``none``, no fp8, umT5 on the GPUs), joins the group; -> (state, device, offload)."""
    if not isinstance(config, ParallelConfig):
        raise TypeError(f"parallel must be a wan.distributed.ParallelConfig; got {type(config).__name__}")
    if config.dit_fsdp and (quantize or dit_files is not None):
        raise ParallelConfigError("dit_fsdp cannot shard fp8 weights; drop --quantize / the fp8 DiT files")
    if config.t5_fsdp and (t5_cpu or t5_quantize):
        raise ParallelConfigError("t5_fsdp shards the text encoder on the GPUs: drop --t5_cpu / --t5_quantize")
    if config.dit_fsdp and offload not in (None, False, "none"):
        raise ParallelConfigError(f"dit_fsdp keeps its weight shards on the device: use offload 'none', not {offload!r}")
    state = init_parallel(config, device)
    return state, state.device, "none" if config.dit_fsdp else offload
