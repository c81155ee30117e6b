"""The playground service: validates requests, runs them on the engine, stores results in the history.

``app.py`` only maps UI values to ``Studio`` calls and ``Studio`` answers back to UI values; every
rule (validation, the settings JSON, restoring a form from a stored result or an uploaded mp4)
lives here so it can be tested without a browser.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wan.configs import TASKS, get_spec
from wan.request import GenerationRequest, RequestPolicy, check_fields, flat_values, parse_values, request_from_values

from .engine import Engine, StepInfo
from .history import HistoryEntry, HistoryStore, is_valid_id
from .images import check_image
from .request import InputError, app_policy

__all__ = ["APP_NAME", "CONTINUE_TASK", "TASK_UI", "ContinuationSource", "RestoredForm", "Studio", "TaskUI",
           "form_values_from_settings", "restore_form"]

log = logging.getLogger(__name__)

APP_NAME = "wan-playground"
_ASSIST_MODES = ("basic", "advanced", "i2v")
_ASSIST_LANGS = ("en", "zh")
_MAX_JSON_DEPTH = 32  # deeper metadata is not ours (and would only exhaust the recursion)
# The task that continues a clip of each task from its last frame (T2V has no image path: the A14B I2V model).
CONTINUE_TASK: dict[str, str] = {"t2v-A14B": "i2v-A14B", "i2v-A14B": "i2v-A14B", "ti2v-5B": "ti2v-5B"}
# Settings a continuation takes from its parent unless given (fps always: a timeline exports at one fps);
# the sampler's shift and guidance only from a parent of the same task.
_INHERITED = ("prompt", "negative_prompt", "frame_num", "fps", "sampling_steps", "sample_solver")
_INHERITED_SAME_TASK = ("shift", "guide_scale", "guide_scale_high", "guide_scale_low")


@dataclass(frozen=True)
class TaskUI:
    """How a task appears in the app: tab id and API name; the image policy comes from the spec."""

    task: str
    tab_id: str
    api_name: str

    @property
    def image_required(self) -> bool:
        return get_spec(self.task).image_input == "required"

    @property
    def image_allowed(self) -> bool:
        return get_spec(self.task).image_input != "none"


TASK_UI: dict[str, TaskUI] = {
    task: TaskUI(task, f"tab-{short}", f"generate_{short}")
    for task, short in zip(TASKS, ("t2v", "i2v", "ti2v"), strict=True)
}


@dataclass(frozen=True)
class RestoredForm:
    """A form to refill from stored settings: the valid values (flat form names), the sanitised
    prompt-assistant fields, and one message per value that was rejected (the rest is kept)."""

    task: str
    values: dict[str, Any] = field(default_factory=dict)
    prompt_fields: dict[str, Any] | None = None
    problems: list[InputError] = field(default_factory=list)


def restore_form(settings: Mapping[str, Any], policy: RequestPolicy | None = None) -> RestoredForm:
    """Stored settings (history JSON, mp4 metadata, either schema version) -> ``RestoredForm``.

    Every value goes through the request contract's own parser and per-field checks; a bad one is
    reported by name and left out, never raised. Raises ``InputError("task")`` only when the task
    itself is unknown (then there is no form to fill). Sizes are checked against ``policy`` (by
    default any multiple of the task's stride: what was made elsewhere may be shown; Generate
    applies this server's policy).
    """
    task = settings.get("task")
    if task not in TASK_UI:
        raise InputError("task", f"the settings name an unknown task {str(task)[:40]!r}; expected one of {', '.join(TASK_UI)}")
    kwargs, problems = parse_values(task, settings)
    good, bad = check_fields(task, kwargs, policy or RequestPolicy(any_size=True))
    problems += bad
    fields = good.pop("prompt_fields", None)
    if isinstance(fields, Mapping):
        fields = dict(fields)
        for key, allowed in (("mode", _ASSIST_MODES), ("lang", _ASSIST_LANGS)):
            if key in fields and fields[key] not in allowed:
                problems.append(InputError("prompt_fields", f"{key} {str(fields[key])[:20]!r} is not one of {', '.join(allowed)}"))
                del fields[key]
    values = flat_values(task, good)
    if "seed" in values:
        if values["seed"] == -1:
            del values["seed"]
        else:
            values["randomize_seed"] = False  # restoring means reproducing
    return RestoredForm(task, values, fields if isinstance(fields, dict) else None, problems)


def form_values_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A stored settings dict -> the form's named values (``restore_form(...).values``)."""
    return restore_form(settings).values


@dataclass(frozen=True)
class ContinuationSource:
    """The clip a continuation starts from: its mp4, the name recorded as ``parent`` (the result id, or
    the uploaded file's name), its embedded/stored settings (None for a video not made by this app),
    and its history entry when it is a result."""

    video: Path
    name: str
    settings: dict[str, Any] | None = None
    entry: HistoryEntry | None = None

    @property
    def task(self) -> str | None:
        task = (self.settings or {}).get("task")
        return task if task in TASK_UI else None


class Studio:
    def __init__(self, engine: Engine, store: HistoryStore, *, any_size: bool = False,
                 lora_dir: str | Path | None = None) -> None:
        self.engine = engine
        self.store = store
        self.policy = app_policy(demo=engine.demo, any_size=any_size,
                                 lora_dir=Path(lora_dir) if lora_dir is not None else None)

    @property
    def lora_dir(self) -> Path | None:
        """The server's LoRA folder (requests name LoRA files inside it)."""
        return self.policy.lora_dir

    @property
    def any_size(self) -> bool:
        return self.policy.any_size

    def restore_form(self, settings: Mapping[str, Any]) -> RestoredForm:
        """``restore_form`` under this server's policy (sizes it would not accept are reported)."""
        return restore_form(settings, self.policy)

    # ----------------------------------------------------------------------------- requests
    def build_request(
        self,
        task: str,
        values: Mapping[str, Any],
        *,
        image: str | None = None,
        prompt_fields: Mapping[str, Any] | None = None,
        last_image: str | None = None,
    ) -> GenerationRequest:
        """UI/API values -> a validated ``GenerationRequest``, or ``InputError`` naming the field.

        The one conversion: ``wan.request.request_from_values`` with this server's policy. The
        uploaded images are checked (readable, size limits) before the request reads them; a problem
        with ``last_image`` (I2V-A14B: the last frame of a first-last frame video) is an
        ``InputError("last_image")`` (without ``image``, on another task, too few frames, unreadable).
        """
        if image and TASK_UI[task].image_allowed:
            check_image(image)
        if last_image:
            try:
                check_image(last_image)
            except InputError as e:
                raise InputError("last_image", e.message) from None
        values = dict(values)
        for name in ("prompt", "negative_prompt"):
            text = values.get(name)
            values[name] = "" if text is None else text.strip() if isinstance(text, str) else text
        if prompt_fields:
            values["prompt_fields"] = prompt_fields
        return request_from_values(task, values, image=image or None, last_image=last_image or None,
                                   policy=self.policy)

    # ----------------------------------------------------------------------------- generate
    def generate(
        self,
        req: GenerationRequest,
        *,
        on_step: Callable[[StepInfo], None] | None = None,
        on_status: Callable[..., None] | None = None,
        cancel: threading.Event | None = None,
        owner: str | None = None,
    ) -> HistoryEntry:
        """Run ``req`` and store the result (mp4 + settings JSON + input image); returns the entry."""
        from wan import video as wan_video

        gen_id = self.store.reserve_id()
        work: list[Path] = []
        try:
            t0 = time.perf_counter()
            frames = self.engine.generate(req, on_step=on_step, on_status=on_status, cancel=cancel)
            elapsed = time.perf_counter() - t0
            _, n_frames, height, width = frames.shape
            settings = self._settings(req, gen_id, elapsed, (width, height, n_frames))
            if on_status:
                on_status("run.writing")
            video_tmp = self.store.work_path(gen_id, ".mp4")
            work.append(video_tmp)
            wan_video.save_video(frames, video_tmp, fps=req.fps, metadata=settings)
            image_tmp = None
            if req.image is not None:
                image_tmp = self.store.work_path(gen_id, ".png")
                work.append(image_tmp)
                self._save_input_image(req.image, image_tmp)
            return self.store.commit(gen_id, video_tmp, settings, image_tmp, owner=owner)
        finally:
            self.store.release(gen_id)
            for p in work:
                p.unlink(missing_ok=True)  # moved into place on success; leftovers on failure

    def _settings(
        self, req: GenerationRequest, gen_id: str, elapsed: float, whf: tuple[int, int, int]
    ) -> dict[str, Any]:
        width, height, frames = whf
        d = req.to_settings()
        d.pop("image", None)  # the stored copy is named in "image_file" by the history store
        self._lora_names(req, d)
        weights = self.engine.weights(req.task)
        d.update(
            {
                "id": gen_id,
                "app": APP_NAME,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "elapsed_s": round(elapsed, 2),
                "demo": self.engine.demo,
                # the folder's name only: settings travel with the mp4, server paths must not
                "weights": "tiny random weights (demo)" if self.engine.demo else Path(str(weights.path)).name,
                "device": self.engine.device,
                "memory": self.engine.memory_setup(),
                "video": {"width": width, "height": height, "frames": frames, "fps": req.fps},
            }
        )
        forwards = self.engine.forwards(req)  # DiT forwards run / reused by the step cache (wan.stepcache)
        if forwards is not None:
            d["forwards"] = forwards
        return d

    def _lora_names(self, req: GenerationRequest, settings: dict[str, Any]) -> None:
        """Each LoRA's name as the request named it: its path inside the LoRA folder (``sub/x.safetensors``;
        the Lightning files of different tasks share a file name), so links and restores find it again."""
        root = self.policy.lora_dir
        if root is None:
            return
        root = Path(root).resolve()
        for lora, entry in zip(req.loras, settings.get("loras") or [], strict=False):
            if isinstance(lora.source, str) and isinstance(entry, dict):
                try:
                    entry["name"] = Path(lora.source).resolve().relative_to(root).as_posix()
                except ValueError:
                    pass  # not in the folder (a script's request): the file name stays

    @staticmethod
    def _save_input_image(src: Any, dst: Path) -> None:
        """The request's image (a path, or a PIL image such as a continuation's first frame) as PNG."""
        from PIL import Image

        if isinstance(src, Image.Image):
            src.convert("RGB").save(dst, format="PNG")
            return
        with Image.open(src) as im:
            im.convert("RGB").save(dst, format="PNG")

    # ----------------------------------------------------------------------------- continue
    def continuation_source(self, parent: str | Path) -> ContinuationSource:
        """A result id (``UnknownIdError`` if not in the history) or an uploaded video file
        (``InputError("video")``: missing, not an .mp4). An upload that is one of this server's results
        (its embedded id is in the history) is recorded under that id."""
        text = str(parent).strip() if isinstance(parent, (str, Path)) else ""
        if not text:
            raise InputError("video", "choose the clip to continue: a result id or an uploaded .mp4 video")
        if is_valid_id(text):
            entry = self.store.get(text)
            return ContinuationSource(entry.video, entry.id, dict(entry.settings), entry)
        path = Path(text)
        if path.suffix.lower() != ".mp4":
            if len(path.parts) == 1 and not path.exists():  # a mistyped id, not a file
                raise InputError("video", f"{text[:60]!r} is neither a result id (ids look like 20260101-120000-a1b2c3) "
                                          "nor an .mp4 video")
            raise InputError("video", f"{path.name[:80]!r} is not an .mp4 video: upload an mp4 (or give a result id)")
        if not path.is_file():
            raise InputError("video", f"video file not found: {path.name[:80]!r}")
        try:
            settings: dict[str, Any] | None = self.settings_from_video(path)
        except InputError:
            settings = None  # a video made elsewhere: its frames are enough
        gen_id = (settings or {}).get("id")
        if is_valid_id(gen_id):  # a download of one of this server's results: recorded under its id
            try:
                entry = self.store.get(gen_id)
            except KeyError:  # UnknownIdError: made on another server
                entry = None
            if entry is not None:
                return ContinuationSource(path, entry.id, dict(entry.settings), entry)
        return ContinuationSource(path, path.name, settings)

    def continue_request(self, parent: str | Path | ContinuationSource, values: Mapping[str, Any] | None = None,
                         *, task: str | None = None) -> GenerationRequest:
        """The request that continues ``parent`` (a result id, an uploaded mp4 or a ``ContinuationSource``)
        from its last frame: ``wan.continuation.continue_request`` under this server's policy.

        ``task``: i2v-A14B or ti2v-5B; default ``CONTINUE_TASK`` of the parent's task (i2v-A14B for a
        video made elsewhere). ``values`` are form/API values (text-ish, like ``build_request``'s) plus
        ``overlap`` and ``color_match``; what they leave out comes from the parent's settings
        (``_INHERITED``; fps always, so a timeline keeps one fps), then the defaults. ``size`` defaults
        to the parent's (``wan.continuation.continuation_size``). Raises ``InputError`` naming the
        field (``"video"`` for an unreadable upload, ``"task"`` for a text-only task).
        """
        from wan.continuation import continue_request
        from wan.request import parse_values

        src = parent if isinstance(parent, ContinuationSource) else self.continuation_source(parent)
        if task is None:
            task = CONTINUE_TASK.get(src.task or "", "i2v-A14B")
        if task not in TASK_UI or not TASK_UI[task].image_allowed:
            raise InputError("task", f"{str(task)[:40]!r} cannot continue a video: use i2v-A14B or ti2v-5B")
        merged = self._inherited(src, task)
        for key, value in (values or {}).items():
            if value is None or (isinstance(value, str) and not value.strip()):
                continue  # left empty: inherited or default
            merged[key] = value.strip() if isinstance(value, str) and key in ("prompt", "negative_prompt") else value
        for name in ("parent", "image", "last_image", "any_size"):
            merged.pop(name, None)  # the parent decides these
        kwargs, errors = parse_values(task, merged)
        if errors:
            raise errors[0]
        kwargs.pop("any_size", None)
        prompt = kwargs.pop("prompt", "")
        try:
            return continue_request(task, src.video, prompt, parent_name=src.name, policy=self.policy, **kwargs)
        except InputError as e:
            if e.field == "parent":  # the file the user gave
                raise InputError("video", e.message) from None
            raise

    def _inherited(self, src: ContinuationSource, task: str) -> dict[str, Any]:
        if not src.settings or src.task is None:
            return self._probed_fps(src.video)
        names = _INHERITED + (_INHERITED_SAME_TASK if src.task == task else ())
        restored = restore_form(src.settings).values  # validated, flat form names
        out = {k: v for k, v in restored.items() if k in names}
        fps = (src.settings.get("video") or {}).get("fps") if isinstance(src.settings.get("video"), Mapping) else None
        if isinstance(fps, int) and not isinstance(fps, bool):
            out["fps"] = fps
        return out

    @staticmethod
    def _probed_fps(video: Path) -> dict[str, Any]:
        from wan.configs import LIMITS
        from wan.video import probe_video

        try:
            fps = probe_video(video).fps
        except (ValueError, OSError):
            return {}  # unreadable: the request names the file
        return {"fps": int(round(fps))} if abs(fps - round(fps)) < 1e-3 and round(fps) in LIMITS.fps else {}

    def continue_from(
        self,
        parent: str | Path,
        values: Mapping[str, Any] | None = None,
        *,
        task: str | None = None,
        on_step: Callable[[StepInfo], None] | None = None,
        on_status: Callable[..., None] | None = None,
        cancel: threading.Event | None = None,
        owner: str | None = None,
    ) -> HistoryEntry:
        """Continue ``parent`` (a result id or an uploaded mp4) from its last frame and store the new clip:
        ``continue_request`` then ``generate``. The stored settings record ``parent`` (the result id or
        the file name), ``overlap`` and ``color_match``; its input image is the parent's last frame."""
        return self.generate(self.continue_request(parent, values, task=task), on_step=on_step,
                             on_status=on_status, cancel=cancel, owner=owner)

    # ------------------------------------------------------------------------------ restore
    def settings_from_video(self, path: str | Path) -> dict[str, Any]:
        """The settings embedded in an mp4 made by this app, or ``InputError`` saying why not."""
        from wan import video as wan_video

        p = Path(path)
        if p.suffix.lower() != ".mp4":
            raise InputError("video", f"{p.name!r} is not an .mp4 file; upload a video made by this app")
        try:
            meta = wan_video.read_video_metadata(p)
        except Exception as e:  # ffmpeg/imageio errors: report them, the app keeps serving
            raise InputError("video", f"cannot read {p.name!r} as an mp4: {e}") from e
        settings = _embedded_settings(meta)
        if settings is None:
            raise InputError(
                "video",
                f"{p.name!r} has no Wan Playground settings in its metadata (it was not made by this app, "
                "or an editor stripped the metadata)",
            )
        if settings.get("task") not in TASK_UI:
            raise InputError("video", f"the embedded settings name an unknown task {str(settings.get('task'))[:40]!r}")
        return settings


def _embedded_settings(meta: Any, depth: int = 0) -> dict[str, Any] | None:
    """Find our settings in whatever ``read_video_metadata`` returned (the dict itself, or nested)."""
    if depth > _MAX_JSON_DEPTH:
        return None
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except (ValueError, RecursionError):
            return None
    if not isinstance(meta, dict):
        return None
    if meta.get("app") == APP_NAME and "task" in meta:
        return meta
    for value in meta.values():
        found = _embedded_settings(value, depth + 1) if isinstance(value, (dict, str)) else None
        if found is not None:
            return found
    return None
