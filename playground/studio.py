"""The playground service: validates requests, runs them on the engine, stores results in the history.

``app.py`` only maps UI values to ``Studio`` calls and ``Studio`` answers back to UI values; every
rule (validation, the settings JSON, restoring a form from a stored result or an uploaded mp4)
lives here so it can be tested without a browser.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine import Engine, StepInfo
from .history import HistoryEntry, HistoryStore
from .images import check_image
from .request import (
    DEMO_MAX_SIDE,
    MAX_SIDE,
    GenerationRequest,
    InputError,
    format_size,
    request_from_values,
    validate_request,
)

__all__ = ["APP_NAME", "Studio", "TaskUI", "TASK_UI", "form_values_from_settings"]

log = logging.getLogger(__name__)

APP_NAME = "wan-playground"


@dataclass(frozen=True)
class TaskUI:
    """How a task appears in the app: tab id, API name and image policy."""

    task: str
    tab_id: str
    api_name: str
    image_required: bool
    image_allowed: bool


TASK_UI: dict[str, TaskUI] = {
    "t2v-A14B": TaskUI("t2v-A14B", "tab-t2v", "generate_t2v", image_required=False, image_allowed=False),
    "i2v-A14B": TaskUI("i2v-A14B", "tab-i2v", "generate_i2v", image_required=True, image_allowed=True),
    "ti2v-5B": TaskUI("ti2v-5B", "tab-ti2v", "generate_ti2v", image_required=False, image_allowed=True),
}


def form_values_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A stored settings dict -> the form's named values (the inverse of ``request_from_values``)."""
    values: dict[str, Any] = {}
    for key in ("prompt", "negative_prompt", "frame_num", "fps", "sampling_steps", "shift", "sample_solver", "seed"):
        if key in settings:
            values[key] = settings[key]
    if "width" in settings and "height" in settings:
        values["size"] = format_size(int(settings["width"]), int(settings["height"]))
    gs = settings.get("guide_scale")
    if isinstance(gs, (list, tuple)) and len(gs) == 2:
        values["guide_scale_low"], values["guide_scale_high"] = float(gs[0]), float(gs[1])
    elif gs is not None:
        values["guide_scale"] = float(gs)
    if "seed" in values:
        values["randomize_seed"] = False  # restoring means reproducing
    return values


class Studio:
    def __init__(self, engine: Engine, store: HistoryStore, *, any_size: bool = False) -> None:
        self.engine = engine
        self.store = store
        self.any_size = any_size
        self.max_side = DEMO_MAX_SIDE if engine.demo else MAX_SIDE

    # ----------------------------------------------------------------------------- requests
    def build_request(
        self,
        task: str,
        values: Mapping[str, Any],
        *,
        image: str | None = None,
        prompt_fields: Mapping[str, Any] | None = None,
    ) -> GenerationRequest:
        """UI values -> a validated request, or ``InputError`` naming the field and what is allowed."""
        ui = TASK_UI[task]
        spec = self.engine.spec(task)
        if image and ui.image_allowed:
            check_image(image)
        req = request_from_values(spec, values, image=image if ui.image_allowed else None, prompt_fields=prompt_fields)
        if image and not ui.image_allowed:
            raise InputError("image", f"{task} is text-only; remove the image or use the I2V / TI2V tab")
        validate_request(
            req, spec, any_size=self.any_size, max_side=self.max_side, image_required=ui.image_required, image_allowed=ui.image_allowed
        )
        return req

    # ----------------------------------------------------------------------------- generate
    def generate(
        self,
        req: GenerationRequest,
        *,
        on_step: Callable[[StepInfo], None] | None = None,
        on_status: Callable[..., None] | None = None,
        cancel: threading.Event | None = None,
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
            if req.image:
                image_tmp = self.store.work_path(gen_id, ".png")
                work.append(image_tmp)
                self._save_input_image(req.image, image_tmp)
            return self.store.commit(gen_id, video_tmp, settings, image_tmp)
        finally:
            self.store.release(gen_id)
            for p in work:
                p.unlink(missing_ok=True)  # moved into place on success; leftovers on failure

    def _settings(
        self, req: GenerationRequest, gen_id: str, elapsed: float, whf: tuple[int, int, int]
    ) -> dict[str, Any]:
        width, height, frames = whf
        d = req.to_dict()
        d.pop("image", None)  # the stored copy is named in "image_file" by the history store
        weights = self.engine.weights(req.task)
        d.update(
            {
                "id": gen_id,
                "app": APP_NAME,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "elapsed_s": round(elapsed, 2),
                "demo": self.engine.demo,
                "weights": "tiny random weights (demo)" if self.engine.demo else str(weights.path),
                "device": self.engine.device,
                "video": {"width": width, "height": height, "frames": frames, "fps": req.fps},
            }
        )
        return d

    @staticmethod
    def _save_input_image(src: str, dst: Path) -> None:
        from PIL import Image

        with Image.open(src) as im:
            im.convert("RGB").save(dst, format="PNG")

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
            raise InputError("video", f"the embedded settings name an unknown task {settings.get('task')!r}")
        return settings


def _embedded_settings(meta: Any) -> dict[str, Any] | None:
    """Find our settings in whatever ``read_video_metadata`` returned (the dict itself, or nested)."""
    import json

    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return None
    if not isinstance(meta, dict):
        return None
    if meta.get("app") == APP_NAME and "task" in meta:
        return meta
    for value in meta.values():
        found = _embedded_settings(value) if isinstance(value, (dict, str)) else None
        if found is not None:
            return found
    return None
