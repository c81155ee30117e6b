"""Memory profiles: where the DiT experts' weights (and the VAE) live during a run.

Profiles (``load_pipeline(..., offload=...)``; the old boolean still works: True -> ``"expert"``,
False -> ``"none"``, None -> ``"expert"`` on CUDA and ``"none"`` elsewhere):

``none``   Everything resident on the compute device (DiT experts, VAE; the text encoder unless ``t5_cpu``).
           Device memory: all the weights. Host RAM: none of them after the load.
``expert`` Today's A14B behaviour (:class:`ExpertOffloader`): each expert's weights stay in host RAM
           (page-locked on CUDA) and only the running expert is copied to the device; the text encoder
           goes back to the CPU after encoding. Device memory: one expert + VAE. Host RAM: every expert.
``block``  Block streaming (:class:`BlockOffloader`): the DiT blocks live in host RAM (page-locked on
           CUDA) and are copied to the device ``offload_blocks`` (N, default 2) at a time: when block i
           starts, blocks i+1 .. i+N-1 (wrapping to the next forward's first blocks) are prefetched on a
           side CUDA stream, and the compute stream waits on each block's copy event only when it needs
           that block, so the copy of block i+1 overlaps the compute of block i. The non-block parameters
           of the running expert (patch/text/time embeddings, head) stay resident while it runs; the
           VAE is copied in only to encode/decode (:class:`ModuleShuttle`); the text encoder is moved in
           for encoding and released after (``t5_cpu`` keeps it on the CPU). Device memory: N blocks +
           one expert's non-block parameters (+ the VAE while decoding). Host RAM: every expert.

Host RAM is bounded: the host copy IS the loaded tensor (the memory-mapped / cast tensor from the
checkpoint). On CUDA each tensor is replaced by ONE page-locked copy (``pin_memory()``; the pageable
original is dropped right after, so at most one tensor is doubled at any moment); nothing keeps a
second copy of the weights. On a CPU "device" the same code runs synchronously with real cpu -> cpu
copies (so the tests exercise it); it saves nothing there.

Residency ledger (:class:`ResidencyLedger`, ``offloader.ledger``): bytes of DiT parameters and
buffers the profile holds on the compute device now (``now``) and the maximum since ``reset_peak()``
(``peak``); the pipeline resets it at the start of each denoise and stores the peak in
``RunRecord.resident_peak_bytes``. It is bookkeeping of the offloader's own copies (on a CPU device
"on the device" means "a compute copy exists"), so it does not include the allocator's slack: with
``block`` on CUDA a freed block's memory is reused only after the compute stream is done with it
(``Tensor.record_stream``).

Parameters patched from outside (LoRA tensor swaps): ``BlockOffloader`` copies whatever tensor a
block parameter points to when it is loaded, and puts that tensor back when it is evicted, so a
swap made while the block is on the host is streamed too. Call ``park()`` (evict every block)
before patching, as the pipeline does before ``apply_loras``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_OFFLOAD_BLOCKS",
    "PROFILES",
    "BlockOffloader",
    "ExpertOffloader",
    "ModuleShuttle",
    "ResidencyLedger",
    "make_offloader",
    "module_bytes",
    "resolve_profile",
]

PROFILES = ("none", "expert", "block")
DEFAULT_OFFLOAD_BLOCKS = 2
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def resolve_profile(offload: bool | str | None, device: torch.device | str) -> str:
    """The profile name for ``offload`` (a name, the old boolean, or None = the device's default)."""
    if offload is None:
        return "expert" if torch.device(device).type == "cuda" else "none"
    if isinstance(offload, bool):
        return "expert" if offload else "none"
    if isinstance(offload, str):
        value = offload.strip().lower()
        if value in PROFILES:
            return value
        if value in _TRUE:
            return "expert"
        if value in _FALSE:
            return "none"
    raise ValueError(f"offload must be one of {PROFILES} (or True/False/None); got {offload!r}")


def _tensor_bytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _named_tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    out: list[tuple[str, Tensor]] = [(f"p:{k}", p) for k, p in model.named_parameters()]
    out += [(f"b:{k}", b) for k, b in model.named_buffers()]
    return out


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(_tensor_bytes(t) for _, t in _named_tensors(module))


def _host(t: Tensor, pin: bool) -> Tensor:
    """``t`` on the CPU, page-locked when ``pin`` (one copy replacing the pageable one)."""
    cpu = t.to("cpu")
    if pin and not cpu.is_pinned():
        cpu = cpu.pin_memory()
    return cpu


def _wants_pin(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


@dataclass
class ResidencyLedger:
    """Bytes of DiT weights on the compute device: ``now`` and the maximum ``peak`` since ``reset_peak``."""

    now: int = 0
    peak: int = 0

    def add(self, nbytes: int) -> None:
        self.now += nbytes
        self.peak = max(self.peak, self.now)

    def sub(self, nbytes: int) -> None:
        self.now -= nbytes

    def reset_peak(self) -> None:
        self.peak = self.now


# ------------------------------------------------------------------------------------ experts


class ExpertOffloader:
    """Places the DiT experts on the compute device, all at once (``none``) or one at a time (``expert``).

    ``offload=False``: every expert is moved to ``device`` once and stays there.
    ``offload=True``: each expert's weights stay on the CPU (page-locked when ``device`` is CUDA, so the
    copies are fast and asynchronous) as the master copy; ``activate(name)`` copies that expert to the
    device and drops the device copy of the previously active one (its CPU master is still there, so
    nothing is copied back). ``release()`` drops every device copy. Counters: ``loads`` (expert copies
    to the device) and ``switches`` (changes of active expert), both since construction.
    """

    def __init__(self, experts: Mapping[str, nn.Module], device: torch.device | str, *, offload: bool) -> None:
        if not experts:
            raise ValueError("experts must not be empty")
        self.experts = dict(experts)
        self.device = torch.device(device)
        self.offload = bool(offload)
        self.profile = "expert" if self.offload else "none"
        self.loads = 0
        self.switches = 0
        self.ledger = ResidencyLedger()
        self._active: str | None = None
        self._masters: dict[str, dict[str, Tensor]] = {}
        self._bytes = {name: module_bytes(model) for name, model in self.experts.items()}
        if not self.offload:
            for name, model in self.experts.items():
                model.to(self.device)
                self.ledger.add(self._bytes[name])
            return
        pin = _wants_pin(self.device)
        for name, model in self.experts.items():
            masters: dict[str, Tensor] = {}
            for key, tensor in _named_tensors(model):
                cpu = _host(tensor.data, pin)
                tensor.data = cpu
                masters[key] = cpu
            self._masters[name] = masters

    @property
    def resident(self) -> tuple[str, ...]:
        """Names of the experts whose weights are on the compute device now."""
        if not self.offload:
            return tuple(self.experts)
        return () if self._active is None else (self._active,)

    def placement(self) -> dict[str, torch.device]:
        """Device of each expert's weights (read from its parameters, not from bookkeeping)."""
        return {name: next(model.parameters()).device for name, model in self.experts.items()}

    def activate(self, name: str) -> nn.Module:
        """The expert ``name``, on the compute device (loading it and dropping the other if offloading)."""
        if name not in self.experts:
            raise KeyError(f"unknown expert {name!r}; have {sorted(self.experts)}")
        if self.offload and self._active != name:
            if self._active is not None:
                self._drop(self._active)
                self.switches += 1
            model = self.experts[name]
            for key, tensor in _named_tensors(model):
                tensor.data = self._masters[name][key].to(self.device, non_blocking=True)
            self._active = name
            self.loads += 1
            self.ledger.add(self._bytes[name])
        return self.experts[name]

    def park(self) -> None:
        """Nothing to do for whole experts (see :meth:`BlockOffloader.park`)."""

    def release(self) -> None:
        """Drops the device copy of the active expert (offload mode); a no-op otherwise."""
        if self.offload and self._active is not None:
            self._drop(self._active)
            self._active = None

    def _drop(self, name: str) -> None:
        for key, tensor in _named_tensors(self.experts[name]):
            tensor.data = self._masters[name][key]
        self.ledger.sub(self._bytes[name])


# ------------------------------------------------------------------------------------- blocks


@dataclass
class _Unit:
    """One streamed unit (a block, or an expert's non-block parameters): its tensors and bytes."""

    tensors: list[Tensor]
    nbytes: int
    # while loaded: the host tensor each parameter pointed to at load time (put back on eviction)
    hosts: list[Tensor] = field(default_factory=list)
    event: Any = None  # CUDA event recorded on the copy stream after a prefetch (None: ready)
    used: bool = False  # the compute stream has waited for it (record_stream done)


class BlockOffloader:
    """Streams the DiT blocks of the running expert through the device, ``blocks`` (N) at a time.

    Same interface as :class:`ExpertOffloader` (``experts``, ``activate``, ``release``, ``resident``,
    ``placement``, ``loads``, ``switches``, ``ledger``) plus ``park()`` and ``close()``. Forward
    pre-hooks on every module of every block call :meth:`use` (a block is entered through its own
    forward or, for ``encode_context``, through its cross-attention's ``k``/``v`` layers), which makes
    the window {i, ..., i+N-1 mod n} of the running expert the resident set: it evicts the blocks
    outside the window first, loads block i if it is not there (synchronously), and prefetches the
    rest of the window (side stream on CUDA). ``activate(name)`` loads the expert's non-block
    parameters and drops everything of the previously running expert. Counters: ``loads`` (expert
    activations), ``switches``, ``block_loads`` (block copies to the device).
    """

    def __init__(self, experts: Mapping[str, nn.Module], device: torch.device | str, *, blocks: int = DEFAULT_OFFLOAD_BLOCKS) -> None:
        if not experts:
            raise ValueError("experts must not be empty")
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise ValueError(f"offload_blocks must be an integer >= 1; got {blocks!r}")
        self.experts = dict(experts)
        self.device = torch.device(device)
        self.window = int(blocks)
        self.offload = True
        self.profile = "block"
        self.loads = 0
        self.switches = 0
        self.block_loads = 0
        self.ledger = ResidencyLedger()
        self._active: str | None = None
        self._current: tuple[str, int] | None = None
        self._loaded: dict[tuple[str, int | None], _Unit] = {}  # (expert, block index | None = non-block)
        self._units: dict[tuple[str, int | None], _Unit] = {}
        self._count: dict[str, int] = {}
        self._hooks: list[Any] = []
        cuda = self.device.type == "cuda"
        self._copy_stream = torch.cuda.Stream(device=self.device) if cuda else None
        pin = _wants_pin(self.device)
        for name, model in self.experts.items():
            blocks_list = getattr(model, "blocks", None)
            if not isinstance(blocks_list, nn.ModuleList) or len(blocks_list) == 0:
                raise ValueError(f"expert {name!r} has no 'blocks' ModuleList to stream")
            self._count[name] = len(blocks_list)
            in_blocks: set[int] = set()
            for i, block in enumerate(blocks_list):
                tensors = [t for _, t in _named_tensors(block)]
                in_blocks.update(id(t) for t in tensors)
                for t in tensors:
                    t.data = _host(t.data, pin)
                self._units[(name, i)] = _Unit(tensors, sum(_tensor_bytes(t) for t in tensors))
                for module in block.modules():
                    hook = functools.partial(self._pre_hook, name, i)
                    self._hooks.append(module.register_forward_pre_hook(hook))
            rest = [t for _, t in _named_tensors(model) if id(t) not in in_blocks]
            for t in rest:
                t.data = _host(t.data, pin)
            self._units[(name, None)] = _Unit(rest, sum(_tensor_bytes(t) for t in rest))

    # -- interface shared with ExpertOffloader

    @property
    def resident(self) -> tuple[str, ...]:
        """The running expert (its non-block parameters and a window of blocks are on the device)."""
        return () if self._active is None else (self._active,)

    @property
    def resident_blocks(self) -> tuple[tuple[str, int], ...]:
        """(expert, block index) of every block on the device now (bookkeeping)."""
        return tuple(sorted(k for k in self._loaded if k[1] is not None))  # type: ignore[misc]

    def placement(self) -> dict[str, torch.device]:
        """Device of each expert's non-block weights (read from its first parameter)."""
        return {name: next(model.parameters()).device for name, model in self.experts.items()}

    def block_bytes(self, name: str) -> list[int]:
        return [self._units[(name, i)].nbytes for i in range(self._count[name])]

    def nonblock_bytes(self, name: str) -> int:
        return self._units[(name, None)].nbytes

    def bound(self) -> int:
        """The most bytes this profile may hold on the device: the largest expert's non-block parameters
        plus its N largest blocks."""
        return max(
            self.nonblock_bytes(n) + sum(sorted(self.block_bytes(n), reverse=True)[: self.window]) for n in self.experts
        )

    def activate(self, name: str) -> nn.Module:
        if name not in self.experts:
            raise KeyError(f"unknown expert {name!r}; have {sorted(self.experts)}")
        if self._active != name:
            if self._active is not None:
                self._evict_expert(self._active)
                self.switches += 1
            self._active = name
            self._current = None
            self._load((name, None), prefetch=False)
            self.loads += 1
        return self.experts[name]

    def park(self) -> None:
        """Evicts every block (the running expert's non-block parameters stay). Call before patching block
        parameters from outside (LoRA swaps): the next load copies whatever the parameters point to."""
        for key in [k for k in self._loaded if k[1] is not None]:
            self._evict(key)
        self._current = None

    def release(self) -> None:
        """Evicts everything: nothing of the DiT stays on the device."""
        for key in list(self._loaded):
            self._evict(key)
        self._active = None
        self._current = None

    def close(self) -> None:
        """``release()`` and removes the hooks (the models then run wherever their weights are: the CPU)."""
        self.release()
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    # -- streaming

    def _pre_hook(self, name: str, index: int, module: nn.Module, args: Any) -> None:
        if self._current != (name, index):
            self.use(name, index)

    def use(self, name: str, index: int) -> None:
        """Block ``index`` of ``name`` is about to run: make the window starting at it resident."""
        if self._active != name:
            self.activate(name)
        n = self._count[name]
        window = [(name, (index + k) % n) for k in range(min(self.window, n))]
        keep = set(window)
        for key in [k for k in self._loaded if k[1] is not None and k not in keep]:
            self._evict(key)
        key = (name, index)
        if key not in self._loaded:
            self._load(key, prefetch=False)
        self._wait(self._loaded[key])
        for other in window[1:]:
            if other not in self._loaded:
                self._load(other, prefetch=True)
        self._current = key

    def _load(self, key: tuple[str, int | None], *, prefetch: bool) -> None:
        unit = self._units[key]
        stream = self._copy_stream if (prefetch and self._copy_stream is not None) else None
        unit.hosts = [t.data for t in unit.tensors]
        with torch.inference_mode(False), (torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()):
            copies = [h.to(self.device, non_blocking=True, copy=True) for h in unit.hosts]
            if stream is not None:
                unit.event = torch.cuda.Event()
                unit.event.record(stream)
        for t, c in zip(unit.tensors, copies, strict=True):
            t.data = c
        unit.used = stream is None  # a copy on the compute stream needs no wait
        self._loaded[key] = unit
        self.ledger.add(unit.nbytes)
        if key[1] is not None:
            self.block_loads += 1

    def _wait(self, unit: _Unit) -> None:
        if unit.used:
            return
        if unit.event is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(unit.event)
            for t in unit.tensors:  # memory allocated on the copy stream, used on the compute stream
                t.data.record_stream(compute)
            unit.event = None
        unit.used = True

    def _evict(self, key: tuple[str, int | None]) -> None:
        unit = self._loaded.pop(key)
        if unit.event is not None:  # prefetched, never used: let the copy finish before dropping
            unit.event.synchronize()
            unit.event = None
        for t, h in zip(unit.tensors, unit.hosts, strict=True):
            t.data = h
        unit.hosts = []
        unit.used = False
        self.ledger.sub(unit.nbytes)
        if self._current == key:
            self._current = None

    def _evict_expert(self, name: str) -> None:
        for key in [k for k in self._loaded if k[0] == name]:
            self._evict(key)


def make_offloader(
    experts: Mapping[str, nn.Module], device: torch.device | str, profile: str, *, blocks: int = DEFAULT_OFFLOAD_BLOCKS
) -> ExpertOffloader | BlockOffloader:
    """The offloader of a profile name (see :func:`resolve_profile`)."""
    if profile == "block":
        return BlockOffloader(experts, device, blocks=blocks)
    if profile in ("none", "expert"):
        return ExpertOffloader(experts, device, offload=profile == "expert")
    raise ValueError(f"unknown offload profile {profile!r}; use one of {PROFILES}")


# ---------------------------------------------------------------------------------- shuttle


class ModuleShuttle:
    """A module kept on the device (``resident=True``) or in host RAM (page-locked on CUDA) and copied
    to the device only inside ``with shuttle.on_device(): ...`` (re-entrant; the device copy is
    dropped when the outermost block exits, nothing is copied back)."""

    def __init__(self, module: nn.Module, device: torch.device | str, *, resident: bool) -> None:
        self.module = module
        self.device = torch.device(device)
        self.resident = bool(resident)
        self._depth = 0
        self._tensors = [t for _, t in _named_tensors(module)]
        self._hosts: list[Tensor] = []
        if self.resident:
            module.to(self.device)
        else:
            pin = _wants_pin(self.device)
            for t in self._tensors:
                t.data = _host(t.data, pin)

    @property
    def on_device_now(self) -> bool:
        return self.resident or self._depth > 0

    @contextlib.contextmanager
    def on_device(self) -> Iterator[nn.Module]:
        if self.resident:
            yield self.module
            return
        if self._depth == 0:
            self._hosts = [t.data for t in self._tensors]
            with torch.inference_mode(False):
                for t, h in zip(self._tensors, self._hosts, strict=True):
                    t.data = h.to(self.device, non_blocking=True, copy=self.device.type == "cpu")
        self._depth += 1
        try:
            yield self.module
        finally:
            self._depth -= 1
            if self._depth == 0:
                for t, h in zip(self._tensors, self._hosts, strict=True):
                    t.data = h
                self._hosts = []
