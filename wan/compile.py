"""Regional compilation of the DiT: one ``torch.compile`` region, the transformer block, reused by all blocks.

:class:`BlockCompiler` compiles a single function that runs one ``WanAttentionBlock`` (taken as an
argument) and is installed as ``WanModel.block_runner`` on every expert, so the 40 blocks of both
A14B experts share one compiled graph: the blocks differ only in their parameters, which dynamo
lifts to graph inputs (no guard on a block's identity). What makes a new graph, and only that:

- a new latent grid (resolution or frame count): ``dynamic=False``, one static graph per shape;
- another attention backend (e.g. the full-precision steps of ``"sage:1,1"``);
- a different *set* of forward hooks inside the block (LoRAs on or off, or on other layers): the
  hook layout is passed as a constant argument, so it is guarded on explicitly. LoRA strength
  changes, expert switches (MoE) and expert offload (weights moved between CPU and GPU) change
  tensors, not the graph: no recompile per step.

The ``"block"`` offload profile is not supported (its per-module pre-hooks stream weights from the
host and would be traced into the graph); ``wan.pipeline.load_pipeline`` refuses the combination.

``graphs`` counts the graphs the backend compiled (a dynamo graph break would add more than one per
shape), ``seconds`` the wall time of the block calls that compiled something. Both accumulate; the
pipeline records the part of each run in ``RunRecord.compile_graphs`` / ``compile_seconds`` and logs
the compile time once. Compilation needs a C compiler for the CPU inductor backend and Triton for
CUDA; ``backend="aot_eager"`` (no code generation) is what the CPU tests use.
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_BACKEND", "RECOMPILE_LIMIT", "BlockCompiler", "compile_backend_name", "hook_layout"]

DEFAULT_BACKEND = "inductor"
# Graphs one compiled block function may hold (resolutions x attention backends x hook layouts); torch's
# default of 8 is raised to this when a BlockCompiler is made, so a long app session keeps compiling
# new sizes instead of falling back to eager.
RECOMPILE_LIMIT = 64

logger = logging.getLogger(__name__)


def compile_backend_name(value: bool | str | None, profile: str = "none") -> str | None:
    """``compile`` option -> dynamo backend name: False/None -> None (off), True -> ``"inductor"``,
    a string -> that backend (``"inductor"``, ``"aot_eager"``, ``"eager"``, ...). ValueError for
    anything else, and for compiling with the ``"block"`` offload ``profile``."""
    if value is None or value is False:
        return None
    if value is True:
        name = DEFAULT_BACKEND
    elif isinstance(value, str) and value.strip():
        name = value.strip()
        known = torch._dynamo.list_backends(exclude_tags=())
        if name not in known:
            raise ValueError(f"compile={value!r}: not a torch.compile backend; use True (inductor) or one of "
                             f"{', '.join(sorted(known))}")  # fmt: skip
    else:
        raise ValueError(f"compile must be True, False or a torch.compile backend name; got {value!r}")
    if profile == "block":
        raise ValueError("compile cannot be combined with offload='block' (its per-layer hooks stream weights "
                         "during the block); use offload='expert' or 'none' with compile")  # fmt: skip
    return name


def hook_layout(block: nn.Module) -> tuple[tuple[int, int, int], ...]:
    """``(forward pre-hooks, forward hooks, kwargs hooks)`` counts of every module in ``block``, in
    module order: what a compiled graph of the block depends on besides tensors."""
    return tuple(
        (len(m._forward_pre_hooks), len(m._forward_hooks), len(m._forward_hooks_with_kwargs)) for m in block.modules()
    )


def _run_block(
    block: nn.Module, x: Tensor, e0: Tensor, t_index: Any, context: Any, freqs: Tensor, backend: str | None,
    layout: int,
) -> Tensor:
    if layout < 0:  # never true: a use of the constant, so dynamo guards on it (new hook layout -> new graph)
        raise ValueError(f"bad hook layout key {layout}")
    return block(x, e0, t_index, context, freqs, backend)


class BlockCompiler:
    """``torch.compile`` of one DiT block call, shared by every block of every expert it is attached to.

    ``backend``: a dynamo backend (``"inductor"``, or ``"aot_eager"``/``"eager"`` for tests); ``mode``:
    an inductor mode (None = default; CUDA graphs do not suit offloaded weights). Shapes are static
    (``dynamic=False``): each latent grid compiles once. Call it as ``WanModel.block_runner`` (see
    :meth:`attach`).
    """

    def __init__(self, backend: str = DEFAULT_BACKEND, *, mode: str | None = None) -> None:
        self.backend = backend
        self.mode = mode
        self.graphs = 0
        self.seconds = 0.0
        self._layouts: dict[tuple[tuple[int, int, int], ...], int] = {}  # hook layout -> small int key
        config = torch._dynamo.config
        limit_name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, limit_name, max(getattr(config, limit_name), RECOMPILE_LIMIT))
        # a private copy of the code object: dynamo keeps its compiled graphs per code object, so two
        # compilers (two pipelines, or tests with other backends) never share or evict each other's graphs
        fn = types.FunctionType(_run_block.__code__.replace(), _run_block.__globals__, "_run_block")
        counting = self._counting_inductor if backend == "inductor" else self._counting  # mode: applied there
        self._compiled: Callable[..., Tensor] = torch.compile(fn, backend=counting, dynamic=False)

    # the backends: count every graph handed to the compiler, then delegate
    def _counting(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        from torch._dynamo.backends.registry import lookup_backend

        self.graphs += 1
        return lookup_backend(self.backend)(gm, example_inputs)

    def _counting_inductor(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        from torch._inductor.compile_fx import compile_fx

        self.graphs += 1
        config_patches = {} if self.mode is None else torch._inductor.list_mode_options(self.mode)
        return compile_fx(gm, example_inputs, config_patches=config_patches)

    def __call__(
        self, block: nn.Module, x: Tensor, e0: Tensor, t_index: Any, context: Any, freqs: Tensor, backend: str | None
    ) -> Tensor:
        graphs = self.graphs
        start = time.perf_counter()
        layout = self._layouts.setdefault(hook_layout(block), len(self._layouts))
        if freqs.is_complex():  # real (cos, sin) pairs: no complex tensor enters the graph
            freqs = torch.view_as_real(freqs)
        out = self._compiled(block, x, e0, t_index, context, freqs, backend, layout)
        if self.graphs != graphs:
            seconds = time.perf_counter() - start
            self.seconds += seconds
            logger.info("torch.compile (%s): %d graph(s) of the DiT block in %.1f s", self.backend,
                        self.graphs - graphs, seconds)  # fmt: skip
        return out

    def attach(self, model: nn.Module) -> None:
        """Runs every block of ``model`` (a ``WanModel``) through this compiled function."""
        if not hasattr(model, "block_runner"):
            raise TypeError(f"{type(model).__name__} has no block_runner: only WanModel blocks can be compiled")
        model.block_runner = self

    def detach(self, model: nn.Module) -> None:
        if getattr(model, "block_runner", None) is self:
            model.block_runner = None
