"""The app's LoRA folder: which files it holds, which fit a task's model, Hub downloads, and the
API's ``loras`` / ``preset`` parameters turned into request values.

* ``LoraLibrary(lora_dir, config_for)``: every LoRA file under the folder (names relative to it,
  ``/``-separated, as the request contract's ``RequestPolicy(lora_dir=...)`` takes them), and per task
  only those whose shapes fit the task's DiT (``wan.lora.lora_fits``; cached per file mtime and size).
* ``task_dit_config(engine, task)``: the DiT config LoRAs are checked against (the tiny one in the
  demo, the checkpoint's ``config.json`` when found, else the official spec).
* ``parse_api_loras`` / ``api_values``: the generate endpoints' ``loras`` (a JSON list) and ``preset``
  (a speed preset name) as ``Studio.build_request`` values.

Importing this module imports neither torch nor ``wan.lora``'s readers; listing a folder that holds
files does (once, to read their shapes).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from wan.errors import InputError

if TYPE_CHECKING:
    from wan.modules.model import DiTConfig

    from .engine import Engine

__all__ = ["LORA_SUFFIXES", "LoraLibrary", "api_values", "parse_api_loras", "safe_name", "task_dit_config"]

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")  # what wan.lora reads
MAX_FILES = 500  # a folder holding more is listed up to this many (sorted by name)
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def safe_name(name: Any) -> str | None:
    """``name`` as a relative ``/``-separated file name inside a LoRA folder, or None when it is not one
    (absolute, ``..``, empty parts, backslashes, control characters, not a LoRA suffix)."""
    if not isinstance(name, str) or not name.strip() or len(name) > 300:
        return None
    if "\\" in name or any(ord(c) < 32 for c in name) or name.startswith("/") or ":" in name:
        return None
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    if not name.lower().endswith(LORA_SUFFIXES):
        return None
    return "/".join(parts)


def task_dit_config(engine: Engine, task: str) -> DiTConfig:
    """The DiT config a LoRA for ``task`` must fit: the tiny demo config, the found checkpoint's
    ``config.json`` (an A14B expert's; both experts have the same shapes), else the official spec."""
    if engine.demo:
        from wan.testing.synthetic import tiny_dit_config

        return tiny_dit_config(task)
    from wan.configs import dit_config_from_json, get_spec

    spec = get_spec(task)
    try:
        status = engine.weights(task)
        if status.path is not None:
            root = Path(status.path)
            for candidate in (root / "high_noise_model" / "config.json", root / "config.json",
                              root / "transformer" / "config.json"):
                if candidate.is_file():
                    cfg = json.loads(candidate.read_text(encoding="utf-8"))
                    return dit_config_from_json(cfg, source=candidate.name, text_dim=spec.dit.text_dim)
    except Exception as e:  # an unreadable config: the official shapes are what the loader expects anyway
        log.info("loras: using the official %s DiT shapes (%s)", task, e)
    return spec.dit


class LoraLibrary:
    """The LoRA folder of a server. Thread-safe; nothing here loads a model."""

    def __init__(self, lora_dir: str | Path, config_for: Callable[[str], Any]) -> None:
        self.root = Path(lora_dir)
        self._config_for = config_for
        self._fits: dict[tuple[str, str, int, int], bool | str] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------- files
    def names(self) -> list[str]:
        """Every LoRA file in the folder (sub-folders too; hidden ones skipped), by name."""
        if not self.root.is_dir():
            return []
        out: list[str] = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if safe_name(rel) is None or not path.is_file():
                continue
            out.append(rel)
            if len(out) >= MAX_FILES:
                break
        return out

    def path_of(self, name: Any) -> Path | None:
        """The file of ``name`` inside the folder (symlinks resolved, still inside), or None."""
        rel = safe_name(name)
        if rel is None:
            return None
        root = self.root.resolve()
        path = (root / rel).resolve()
        if root not in path.parents or not path.is_file():
            return None
        return path

    # ------------------------------------------------------------------------------- fit
    def fits(self, name: str, task: str) -> bool | str:
        """True, or why the file cannot be used on ``task`` (not found, not a LoRA, other shapes)."""
        path = self.path_of(name)
        if path is None:
            return f"{name!r} is not a LoRA file in this server's LoRA folder"
        st = path.stat()
        key = (task, str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._fits.get(key)
        if hit is not None:
            return hit
        from wan.lora import lora_fits

        try:
            answer = lora_fits(path, self._config_for(task))
        except Exception as e:  # e.g. a torch file that fails to unpickle: not listed, and logged
            answer = f"{Path(name).name}: cannot be read ({type(e).__name__}: {e})"
        with self._lock:
            self._fits[key] = answer
        if answer is not True:
            log.info("loras: %s is not listed for %s: %s", name, task, answer)
        return answer

    def compatible(self, task: str) -> list[str]:
        """The files whose shapes fit ``task``'s DiT."""
        return [name for name in self.names() if self.fits(name, task) is True]

    # --------------------------------------------------------------------------- the Hub
    def download(self, repo: str, filename: str, progress: Callable[[str], None] | None = None) -> str:
        """Fetch ``filename`` of the Hub repo ``repo`` into the folder (at the same relative path);
        returns its name. ``InputError`` for a bad repo id / file name or a failed download."""
        repo = (repo or "").strip()
        name = safe_name((filename or "").strip())
        if not _REPO_RE.match(repo):
            raise InputError("lora_repo", f"{repo[:80]!r} is not a Hub repo id (owner/name)")
        if name is None:
            raise InputError("lora_file", f"{(filename or '')[:80]!r} is not a LoRA file path inside the repo "
                                          f"(a relative path ending in {', '.join(LORA_SUFFIXES)})")
        from wan.loading import hub_offline

        if hub_offline():
            raise InputError("lora_repo", "this server is offline (HF_HUB_OFFLINE is set): nothing can be downloaded")
        from huggingface_hub import hf_hub_download

        if progress:
            progress(f"downloading {repo}/{name}…")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            hf_hub_download(repo, name, local_dir=str(self.root))
        except Exception as e:  # network, auth, missing file: the user's answer, the server keeps serving
            log.info("loras: download of %s/%s failed: %s", repo, name, e)
            raise InputError("lora_repo", f"downloading {repo}/{name} failed: {type(e).__name__}: {str(e)[:200]}") from None
        return name


# ------------------------------------------------------------------------------ the API side
def parse_api_loras(raw: Any, task: str) -> list[dict[str, Any]]:
    """The ``loras`` API parameter (a JSON list, or a list) -> ``[{"name", "strength"}, ...]``.

    Names must be relative file names inside the server's LoRA folder (``..``, absolute paths and
    backslashes are refused here; ``Studio.build_request`` then checks the file is there). Strength: a
    number, ``{"high_noise": h, "low_noise": l}`` (A14B) or ``{"dense": d}`` (5B); default 1.
    """
    from wan.configs import LIMITS

    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InputError("loras", 'must be a JSON list like [{"name": "style.safetensors", "strength": 0.8}]') from None
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or len(raw) > LIMITS.loras:
        raise InputError("loras", f"must be a list of at most {LIMITS.loras} LoRAs")
    out = []
    for entry in raw:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping) or not set(entry) <= {"name", "strength", "sha256"} or "name" not in entry:
            raise InputError("loras", 'each LoRA is {"name": <file in the LoRA folder>, "strength": ...}')
        name = safe_name(entry["name"])
        if name is None:
            raise InputError("loras", f"{str(entry['name'])[:80]!r} is not a file name inside this server's LoRA "
                                      "folder (see list_loras)")
        item: dict[str, Any] = {"name": name, "strength": entry.get("strength", 1.0)}
        if entry.get("sha256"):
            item["sha256"] = entry["sha256"]
        out.append(item)
    return out


def api_values(task: str, values: Mapping[str, Any], *, lora_dir: Path, download: bool = False,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Request values with the API's ``loras`` and ``preset`` resolved: the preset's settings (steps,
    solver, shift, schedule, phases) override the form's, its LoRA pair comes first, then ``loras``."""
    from .speed import PresetError, preset_values

    out = dict(values)
    loras = parse_api_loras(out.pop("loras", None), task)
    preset = out.pop("preset", None)
    if isinstance(preset, str) and preset.strip():
        try:
            pv = preset_values(preset.strip(), task, lora_dir=lora_dir, download=download, progress=progress)
        except PresetError as e:
            raise InputError("preset", str(e)) from None
        loras = [*pv.pop("loras", []), *loras]
        out.update(pv)
    elif preset not in (None, ""):
        raise InputError("preset", f"must be a preset name; got {str(preset)[:40]!r}")
    if loras:
        out["loras"] = loras
    return out
