"""The engine: owns the Wan pipelines, loads them lazily, keeps one task resident, runs one job at a time.

* ``pipeline(task)`` loads on first use; loading another task first unloads the resident one
  (drop references, ``gc.collect()``, ``torch.cuda.empty_cache()`` on CUDA).
* ``generate(request, on_step=..., cancel=...)`` holds a lock for the whole job, reports every
  denoising step (step k/N, expert phase, ETA) and stops at the next step once ``cancel`` is set.
* On ZeroGPU the device part is wrapped with ``spaces.GPU`` and a duration estimated from the
  request (``zerogpu.gpu_duration``); elsewhere it runs as is.

Importing this module imports neither torch nor ``wan``; they are imported on first use.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wan.errors import GenerationCancelled
from wan.request import GenerationRequest

from . import discovery, zerogpu
from .i18n import tr

if TYPE_CHECKING:
    import torch

    from wan.configs import ModelSpec
    from wan.pipeline import WanVideoPipeline

__all__ = ["EXPERT_LABELS", "MEMORY_PROFILES", "Engine", "GenerationCancelled", "MemorySetting", "OutOfMemory",
           "StepInfo"]

log = logging.getLogger(__name__)

EXPERT_LABELS = {"high_noise": "high-noise expert", "low_noise": "low-noise expert", "dense": "5B model"}


class OutOfMemory(RuntimeError):
    """The device ran out of memory; the engine freed it. The message names the next setting to try."""


def torch_oom() -> type[BaseException]:
    """``torch.OutOfMemoryError`` (CUDA and other accelerators' out-of-memory), imported on use."""
    import torch

    return torch.OutOfMemoryError


MEMORY_PROFILES = ("none", "expert", "block")  # wan.offload.PROFILES, most VRAM first (no torch import here)
MAX_OFFLOAD_BLOCKS = 8                        # blocks ahead the app offers (the CLI/API take any N >= 1)


@dataclass(frozen=True)
class MemorySetting:
    """How the engine loads a pipeline: memory profile, blocks streamed ahead (``block`` only), fp8
    weights, tiled VAE. ``vae_tiling=None`` means the pipeline's default (on for ``block``)."""

    offload: str = "none"
    offload_blocks: int = 2
    quantize: str | None = None
    vae_tiling: bool | None = None

    def __post_init__(self) -> None:
        if self.offload not in MEMORY_PROFILES:
            raise ValueError(f"memory profile must be one of {', '.join(MEMORY_PROFILES)}; got {self.offload!r}")
        blocks = self.offload_blocks
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise ValueError(f"blocks ahead must be a whole number >= 1; got {blocks!r}")
        if self.quantize not in (None, "fp8"):
            raise ValueError(f"quantize must be fp8 or off; got {self.quantize!r}")
        if self.vae_tiling is not None and not isinstance(self.vae_tiling, bool):
            raise ValueError(f"VAE tiling must be on or off; got {self.vae_tiling!r}")

    @property
    def tiling(self) -> bool:
        """Whether the VAE decodes in tiles (the explicit choice, else on for ``block``)."""
        return self.offload == "block" if self.vae_tiling is None else self.vae_tiling

    def load_kwargs(self) -> dict[str, Any]:
        """``wan.load_pipeline`` keywords for this setting."""
        kw: dict[str, Any] = {"offload": self.offload, "offload_blocks": self.offload_blocks,
                              "vae_tiling": self.tiling}
        if self.quantize:
            kw["quantize"] = kw["t5_quantize"] = self.quantize
        return kw

    def loads_like(self, other: MemorySetting | None) -> bool:
        """Whether a pipeline loaded with ``other`` is one loaded with this setting (blocks ahead only
        count for ``block``; tiling by its effect)."""
        return other is not None and self.as_dict() == other.as_dict()

    def as_dict(self) -> dict[str, Any]:
        """What each result's settings record under ``"memory"``."""
        return {"offload": self.offload, "offload_blocks": self.offload_blocks if self.offload == "block" else None,
                "quantize": self.quantize, "vae_tiling": self.tiling}


@dataclass(frozen=True)
class StepInfo:
    """One finished unit of work: a denoising step (``phase="denoise"``) or a decoded latent frame
    (``phase="decode"``, ``expert="vae"``)."""

    step: int          # 1-based
    total: int
    expert: str        # "high_noise" | "low_noise" | "dense" | "vae"
    elapsed_s: float   # since the first step (or the first decoded frame) started
    eta_s: float | None
    phase: str = "denoise"  # "denoise" | "decode"

    def expert_label(self, lang: str = "en") -> str:
        if self.expert in EXPERT_LABELS:
            return tr(f"run.expert.{self.expert}", lang)
        return self.expert.replace("_", "-")

    def describe(self, lang: str = "en") -> str:
        """``"step 3/40 · high-noise expert · ETA 12s"`` or ``"decoding 2/3 · ETA 1s"`` (en, ko or zh)."""
        if self.phase == "decode":
            if self.eta_s is None:
                return tr("run.decoding_first", lang, step=self.step, total=self.total)
            return tr("run.decoding", lang, step=self.step, total=self.total, eta=f"{self.eta_s:.0f}")
        if self.eta_s is None:
            return tr("run.step_first", lang, step=self.step, total=self.total, expert=self.expert_label(lang))
        return tr(
            "run.step", lang, step=self.step, total=self.total, expert=self.expert_label(lang), eta=f"{self.eta_s:.0f}"
        )


class Engine:
    """Owns the models. Thread-safe; one generation at a time, one task resident at a time."""

    def __init__(
        self,
        *,
        ckpt_dir: str | Path | None = None,
        demo: bool = False,
        demo_root: str | Path = ".demo_ckpt",
        device: str | None = None,
        dtype: str | None = None,
        offload: bool | str | None = None,
        allow_download: bool = False,
        quantize: str | None = None,
        offload_blocks: int | None = None,
        vae_tiling: bool | None = None,
        compile: bool | str = False,
    ) -> None:
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir else None
        self.demo = demo
        self.demo_root = Path(demo_root)
        self._device = device
        self._dtype = dtype
        self._offload = offload
        self._memory_args = (quantize, offload_blocks, vae_tiling)
        self._memory: MemorySetting | None = None          # wanted; resolved on first use (needs the device)
        self._loaded_memory: MemorySetting | None = None   # what the resident pipeline was loaded with
        self.compile = compile  # load_pipeline(compile=...): regional torch.compile of the DiT block
        self.allow_download = allow_download
        self._lock = threading.Lock()          # one job (load or generate) at a time
        self._pipe: WanVideoPipeline | None = None
        self._pipe_task: str | None = None
        self._run_on_device = zerogpu.wrap_gpu(self._denoise_and_decode, self._gpu_duration)

    # ---------------------------------------------------------------------------------- info
    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        import torch

        if self._dtype is not None:
            return getattr(torch, self._dtype)
        return torch.bfloat16 if self.device.startswith("cuda") else torch.float32

    def _oom_advice(self, req: GenerationRequest, pipe: WanVideoPipeline) -> str:
        """What ran out, and the next memory setting to try (the profiles in order of VRAM use)."""
        mem = self._loaded_memory or self.memory
        profile = mem.offload
        steps = {"none": "choose Memory profile 'expert' (or start the app with --offload expert: one expert on "
                         "the GPU at a time)",
                 "expert": "choose Memory profile 'block' (or start the app with --offload block: DiT blocks "
                           "streamed from RAM, tiled VAE)"}  # fmt: skip
        if profile in steps:
            advice = steps[profile]
        elif not mem.quantize:
            advice = "turn on fp8 weights in Memory profile (or start the app with --quantize fp8: half the weight memory)"
        else:
            advice = "use the Draft preset, fewer frames or a smaller size"
        return (f"The GPU ran out of memory for {req.task} at {req.width}x{req.height}, {req.frame_num} frames "
                f"(memory profile {profile}{', fp8' if mem.quantize else ''}). The memory was freed and the app "
                f"keeps serving; to fit: {advice}.")  # fmt: skip

    # ------------------------------------------------------------------------------- memory
    @property
    def memory(self) -> MemorySetting:
        """The memory setting the next load uses (the server flags until someone changes it)."""
        if self._memory is None:
            from wan.offload import resolve_profile

            quantize, blocks, tiling = self._memory_args
            self._memory = MemorySetting(resolve_profile(self._offload, self.device),
                                         2 if blocks is None else blocks, quantize, tiling)
        return self._memory

    @property
    def quantize(self) -> str | None:
        return self.memory.quantize

    def set_memory(self, setting: MemorySetting) -> str:
        """Use ``setting`` from the next generation on (never mid-job: the running job keeps its pipeline).

        Returns ``"unchanged"`` (the same as now), ``"after_job"`` (a job is running: the next one
        reloads) or ``"next"`` (the next generation reloads, or loads, with it)."""
        if not isinstance(setting, MemorySetting):
            raise TypeError(f"set_memory takes a MemorySetting; got {type(setting).__name__}")
        if self.compile and setting.offload == "block":
            raise ValueError("the block profile cannot run compiled (this server runs with --compile: its per-layer "
                             "hooks would be traced into the graph); choose expert or none")
        if setting.loads_like(self.memory):
            return "unchanged"
        log.info("engine: memory setting %s -> %s (applies at the next load)", self.memory.as_dict(), setting.as_dict())
        self._memory = setting
        return "after_job" if self._lock.locked() else "next"

    def memory_setup(self) -> dict[str, Any]:
        """The memory setting of the resident pipeline (else the wanted one), for each result's settings."""
        return (self._loaded_memory or self.memory).as_dict()

    @property
    def resident_task(self) -> str | None:
        return self._pipe_task

    def forwards(self, req: GenerationRequest) -> dict[str, int] | None:
        """DiT forwards run / reused by the step cache (``wan.stepcache``) in the run of ``req``, if it was
        the resident pipeline's last run."""
        run = self._pipe.last_run if self._pipe is not None and self._pipe_task == req.task else None
        if run is None or run.request is not req:
            return None
        return {"run": run.forwards_run, "reused": run.forwards_reused}

    def spec(self, task: str) -> ModelSpec:
        from wan.configs import get_spec

        return get_spec(task)

    def weights(self, task: str) -> discovery.WeightsStatus:
        """Where this task's weights are (or why they are missing); never downloads."""
        if self.demo:
            return discovery.demo_status(task, self.demo_root)
        return discovery.locate_weights(task, self.ckpt_dir)

    # ------------------------------------------------------------------------------- loading
    def pipeline(self, task: str) -> WanVideoPipeline:
        """The loaded pipeline for ``task`` (loading it, and unloading any other, if needed)."""
        with self._lock:
            return self._ensure_loaded(task)

    def download(self, task: str, progress: Callable[[str], None] | None = None) -> Path:
        """Fetch the task's official weights from the Hugging Face Hub into ``ckpt_dir`` (or the HF cache)."""
        if self.demo:
            raise discovery.WeightsMissing(f"{task}: demo mode uses tiny random weights; nothing to download")
        return discovery.download_weights(task, self.ckpt_dir, progress=progress)

    def _ensure_loaded(self, task: str) -> WanVideoPipeline:
        memory = self.memory
        if self._pipe_task == task and self._pipe is not None and memory.loads_like(self._loaded_memory):
            return self._pipe
        self._unload()
        ckpt = self._checkpoint_for(task)
        from wan.pipeline import load_pipeline

        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"device": self.device, "dtype": self.dtype, **memory.load_kwargs()}
        if self.compile:
            kwargs["compile"] = self.compile
        log.info("engine: loading %s from %s on %s (memory %s)", task, ckpt, self.device, memory.as_dict())
        self._pipe = load_pipeline(task, ckpt, **kwargs)
        self._pipe_task = task
        self._loaded_memory = memory
        log.info("engine: %s loaded in %.1fs", task, time.perf_counter() - t0)
        return self._pipe

    def _checkpoint_for(self, task: str) -> Path:
        if self.demo:
            return discovery.ensure_demo_checkpoint(task, self.demo_root)
        status = discovery.locate_weights(task, self.ckpt_dir)
        if status.path is not None:
            return status.path
        if self.allow_download:
            return discovery.download_weights(task, self.ckpt_dir)
        raise discovery.WeightsMissing(status.detail)

    def _unload(self) -> None:
        if self._pipe is None:
            return
        log.info("engine: unloading %s", self._pipe_task)
        self._pipe = None
        self._pipe_task = None
        self._loaded_memory = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------ generate
    def generate(
        self,
        req: GenerationRequest,
        *,
        on_step: Callable[[StepInfo], None] | None = None,
        on_status: Callable[..., None] | None = None,
        cancel: threading.Event | None = None,
    ) -> torch.Tensor:
        """Run one request; returns the video ``(C, F, H, W)`` in [-1, 1] on the CPU.

        ``on_status(key, **fmt)`` receives ``playground.i18n`` keys for the phases around denoising.
        Raises ``wan.errors.GenerationCancelled`` if ``cancel`` is set before or during the run (also
        while decoding), and the loading errors (``WeightsMissing``, ``CheckpointError``).
        """
        cancel = cancel or threading.Event()
        with self._lock:
            if cancel.is_set():
                raise GenerationCancelled("cancelled before it started")
            if on_status and (self._pipe_task != req.task or not self.memory.loads_like(self._loaded_memory)):
                on_status("run.loading", task=req.task)
            pipe = self._ensure_loaded(req.task)
            if on_status:
                on_status("run.encoding")
            try:
                video = self._run_on_device(pipe, req, self._make_callback(on_step, cancel),
                                            self._make_decode_callback(on_step, cancel))
            except torch_oom() as e:
                self._unload()  # free the device for the next job; the next request reloads
                raise OutOfMemory(self._oom_advice(req, pipe)) from e
            if cancel.is_set():
                raise GenerationCancelled("cancelled")
            return video.detach().float().cpu()

    @staticmethod
    def _make_callback(
        on_step: Callable[[StepInfo], None] | None, cancel: threading.Event
    ) -> Callable[..., bool]:
        t0: list[float] = []

        def callback(step: int, total: int, expert: str, latents: Any = None) -> bool:
            now = time.perf_counter()
            if not t0:
                t0.append(now)
            done = step  # the pipeline reports 1-based steps: the callback runs after step `step`
            elapsed = now - t0[0]
            # The first callback comes after step 1, so time per step is measured from there.
            eta = elapsed / (done - 1) * (total - done) if done > 1 else None
            if on_step is not None:
                on_step(StepInfo(done, total, expert, elapsed, eta))
            return not cancel.is_set()

        return callback

    @staticmethod
    def _make_decode_callback(
        on_step: Callable[[StepInfo], None] | None, cancel: threading.Event
    ) -> Callable[[int, int], bool]:
        """``decode_callback(done, total)`` of the pipeline: reports the VAE decode as a phase of its own
        (``StepInfo(phase="decode")``, latent frames k/n with an ETA) and stops once ``cancel`` is set."""
        t0: list[float] = []

        def decode_callback(done: int, total: int) -> bool:
            now = time.perf_counter()
            if not t0:
                t0.append(now)
            if on_step is not None:  # time per frame is measured from the first decoded frame on
                elapsed = now - t0[0]
                eta = elapsed / (done - 1) * (total - done) if done > 1 else None
                on_step(StepInfo(done, total, "vae", elapsed, eta, phase="decode"))
            return not cancel.is_set()

        return decode_callback

    @staticmethod
    def _denoise_and_decode(
        pipe: WanVideoPipeline, req: GenerationRequest, callback: Callable[..., bool],
        decode_callback: Callable[[int, int], bool],
    ) -> torch.Tensor:
        """The device part: the pipeline runs the request as validated (no second validation)."""
        return pipe.generate(req, callback=callback, decode_callback=decode_callback)

    @staticmethod
    def _gpu_duration(pipe: Any, req: GenerationRequest, *_: Any, **__: Any) -> int:
        return zerogpu.gpu_duration(req.task, req.sampling_steps, req.frame_num, req.width, req.height)
