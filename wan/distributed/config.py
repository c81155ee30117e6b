"""How a multi-process run is laid out (torch-free to import).

``ParallelConfig`` is the one description of a parallel run (the CLI flags ``--ulysses_size``,
``--cfg_parallel``, ``--dit_fsdp``, ``--t5_fsdp`` and the app's ``--gpus`` map onto it). The world is
``cfg_size x ulysses_size`` processes: rank ``r = cfg_rank * ulysses_size + sp_rank``; the ranks of
one CFG branch (same ``cfg_rank``) form a Ulysses sequence-parallel group, and the two ranks with
the same ``sp_rank`` exchange their cond/uncond velocity once per step. FSDP (DiT blocks, umT5
blocks) shards over the whole world.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ParallelConfig", "ParallelConfigError", "check_heads", "head_divisors"]


class ParallelConfigError(ValueError):
    """A parallel layout that cannot run (world size, head count, an incompatible option)."""


def head_divisors(num_heads: int, limit: int = 16) -> list[int]:
    """The Ulysses sizes that split ``num_heads`` evenly, up to ``limit``."""
    return [d for d in range(1, min(num_heads, limit) + 1) if num_heads % d == 0]


def check_heads(num_heads: int, ulysses_size: int, what: str = "the DiT") -> None:
    """Ulysses gives each rank ``num_heads / ulysses_size`` heads: raise unless that is whole.

    A14B has 40 heads (1, 2, 4, 5, 8 ranks work), TI2V-5B 24 (1, 2, 3, 4, 6, 8).
    """
    if num_heads % ulysses_size:
        raise ParallelConfigError(
            f"ulysses_size {ulysses_size} does not divide the {num_heads} attention heads of {what}: "
            f"Ulysses gives every rank whole heads. Use --ulysses_size in {head_divisors(num_heads)} "
            "(with --cfg_parallel the world is twice that)."
        )


@dataclass(frozen=True)
class ParallelConfig:
    """One parallel layout. ``ulysses_size`` ranks split each forward's video tokens (Ulysses
    sequence parallel); ``cfg_parallel`` runs cond and uncond on two such groups; ``dit_fsdp`` /
    ``t5_fsdp`` shard the DiT / umT5 weights over every rank (memory only)."""

    ulysses_size: int = 1
    cfg_parallel: bool = False
    dit_fsdp: bool = False
    t5_fsdp: bool = False

    def __post_init__(self) -> None:
        u = self.ulysses_size
        if isinstance(u, bool) or not isinstance(u, int) or u < 1:
            raise ParallelConfigError(f"ulysses_size must be an integer >= 1; got {u!r}")
        for name in ("cfg_parallel", "dit_fsdp", "t5_fsdp"):
            if not isinstance(getattr(self, name), bool):
                raise ParallelConfigError(f"{name} must be True or False; got {getattr(self, name)!r}")

    @property
    def cfg_size(self) -> int:
        return 2 if self.cfg_parallel else 1

    @property
    def world_size(self) -> int:
        """Processes this layout needs: ``cfg_size * ulysses_size``."""
        return self.cfg_size * self.ulysses_size

    @classmethod
    def for_world(cls, world_size: int, *, cfg_parallel: bool = False, dit_fsdp: bool = False,
                  t5_fsdp: bool = False) -> ParallelConfig:  # fmt: skip
        """All ranks used: Ulysses over ``world_size`` (or ``world_size / 2`` with CFG-parallel)."""
        cfg = 2 if cfg_parallel else 1
        if world_size % cfg:
            raise ParallelConfigError(f"cfg_parallel needs an even number of processes; got {world_size}")
        return cls(ulysses_size=world_size // cfg, cfg_parallel=cfg_parallel, dit_fsdp=dit_fsdp, t5_fsdp=t5_fsdp)

    def check_world(self, world_size: int) -> None:
        """The launched world must be exactly ``cfg_size x ulysses_size`` processes."""
        if world_size != self.world_size:
            raise ParallelConfigError(
                f"{world_size} processes were launched but {self.describe()} needs {self.world_size}: start with "
                f"torchrun --nproc_per_node {self.world_size}, or set --ulysses_size so that "
                f"ulysses_size{' x 2' if self.cfg_parallel else ''} = {world_size}"
            )

    def describe(self) -> str:
        """E.g. ``"cfg 2 x ulysses 4 + dit_fsdp"``."""
        text = ("cfg 2 x " if self.cfg_parallel else "") + f"ulysses {self.ulysses_size}"
        return text + "".join(f" + {name}" for name in ("dit_fsdp", "t5_fsdp") if getattr(self, name))
