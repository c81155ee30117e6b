"""What every view shares: the limits, the app options, UI text keys, the request's language and URL,
and the input components that answer bad values with a clear message."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import gradio as gr

from playground.i18n import lang_from_header
from playground.request import FIELD_LABELS, InputError, error_text

# The one import of the request limits in the views: switch the source here and every slider,
# docstring and message follows.
from wan.configs import LIMITS, SOLVERS  # noqa: I001 - kept apart on purpose
from playground.request import DEMO_MAX_SIDE

MAX_FRAMES = int(LIMITS.frame_num.hi)
MAX_STEPS = int(LIMITS.sampling_steps.hi)
MAX_FPS = int(LIMITS.fps.hi)
MAX_SEED = int(LIMITS.seed.hi)
MAX_SIDE = int(LIMITS.side.hi)
MIN_SIDE = int(LIMITS.side.lo)

from .safe import toast

__all__ = [
    "LIMITS", "DEMO_MAX_SIDE", "MAX_FPS", "MAX_FRAMES", "MAX_SEED", "MAX_SIDE", "MAX_STEPS", "MIN_SIDE", "SOLVERS",
    "AppOptions", "CheckedImage", "CheckedNumber", "CheckedSlider", "app_url", "input_error", "request_lang",
    "named", "session_of", "t", "user_error",
]

log = logging.getLogger("wan.app")

MAX_UPLOAD = "25mb"  # images and the History video upload (launch(max_file_size=...))


@dataclass(frozen=True)
class AppOptions:
    """How the app is served.

    ``public``: a server anyone can reach (a Hugging Face Space): History shows each visitor only
    their own results, no server paths appear on the page. ``allow_download``: the operator passed
    ``--download``, so the Download-weights button is shown (and the LoRA panel may fetch from the Hub).
    ``upload_root``: Gradio's upload folder; uploads inside it are deleted once used. ``lora_dir``: the
    LoRA folder (``--lora-dir``; in the demo ``<demo-dir>/loras``); None: the app picks its default.
    """

    demo: bool = False
    any_size: bool = False
    public: bool = False
    allow_download: bool = False
    upload_root: str | None = None
    lora_dir: str | None = None


_T = gr.I18n()  # keys only; the translations are passed to launch() by app.build_i18n()


def t(key: str) -> Any:
    return _T(key)


def request_lang(request: gr.Request | None) -> str:
    if request is None:
        return "en"
    return lang_from_header(request.headers.get("accept-language"))


def session_of(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or "api"


def app_url(request: gr.Request | None) -> str:
    """The page URL the user sees (for permalinks): the Referer, else the server URL."""
    if request is None:
        return "http://127.0.0.1:7860/"
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme in ("http", "https") and parts.netloc:
            return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    url = str(request.url)
    cut = url.find("/gradio_api/")
    return (url[:cut] if cut >= 0 else url.split("?")[0]).rstrip("/") + "/"


def user_error(message: str, title: str = "Invalid input") -> gr.Error:
    """The error the user sees for an ordinary mistake (bad input, unknown id, cancelled run): no
    traceback in the server log (the handlers log one line where it helps)."""
    return gr.Error(message, title=title, print_exception=False)


def input_error(e: InputError, title: str = "Invalid input") -> gr.Error:
    """An ``InputError`` (field + what is allowed) as the error the user sees."""
    return user_error(toast(error_text(e)), title=title)


class CheckedImage(gr.Image):
    """``gr.Image`` that answers a non-image, corrupt or oversized upload with a clear message.

    Gradio decodes uploads before the handler runs; without this check a text file sent as an
    image fails inside Gradio with a generic error.
    """

    is_template = True  # rendered by the frontend as a plain "image" component
    field = "image"  # the request field its errors name (the I2V last frame sets "last_image")

    def preprocess(self, payload: Any) -> Any:
        path = getattr(payload, "path", None)
        if path:
            from playground.images import check_image

            try:
                check_image(path)
            except InputError as e:
                raise input_error(InputError(self.field, e.message), "Invalid image") from None
        return super().preprocess(payload)


def _checked_number(field: str, payload: Any, minimum: float | None, maximum: float | None) -> float:
    """``payload`` as a number, or a ``gr.Error`` naming ``field`` and the allowed range.

    Gradio's own checks fail with a generic error on ``"abc"`` or NaN sent over the API. Numeric
    strings (``"30"``) are accepted.
    """
    try:
        return _number(FIELD_LABELS.get(field, field), payload, minimum, maximum)
    except gr.Error as e:
        log.info("invalid input: %s", e.message)  # one line, no traceback
        raise


def _number(label: str, payload: Any, minimum: float | None, maximum: float | None) -> float:
    allowed = f"a number from {minimum:g} to {maximum:g}" if minimum is not None and maximum is not None else "a number"
    if isinstance(payload, str):
        try:
            payload = float(payload.strip())
        except ValueError:
            pass
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        raise user_error(toast(f"{label}: {str(payload)[:40]!r} is not a number; use {allowed}"), title="Invalid input")
    if not math.isfinite(payload):
        raise user_error(toast(f"{label}: {payload} is not a finite number; use {allowed}"), title="Invalid input")
    if (minimum is not None and payload < minimum) or (maximum is not None and payload > maximum):
        raise user_error(toast(f"{label}: {payload:g} is out of range; use {allowed}"), title="Invalid input")
    return payload


class CheckedSlider(gr.Slider):
    """``gr.Slider`` whose API value is checked first: a clear message naming the field, not a crash."""

    is_template = True
    field = ""  # the request field, set by the view after construction (not a frontend prop)

    def preprocess(self, payload: Any) -> Any:
        return super().preprocess(_checked_number(self.field, payload, self.minimum, self.maximum))


class CheckedNumber(gr.Number):
    """``gr.Number`` (the seed) with the same checks as ``CheckedSlider``; empty stays allowed."""

    is_template = True
    field = ""

    def preprocess(self, payload: Any) -> Any:
        if payload is not None:
            payload = _checked_number(self.field, payload, self.minimum, self.maximum)
        return super().preprocess(payload)


def named(component: Any, field: str) -> Any:
    """Tell a checked component which request field it holds (for its messages)."""
    component.field = field
    return component
