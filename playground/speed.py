"""Speed presets (``presets/speed_presets.json``): few-step settings plus the LoRA files they need.

A preset is data: generation settings of the request contract (steps, solver, shift, schedule,
phases) and, per task, the HIGH/LOW LoRA pair with its per-expert strengths. ``preset_values``
turns a preset into request values for one task, finding the LoRA files under the LoRA folder
(``--lora-dir``, default ``loras/``) at the path they have in their Hub repo, or downloading them
when the operator allows it; when a file is missing it raises ``PresetError`` naming the files,
the repo and where to put them. Used by the app's *Fast* button and by ``generate.py --preset``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PRESETS_FILE", "PresetError", "SpeedPreset", "preset_values", "speed_presets"]

PRESETS_FILE = Path(__file__).resolve().parent.parent / "presets" / "speed_presets.json"


class PresetError(RuntimeError):
    """A preset cannot be used here: unknown, not for this task, or its LoRA files are missing."""


@dataclass(frozen=True)
class SpeedPreset:
    name: str
    label: str
    description: str
    tasks: tuple[str, ...]
    settings: dict[str, Any]


@functools.cache
def _data() -> dict[str, Any]:
    return json.loads(PRESETS_FILE.read_text(encoding="utf-8"))


def speed_presets(task: str | None = None) -> dict[str, SpeedPreset]:
    """The presets (for ``task`` only, when given), by name."""
    out = {}
    for name, p in _data()["presets"].items():
        preset = SpeedPreset(name, p["label"], p["description"], tuple(p["tasks"]), dict(p["settings"]))
        if task is None or task in preset.tasks:
            out[name] = preset
    return out


def preset_values(
    name: str,
    task: str,
    *,
    lora_dir: Path,
    download: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Request values of preset ``name`` for ``task``: its settings plus ``loras`` as
    ``{"name": <path under lora_dir>, "strength": {...}}`` entries (names relative to ``lora_dir``)."""
    presets = speed_presets()
    if name not in presets:
        raise PresetError(f"unknown preset {name!r}; presets: {', '.join(presets)}")
    preset = presets[name]
    if task not in preset.tasks:
        raise PresetError(f"preset {name!r} is for {', '.join(preset.tasks)}, not {task}")
    files = _data()["loras"].get(task, [])
    missing = [f for f in files if not (Path(lora_dir) / f["file"]).is_file()]
    if missing and download:
        _download(missing, Path(lora_dir), progress)
        missing = [f for f in files if not (Path(lora_dir) / f["file"]).is_file()]
    if missing:
        listing = "; ".join(f"{f['repo']}: {f['file']}" for f in missing)
        raise PresetError(
            f"preset {preset.label!r} needs the Lightning LoRA files for {task}, not found in the LoRA folder "
            f"({Path(lora_dir).name}/): {listing}. Download them with `hf download <repo> <file> --local-dir "
            f"<LoRA folder>`, or start the app with --download to fetch them on first use."
        )
    loras = [{"name": f["file"], "strength": dict(f["strength"])} for f in files]
    return {**preset.settings, "loras": loras}


def _download(files: list[dict[str, Any]], lora_dir: Path, progress: Callable[[str], None] | None) -> None:
    from huggingface_hub import hf_hub_download

    from wan.loading import hub_offline

    if hub_offline():
        return  # the caller names the missing files
    for f in files:
        if progress:
            progress(f"downloading {f['repo']}/{f['file']}…")
        try:
            hf_hub_download(f["repo"], f["file"], local_dir=str(lora_dir))
        except Exception as e:  # network, auth, disk: the caller reports the files still missing
            raise PresetError(f"downloading {f['repo']}/{f['file']} failed: {type(e).__name__}: {e}") from e
