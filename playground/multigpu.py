"""``app.py --gpus N``: one job at a time across N ranks of a worker group the app spawns itself.

Layout: the Gradio process is the coordinator; it spawns N worker processes (``torch.multiprocessing``
spawn), ranks 0..N-1 of one torch.distributed group (NCCL on CUDA with rank r on ``cuda:r``, gloo on
the CPU). The coordinator is deliberately *outside* the process group: a collective whose peer died
cannot be interrupted (NCCL hangs until its timeout), so the process that serves the UI never waits
in one. It can always kill the group and start a new one.

Per job the coordinator puts the same ``GenerationRequest`` (seed already drawn) on every rank's own
queue; every rank runs ``pipe.generate(request)`` of a pipeline loaded with
``parallel=ParallelConfig(...)`` (the request is broadcast from rank 0 again inside, as in any parallel
run). Rank 0 reports each step and decoded frame, and returns the video, on an event queue; its
callbacks read a shared cancel flag, and the pipeline's per-step stop agreement stops every rank.

Failures: a rank that exits (killed, crashed, out of memory) is seen within ``POLL_S`` by the
coordinator, which kills the rest, starts a fresh group (models reload on the next job) and raises
:class:`WorkerGroupError` naming the rank and exit code: the app reports it and keeps serving. An
unexpected exception in a rank is reported the same way (the other ranks may be stuck in a
collective, so the group is restarted); input errors and cancels keep the group.

Layout per task: Ulysses over all N ranks when N divides the DiT heads (A14B 40, 5B 24), else
CFG-parallel x Ulysses N/2 when that divides them, else a clear error naming the sizes that work.
Idle workers wait on their queues, never in a collective (no timeout while the app is idle).
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wan.errors import GenerationCancelled, InputError
from wan.request import GenerationRequest

from .engine import Engine, StepInfo

__all__ = ["GroupEngine", "WorkerGroup", "WorkerGroupError", "layout_for"]

log = logging.getLogger(__name__)

POLL_S = 0.2           # how often the coordinator checks cancel and the workers' liveness
STOP_TIMEOUT_S = 10.0  # graceful stop before SIGKILL


class WorkerGroupError(RuntimeError):
    """A rank of the worker group died or failed; the group was restarted and the app keeps serving."""


def layout_for(task: str, world: int) -> Any:
    """The ``ParallelConfig`` the app uses for ``task`` on ``world`` ranks (see the module docstring)."""
    from wan.configs import get_spec
    from wan.distributed import ParallelConfig, check_heads

    heads = get_spec(task).dit.num_heads
    if heads % world == 0:
        return ParallelConfig(ulysses_size=world)
    if world % 2 == 0 and heads % (world // 2) == 0:
        return ParallelConfig(ulysses_size=world // 2, cfg_parallel=True)
    check_heads(heads, world, task)  # raises, naming the sizes that work
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class WorkerSettings:
    """What every rank needs to load pipelines (picklable)."""

    world: int
    device: str          # "cuda" (rank r on cuda:r) or "cpu"
    dtype: str | None
    offload: str | None
    quantize: str | None
    threads: int         # torch CPU threads per rank


# ------------------------------------------------------------------------------------ worker


def _watch_parent(parent: int) -> None:
    """Exit when the coordinator is gone (killed without stopping the group)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(3)


def _worker_main(rank: int, port: int, settings: WorkerSettings, jobs: Any, events: Any, cancel: Any,
                 parent: int) -> None:  # fmt: skip
    """One rank: join the group, then run jobs from ``jobs`` until a None arrives."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(settings.world), LOCAL_RANK=str(rank))  # fmt: skip
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import datetime

    import torch
    import torch.distributed as dist

    torch.set_num_threads(settings.threads)
    device = f"cuda:{rank}" if settings.device == "cuda" else "cpu"
    backend = "nccl" if settings.device == "cuda" else "gloo"
    if settings.device == "cuda":
        torch.cuda.set_device(rank)  # before the NCCL communicator exists
    dist.init_process_group(backend, rank=rank, world_size=settings.world, timeout=datetime.timedelta(hours=2))
    pipe, loaded_as = None, None
    main = rank == 0

    def on_step(step: int, total: int, expert: str, latents: Any = None) -> bool:
        events.put(("step", step, total, expert))
        return not cancel.is_set()

    def on_decode(done: int, total: int) -> bool:
        events.put(("decode", done, total))
        return not cancel.is_set()

    while True:
        job = jobs.get()
        if job is None:
            break
        try:
            load = job.get("load")  # the engine's memory setting (the app's Memory panel), else the flags
            key = (job["task"], None if load is None else sorted(load.items()))
            if key != loaded_as:
                pipe, loaded_as = None, None
                gc.collect()
                from wan.pipeline import load_pipeline

                kwargs: dict[str, Any] = {"device": device, "dtype": settings.dtype, "quantize": settings.quantize,
                                          "t5_quantize": settings.quantize, "parallel": layout_for(job["task"], settings.world)}  # fmt: skip
                if settings.offload is not None:
                    kwargs["offload"] = settings.offload
                kwargs.update(load or {})
                pipe = load_pipeline(job["task"], job["ckpt"], **kwargs)
                loaded_as = key
            if main:
                events.put(("loaded", job["task"]))
            video = pipe.generate(job["request"], callback=on_step if main else None,
                                  decode_callback=on_decode if main else None)  # fmt: skip
            if main:
                run = pipe.last_run
                events.put(("done", video.detach().float().cpu(),
                            {"run": run.forwards_run, "reused": run.forwards_reused}))
        except GenerationCancelled as e:
            if main:
                events.put(("cancelled", str(e)))
        except InputError as e:
            if main:
                events.put(("input_error", e.field, e.message))
        except BaseException as e:  # noqa: BLE001 - reported, then this rank leaves (the group restarts)
            if main:
                events.put(("error", f"{type(e).__name__}: {e}"))
                time.sleep(0.5)  # let the queue's feeder thread flush
            os._exit(1)
    dist.destroy_process_group()


# ------------------------------------------------------------------------------- coordinator


class WorkerGroup:
    """N worker processes (one torch.distributed group) driven from the app process."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.task: str | None = None      # the task whose pipeline the ranks hold
        self.forwards: dict[str, int] | None = None  # rank 0's step-cache record of the last finished job
        self.restarts = 0
        self.procs: list[Any] = []
        self._ctx: Any = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self) -> None:
        import torch.multiprocessing as mp

        self._ctx = ctx = mp.get_context("spawn")
        port = _free_port()
        self.jobs = [ctx.Queue() for _ in range(self.settings.world)]
        self.events = ctx.Queue()
        self.cancel = ctx.Event()
        self.task = None
        self.procs = [
            ctx.Process(target=_worker_main, name=f"wan-rank{rank}", daemon=True,
                        args=(rank, port, self.settings, self.jobs[rank], self.events, self.cancel, os.getpid()))
            for rank in range(self.settings.world)
        ]  # fmt: skip
        for p in self.procs:
            p.start()
        log.info("worker group: %d ranks started (pids %s)", self.settings.world, self.pids)

    def dead(self) -> list[tuple[int, int | None]]:
        """(rank, exit code) of every rank that is no longer running."""
        return [(rank, p.exitcode) for rank, p in enumerate(self.procs) if not p.is_alive()]

    def stop(self, *, graceful: bool = True) -> None:
        if graceful:
            for q in self.jobs:
                q.put(None)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for p in self.procs:
                p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(STOP_TIMEOUT_S)
        self.procs = []
        self.task = None

    def restart(self, why: str) -> None:
        log.warning("worker group: restarting (%s)", why)
        self.stop(graceful=False)
        self.restarts += 1
        self.start()

    def run(
        self,
        request: GenerationRequest,
        ckpt: Path,
        *,
        on_step: Callable[..., bool],
        on_decode: Callable[[int, int], bool],
        on_loaded: Callable[[], None],
        cancel: threading.Event,
        load: dict[str, Any] | None = None,
    ) -> Any:
        """Runs one job on every rank; returns rank 0's video. Raises ``GenerationCancelled``,
        ``InputError`` or ``WorkerGroupError`` (after restarting the group)."""
        if not self.procs:
            self.start()
        elif self.dead():
            self.restart(f"ranks {self.dead()} exited while idle")
        self.cancel.clear()
        job = {"task": request.task, "ckpt": str(ckpt), "request": request, "load": load}
        for q in self.jobs:
            q.put(job)
        while True:
            try:
                event = self.events.get(timeout=POLL_S)
            except queue.Empty:
                if cancel.is_set():
                    self.cancel.set()
                if self.dead():
                    self._fail()
                continue
            kind = event[0]
            if kind == "loaded":
                self.task = event[1]
                on_loaded()
            elif kind == "step":
                if on_step(*event[1:]) is False:
                    self.cancel.set()
            elif kind == "decode":
                if on_decode(*event[1:]) is False:
                    self.cancel.set()
            elif kind == "done":
                self.forwards = event[2]  # rank 0's step-cache record of this job
                return event[1]
            elif kind == "cancelled":
                raise GenerationCancelled(event[1])
            elif kind == "input_error":
                raise InputError(event[1], event[2])
            else:
                self._fail(f"rank 0 failed: {event[1]}")

    def _fail(self, error: str = "") -> None:
        """Restart the group and raise; a dead rank is named first (rank 0's error is then a consequence)."""
        deadline = time.monotonic() + (1.0 if error else 0.0)
        while not self.dead() and time.monotonic() < deadline:  # a peer's death shows up as rank 0's error
            time.sleep(0.05)
        what = "; ".join([*(f"rank {r} exited with code {c}" for r, c in self.dead() if r != 0 or not error),
                          *([error] if error else [])])  # fmt: skip
        self.restart(what)
        raise WorkerGroupError(
            f"The multi-GPU worker group failed during this job ({what}). The group was restarted and the "
            "app keeps serving: the models reload on the next job; run it again."
        )


class GroupEngine(Engine):
    """The app's engine for ``--gpus N``: the same interface, the jobs run on a :class:`WorkerGroup`."""

    def __init__(self, *, gpus: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if gpus < 2:
            raise ValueError(f"GroupEngine needs gpus >= 2; got {gpus}")
        import torch

        device = self.device
        if device.startswith("cuda"):
            have = torch.cuda.device_count()
            if have < gpus:
                raise ValueError(f"--gpus {gpus} needs {gpus} CUDA devices; this machine has {have}")
        threads = max(1, (os.cpu_count() or 1) // gpus)
        self.gpus = gpus
        self._forwards: dict[str, int] | None = None
        self._forwards_of: GenerationRequest | None = None
        self.group = WorkerGroup(WorkerSettings(
            world=gpus, device="cuda" if device.startswith("cuda") else "cpu", dtype=self._dtype,
            offload=self._offload, quantize=self.quantize, threads=threads,
        ))  # fmt: skip
        self.group.start()

    def pipeline(self, task: str) -> Any:
        raise RuntimeError("with --gpus N the pipelines live in the worker ranks; use generate()")

    def close(self) -> None:
        self.group.stop()

    def memory_setup(self) -> dict[str, Any]:
        return {**super().memory_setup(), "gpus": self.gpus}

    def forwards(self, req: GenerationRequest) -> dict[str, int] | None:
        """Rank 0's step-cache record of the last job, if it was ``req``'s."""
        return self._forwards if self._forwards_of is req else None

    def generate(
        self,
        req: GenerationRequest,
        *,
        on_step: Callable[[StepInfo], None] | None = None,
        on_status: Callable[..., None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Any:
        cancel = cancel or threading.Event()
        with self._lock:
            if cancel.is_set():
                raise GenerationCancelled("cancelled before it started")
            ckpt = self._checkpoint_for(req.task)
            if on_status and self.group.task != req.task:
                on_status("run.loading", task=req.task)

            memory = self.memory  # the Memory panel's setting at the start of this job

            def loaded() -> None:
                self._pipe_task = req.task
                self._loaded_memory = memory
                if on_status:
                    on_status("run.encoding")

            try:
                video = self.group.run(req, ckpt, on_step=self._make_callback(on_step, cancel),
                                       on_decode=self._make_decode_callback(on_step, cancel), on_loaded=loaded,
                                       cancel=cancel, load=memory.load_kwargs())  # fmt: skip
            except WorkerGroupError:
                self._pipe_task = None
                raise
            if cancel.is_set():
                raise GenerationCancelled("cancelled")
            self._forwards, self._forwards_of = self.group.forwards, req
            return video
