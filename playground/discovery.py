"""Where the weights are: ``--ckpt-dir``, ``WAN_CKPT_DIR``, the Hugging Face cache; the Hub download;
and the tiny random weights of ``--demo``.

The search itself is ``wan.loading.find_checkpoint``; this module turns its answer into something
the UI can show (a status line, or a message that names the missing files and how to get them).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "WeightsMissing",
    "WeightsStatus",
    "DEMO_LORAS",
    "demo_status",
    "download_weights",
    "ensure_demo_checkpoint",
    "ensure_demo_loras",
    "expected_files",
    "how_to_get",
    "locate_weights",
    "missing_message",
]

log = logging.getLogger(__name__)

_DEMO_MARKER = ".complete"
_demo_lock = threading.Lock()


class WeightsMissing(RuntimeError):
    """The task's weights are not on this machine; the message says which files and how to get them."""


@dataclass(frozen=True)
class WeightsStatus:
    task: str
    path: Path | None
    demo: bool
    detail: str

    @property
    def ready(self) -> bool:
        return self.path is not None or self.demo


def expected_files(task: str) -> list[str]:
    """The files and folders of the official layout that a checkpoint folder must hold."""
    from wan.loading import required_files

    return list(required_files(task, "official"))


def _files_block(task: str) -> str:
    try:
        return "\n".join(f"  - {f}" for f in expected_files(task))
    except Exception as e:  # wan not importable: still say how to get the weights
        log.warning("discovery: cannot list expected files for %s: %s", task, e)
        return "  - (file list unavailable)"


def how_to_get(task: str) -> str:
    """The files a checkpoint folder holds and the commands that get them: no server paths (for users)."""
    from wan.configs import get_spec

    repo = get_spec(task).hf_repo
    name = repo.split("/")[-1]
    return "\n".join([
        "A checkpoint folder holds (official layout):",
        _files_block(task),
        "Get them with one of:",
        f"  hf download {repo} --local-dir ./ckpts/{name}   then   python app.py --ckpt-dir ./ckpts/{name}",
        "  python app.py --download          (downloads into the Hugging Face cache on first use)",
        "  python app.py --demo              (tiny random weights, to try the UI on CPU)",
    ])


def missing_message(task: str, ckpt_dir: Path | None, reason: str | None = None, *, paths: bool = True) -> str:
    """Which files are missing and the ways to get them. ``paths=True`` (the console, the server log)
    also names the folders searched and the loader's problem; ``paths=False`` (users) names none."""
    from wan.configs import get_spec
    from wan.loading import hf_cache_dir, hub_offline

    repo = get_spec(task).hf_repo
    offline = " (HF_HUB_OFFLINE is set, so nothing can be downloaded)" if hub_offline() else ""
    lines = [f"The {task} weights were not found{offline}."]
    if paths:
        searched = [f"--ckpt-dir {ckpt_dir}" if ckpt_dir else None]
        env_dir = os.environ.get("WAN_CKPT_DIR")
        if env_dir:
            searched.append(f"WAN_CKPT_DIR={env_dir}")
        searched.append(f"the Hugging Face cache ({hf_cache_dir()}) for {repo}")
        lines.append(f"Searched: {'; '.join(s for s in searched if s)}.")
        if reason:
            lines.append(f"Problem: {reason}")
    lines.append(how_to_get(task))
    return "\n".join(lines)


_logged: set[tuple[str, str]] = set()


def _log_missing_once(task: str, ckpt_dir: Path | None, reason: str | None) -> None:
    """The full message with the searched folders, in the server log once per task and folder."""
    key = (task, str(ckpt_dir))
    if key not in _logged:
        _logged.add(key)
        log.warning("%s", missing_message(task, ckpt_dir, reason=reason))


def locate_weights(task: str, ckpt_dir: Path | None) -> WeightsStatus:
    """Where the weights are; ``detail`` is for users (no server paths when missing; the path detail goes
    to the server log)."""
    from wan import loading

    try:
        found = loading.find_checkpoint(task, ckpt_dir)
    except loading.CheckpointError as e:
        _log_missing_once(task, ckpt_dir, str(e))
        return WeightsStatus(task, None, False, missing_message(task, ckpt_dir, paths=False))
    if found is None:
        _log_missing_once(task, ckpt_dir, None)
        return WeightsStatus(task, None, False, missing_message(task, ckpt_dir, paths=False))
    return WeightsStatus(task, Path(found), False, f"{task} weights found")


def download_weights(
    task: str, ckpt_dir: Path | None, progress: Callable[[str], None] | None = None
) -> Path:
    """Download the official checkpoint (tqdm progress, so ``gr.Progress(track_tqdm=True)`` shows it)."""
    from wan import loading
    from wan.configs import get_spec

    if loading.hub_offline():  # the message says "HF_HUB_OFFLINE is set"
        raise WeightsMissing("Cannot download: offline.\n" + missing_message(task, ckpt_dir, paths=False))
    repo = get_spec(task).hf_repo
    local_dir = ckpt_dir / repo.split("/")[-1] if ckpt_dir else None
    if progress:
        progress(f"downloading {repo}…")
    try:
        path = loading.download_checkpoint(task, local_dir)
    except Exception as e:  # network, auth, disk: report with the manual instructions (paths: the log only)
        log.warning("download of %s failed: %s", repo, e)
        raise WeightsMissing(f"Download of {repo} failed ({type(e).__name__}).\n"
                             + missing_message(task, ckpt_dir, paths=False)) from e
    return Path(path)


def demo_status(task: str, demo_root: Path) -> WeightsStatus:
    path = demo_root / task
    ready = (path / _DEMO_MARKER).is_file()
    detail = f"{task}: DEMO — tiny random weights; the output is noise, only the UI flow is real"
    return WeightsStatus(task, path if ready else None, True, detail)


def ensure_demo_checkpoint(task: str, demo_root: Path) -> Path:
    """Write the task's tiny random checkpoint once (atomically: temp folder, then rename)."""
    target = demo_root / task
    if (target / _DEMO_MARKER).is_file():
        return target
    with _demo_lock:
        if (target / _DEMO_MARKER).is_file():
            return target
        from wan.testing import synthetic

        demo_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{task}.", dir=demo_root))
        try:
            synthetic.write_tiny_checkpoint(task, tmp, seed=0)
            (tmp / _DEMO_MARKER).write_text("tiny random weights for app.py --demo\n")
            if target.exists():  # an incomplete folder from an interrupted run
                shutil.rmtree(target)
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / _DEMO_MARKER).is_file():  # not another process winning the race
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    log.info("discovery: wrote demo weights for %s to %s", task, target)
    return target


# The demo's LoRA folder (``<demo-dir>/loras``): tiny random LoRAs for the tiny DiTs, in several key
# formats, so the LoRA panel, the compatibility filter and the Fast preset are real in the demo.
# name -> (the tiny model it is made for, key format, seed). All carry a ``head.head.diff`` (as the
# lightx2v LoRAs do), whose shape differs between the A14B and 5B tiny DiTs: the filter is real.
DEMO_LORAS: dict[str, tuple[str, str, int]] = {
    "demo-style_HIGH.safetensors": ("t2v-A14B", "official", 11),       # a HIGH/LOW pair for the A14B experts
    "demo-style_LOW.safetensors": ("t2v-A14B", "musubi", 12),
    "demo-detail-diffusers.safetensors": ("t2v-A14B", "diffusers", 13),  # one file for both experts
    "demo-5b-style-peft.safetensors": ("ti2v-5B", "official-peft", 14),  # the 5B tiny DiT only
}


def _demo_lora_files() -> dict[str, tuple[str, str, int]]:
    """Every demo LoRA file: the ones above plus the Lightning pairs at the paths the speed presets name."""
    from .speed import _data

    files = dict(DEMO_LORAS)
    for task, entries in _data()["loras"].items():
        for i, entry in enumerate(entries):
            files[entry["file"]] = (task, "official", 21 + i)
    return files


_DEMO_LORA_MARKER = ".demo-loras-complete"


def ensure_demo_loras(lora_dir: Path) -> Path:
    """Write the demo LoRA files into ``lora_dir`` once (each file atomically: written aside, then renamed;
    a marker file says the set is complete). Files already there are kept."""
    lora_dir = Path(lora_dir)
    if (lora_dir / _DEMO_LORA_MARKER).is_file():
        return lora_dir
    with _demo_lock:
        if (lora_dir / _DEMO_LORA_MARKER).is_file():
            return lora_dir
        from wan.testing.lora import write_tiny_lora

        lora_dir.mkdir(parents=True, exist_ok=True)
        for name, (task, fmt, seed) in _demo_lora_files().items():
            target = lora_dir / name
            if target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=target.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                write_tiny_lora(tmp, task, fmt, seed=seed, head_diff=True)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        (lora_dir / _DEMO_LORA_MARKER).write_text("tiny random LoRAs for app.py --demo\n")
    log.info("discovery: wrote demo LoRAs to %s", lora_dir)
    return lora_dir
