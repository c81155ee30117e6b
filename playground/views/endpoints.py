"""The public API (and MCP tools) of the app: one documented function per endpoint.

Gradio builds the API page and the MCP tool schemas from these signatures and their Google-style
``Args:`` docstrings. The docstrings name the limits and defaults, which depend on the task's
``ModelSpec`` and on ``--demo``; ``{placeholders}`` in them are filled by ``document`` when the app
is built, so the text stays in the functions themselves.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import gradio as gr

from playground.discovery import WeightsMissing
from playground.engine import GenerationCancelled, OutOfMemory, StepInfo
from playground.history import HistoryEntry, HistoryStore
from playground.images import discard_upload
from playground.i18n import tr
from playground.request import InputError, error_text, size_presets
from playground.share import permalink
from playground.studio import TASK_UI, Studio
from wan.configs import ModelSpec

from .cancel import CancelRegistry
from .common import user_error, MAX_FPS, MAX_FRAMES, MAX_SEED, MAX_STEPS, SOLVERS, AppOptions, app_url, input_error, request_lang, session_of
from .safe import code, toast

__all__ = ["API_EXTRAS", "make_list_loras", "extenders_of", "FORM_FIELDS", "MAX_BATCH", "GenerateRunner", "RunCancelled", "default_values", "document", "make_extend_api", "make_generate_endpoints"]

log = logging.getLogger("wan.app")

DEMO_DEFAULTS = {"frame_num": 9, "sampling_steps": 4}  # with the demo sizes: seconds on a CPU
# The request fields of the generate endpoints (the form of a task tab), in the API's order.
FORM_FIELDS = ("prompt", "negative_prompt", "size", "frame_num", "fps", "sampling_steps", "shift", "sample_solver",
               "guide_scale_high", "guide_scale_low", "guide_scale", "seed", "randomize_seed", "attention", "cache")
# Optional API parameters after the form's (appended: the order of the existing ones is kept).
API_EXTRAS = ("loras", "preset")
_TASK_TITLES = {
    "t2v-A14B": "text-to-video with the A14B two-expert MoE model",
    "i2v-A14B": "image-to-video with the A14B two-expert MoE model: the image is the first frame",
    "ti2v-5B": "text-to-video or text+image-to-video with the dense TI2V-5B model (720p)",
}


# ------------------------------------------------------------------------------- defaults
def default_size(spec: ModelSpec, demo: bool) -> str:
    presets = size_presets(spec, demo=demo)
    if demo:
        return presets[0].value
    landscape = [p for p in presets if p.width > p.height] or presets
    return max(landscape, key=lambda p: p.width * p.height).value


def default_values(spec: ModelSpec, demo: bool) -> dict[str, Any]:
    """Initial form values: the official ones, or small ones in demo mode (seconds on CPU)."""
    return {
        "size": default_size(spec, demo),
        "frame_num": DEMO_DEFAULTS["frame_num"] if demo else spec.frame_num,
        "fps": spec.sample_fps,
        "sampling_steps": DEMO_DEFAULTS["sampling_steps"] if demo else spec.sample_steps,
    }


def doc_values(task: str, spec: ModelSpec, demo: bool, download: bool = False) -> dict[str, Any]:
    """What the generate docstrings fill in: the task, its sizes and defaults (the form's initial values,
    i.e. the draft preset, which is what an API call that leaves a setting out gets), the limits."""
    from .weights_view import initial_values  # the module imports this one

    d = initial_values(spec, demo)
    gs = spec.guide_scale
    low, high = (gs["low_noise"], gs["high_noise"]) if spec.moe else (gs["dense"], gs["dense"])
    return {
        "task": task, "title": _TASK_TITLES.get(task, task),
        "sizes": "one of " + ", ".join(p.value for p in size_presets(spec, demo=demo)),
        "size": d["size"], "frame_num": d["frame_num"], "fps": spec.sample_fps, "sampling_steps": d["sampling_steps"],
        "shift": f"{spec.sample_shift:g}", "guide_low": f"{low:g}", "guide_high": f"{high:g}",
        "max_frames": MAX_FRAMES, "max_fps": MAX_FPS, "max_steps": MAX_STEPS, "max_seed": MAX_SEED,
        "solvers": ", ".join(SOLVERS),
        **_lora_doc(task, spec, download),
    }


def _lora_doc(task: str, spec: ModelSpec, download: bool) -> dict[str, str]:
    from playground.speed import speed_presets

    presets = list(speed_presets(task))
    if spec.moe:
        strength = ('a number for both experts, or {"high_noise": h, "low_noise": l} per expert (A14B: a HIGH '
                    'file usually gets {"high_noise": 1, "low_noise": 0}, its LOW file the reverse)')
        example = '{"high_noise": 1.0, "low_noise": 0.5}'
    else:
        strength = 'a number (or {"dense": d}; this model has one expert)'
        example = "0.8"
    return {
        "strength_doc": strength + ", each from -5 to 5; default 1",
        "strength_example": example,
        "presets": " or ".join(f'"{p}"' for p in presets) if presets else f"none for {task} (no parameter to set)",
        "download": "; downloaded from the Hub when missing" if download else "; the server must have it",
    }


_FORM_ARGS = (  # the Args lines every generate endpoint shares ({placeholders} filled by document)
    'prompt: what the video shows (English or Chinese): subject, scene, motion, light, camera; use extend_prompt to turn a short idea into a detailed prompt.',
    'negative_prompt: what to avoid; default: the official Wan 2.2 negative prompt (Chinese).',
    "size: the video size as a 'W*H' string, {sizes}. Default {size}.",
    'frame_num: number of frames, 4n+1 between 1 and {max_frames} (e.g. 81). Default {frame_num}.',
    'fps: frames per second of the mp4, 1 to {max_fps}. Default {fps}.',
    'sampling_steps: denoising steps, 1 to {max_steps}; more is slower and sharper. Default {sampling_steps}.',
    'shift: noise-schedule shift of the flow-matching sampler. Default {shift}.',
    'sample_solver: the sampler: {solvers}. Default unipc.',
    'attention: attention backend: auto (default: the fastest exact one), sdpa, flash_attn_2, flash_attn_3, sage (int8, approximate), or sage:F,L (the first F and last L steps exact); one this server cannot run is an error saying why.',
)

_SEED_ARGS = (  # the seed Args lines every generate endpoint shares
    'seed: random seed, 0 to {max_seed} (-1: random); used only when randomize_seed is false.',
    'randomize_seed: pick a random seed (the seed used is returned). Default true.',
)

_LORA_ARGS = (  # the LoRA/preset Args lines every generate endpoint shares
    'loras: optional LoRAs as a JSON list, e.g. [{{"name": "style.safetensors", "strength": {strength_example}}}]: each name is a file in this server\'s LoRA folder (list_loras gives the files that fit this model); strength is {strength_doc}. Default: none.',
    'preset: optional speed preset: {presets}. It sets steps, solver, shift, the schedule and the phases (CFG off) and adds its Lightning LoRA pair (from the LoRA folder{download}). Default: none.',
    'cache: optional step cache, which skips model evaluations whose result the previous ones predict: "off", "magcache" (balanced: the published MagCache setting, about 1.4-2x fewer model evaluations at 40-50 steps), "easycache" (fast: the published EasyCache setting, adapts at run time), or "magcache:0.1" / a JSON object for other thresholds. Runs under 10 steps are never cached. Default: off.',
)


def document(fn: Callable[..., Any], **values: Any) -> Callable[..., Any]:
    """Fill the ``{placeholders}`` of ``fn``'s docstring (Gradio reads it for the API and MCP docs)."""
    if "{form_args}" in (fn.__doc__ or ""):  # the shared Args lines, filled with the same values
        shared = {"form_args": _FORM_ARGS, "seed_args": _SEED_ARGS, "lora_args": _LORA_ARGS}
        values = {**values, **{k: "\n            ".join(lines).format(**values) for k, lines in shared.items()}}
    fn.__doc__ = (fn.__doc__ or "").format(**values)
    return fn


# -------------------------------------------------------------------------------- running
MAX_BATCH = 8  # results one click of Generate may queue (the tab's "Batch count")


class RunCancelled(Exception):
    """The user's Cancel stopped a run; ``text`` says where (in the user's language)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _Progress:
    """The one progress display of a run: phases (queued, loading, encoding, expert steps k/n,
    decoding k/n, saving) in ``lang``, prefixed with ``i/n`` inside a batch; remembers the last step."""

    def __init__(self, progress: gr.Progress, lang: str, prefix: tuple[int, int] | None = None) -> None:
        self.progress = progress
        self.lang = lang
        self.prefix = prefix
        self.last: StepInfo | None = None

    def _desc(self, text: str) -> str:
        if self.prefix is None:
            return text
        return tr("run.batch_item", self.lang, index=self.prefix[0], count=self.prefix[1], desc=text)

    def step(self, info: StepInfo) -> None:
        self.last = info
        # the counter's unit: "k/n steps" while denoising, "k/n latent frames" while decoding
        unit = tr("run.decode_unit", self.lang) if info.phase == "decode" else "steps"
        self.progress((info.step, info.total), desc=self._desc(info.describe(self.lang)), unit=unit)

    def status(self, msg_key: str, **fmt: Any) -> None:
        self.progress(None, desc=self._desc(tr(msg_key, self.lang, **fmt)))  # no bar: no "0.0%" for a phase

    def cancelled_text(self) -> str:
        info = self.last
        if info is None:
            return tr("gen.cancelled_start", self.lang)
        key = "gen.cancelled_decode" if info.phase == "decode" else "gen.cancelled_step"
        return tr(key, self.lang, step=info.step, total=info.total)


class GenerateRunner:
    """Validate, run on the engine (in a worker thread, cancellable), store and answer one request.

    ``__call__`` is the API endpoints' body (one result; errors raise). The task tabs use ``check``
    (before queueing: a message instead of an error) and ``run_batch`` (one or several results in a
    row, each stored with its own id; a cancel ends the batch with a status, not an error).

    All of them take the uploads as file paths: ``image`` (the first frame) and ``last_image`` (I2V-A14B:
    the last frame of a first-last frame video, an ``InputError("last_image")`` when it cannot be used).
    A result made with a last frame keeps it as ``<id>.last.png`` (``HistoryStore.save_last_image``), so
    its permalink restores it; the uploads themselves are deleted once used.
    """

    def __init__(self, studio: Studio, store: HistoryStore, cancels: CancelRegistry, options: AppOptions) -> None:
        self.studio = studio
        self.store = store
        self.cancels = cancels
        self.options = options

    # ----------------------------------------------------------------------------- checks
    def check(self, task: str, values: Mapping[str, Any], *, lang: str, image: str | None = None,
              prompt_fields: dict[str, Any] | None = None, last_image: str | None = None) -> str | None:
        """What stops this request before it is queued (in ``lang`` where the message is ours), or None."""
        prompt = values.get("prompt")
        if TASK_UI[task].image_required and not image:
            return tr("gen.image_missing", lang)
        if not image and (prompt is None or (isinstance(prompt, str) and not prompt.strip())):
            return tr("gen.prompt_empty", lang)
        try:
            self.studio.build_request(task, values, image=image, prompt_fields=prompt_fields, last_image=last_image)
        except InputError as e:
            return error_text(e, lang)
        status = self.studio.engine.weights(task)
        if not status.ready and not self.options.allow_download:
            return tr("gen.weights_missing", lang, task=task)
        return None

    def batch_requests(self, task: str, values: Mapping[str, Any], count: int, *, image: str | None = None,
                       prompt_fields: dict[str, Any] | None = None, last_image: str | None = None) -> list[Any]:
        """``count`` requests: the seed, then seed+1, ... (wrapping past the largest seed); a random
        seed for each when ``randomize_seed`` is on. Raises ``InputError`` like ``build_request``."""
        build = {"image": image, "prompt_fields": prompt_fields, "last_image": last_image}
        first = self.studio.build_request(task, values, **build)
        reqs = [first]
        for i in range(1, count):
            if values.get("randomize_seed"):
                reqs.append(self.studio.build_request(task, values, **build))
            else:
                reqs.append(first.with_changes(seed=(first.seed + i) % (MAX_SEED + 1)))
        return reqs

    def api_values(self, task: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """The API's ``loras`` (JSON list) and ``preset`` (name) as request values; ``InputError`` naming
        the parameter (a name outside the LoRA folder, an unknown preset, its LoRA files missing)."""
        if not any(k in values for k in API_EXTRAS):
            return dict(values)
        from playground.loras import api_values

        lora_dir = self.studio.lora_dir or Path("loras")
        return api_values(task, values, lora_dir=lora_dir, download=self.options.allow_download)

    # ------------------------------------------------------------------------------ runs
    async def __call__(self, task: str, values: Mapping[str, Any], *, request: gr.Request, progress: gr.Progress,
                       image: str | None = None, prompt_fields: dict[str, Any] | None = None,
                       owner: str | None = None, last_image: str | None = None) -> tuple[str, int, str, str]:
        lang = request_lang(request)
        try:
            values = await asyncio.to_thread(self.api_values, task, values)  # a preset may download its LoRAs
            req = self.studio.build_request(task, values, image=image, prompt_fields=prompt_fields,
                                            last_image=last_image)
        except InputError as e:
            log.info("invalid input for %s: %s", task, e)  # the user's mistake: one line, no traceback
            raise input_error(e) from None
        track = _Progress(progress, lang)
        track.status("run.queued")
        with self.cancels.register(session_of(request), task) as cancel:
            try:
                entry = await self._generate(req, track, cancel, owner)
            except RunCancelled:
                raise user_error("Generation cancelled.", title="Cancelled") from None
        self._discard_uploads(image, last_image)  # the store keeps its own copies
        return str(entry.video), req.seed, self.done_text(entry, lang), permalink(app_url(request), entry.id)

    async def run_batch(self, reqs: list[Any], *, request: gr.Request, progress: gr.Progress,
                        image: str | None = None, owner: str | None = None,
                        last_image: str | None = None) -> AsyncIterator[HistoryEntry]:
        """Run ``reqs`` (from ``batch_requests``) one after another under one Cancel; yields each stored
        entry. Raises ``RunCancelled`` (with where it stopped) on Cancel, ``gr.Error`` on a failure.
        ``image``/``last_image``: the uploads the requests read, deleted at the end."""
        lang = request_lang(request)
        task = reqs[0].task
        try:
            with self.cancels.register(session_of(request), task) as cancel:
                for i, req in enumerate(reqs):
                    track = _Progress(progress, lang, (i + 1, len(reqs)) if len(reqs) > 1 else None)
                    if i == 0:
                        track.status("run.queued")
                    yield await self._generate(req, track, cancel, owner)
        finally:
            self._discard_uploads(image, last_image)

    def _discard_uploads(self, *paths: str | None) -> None:
        for path in paths:
            if path and self.options.upload_root:
                discard_upload(path, self.options.upload_root)

    def _keep_last_image(self, entry: HistoryEntry, req: Any) -> None:
        """A first-last frame result keeps its last frame next to it (``<id>.last.png``), so a restore brings it back."""
        last = getattr(req, "last_image", None)
        if last is None:
            return
        from PIL import Image

        try:
            if isinstance(last, Image.Image):
                self.store.save_last_image(entry.id, last)
            else:
                with Image.open(last) as im:
                    self.store.save_last_image(entry.id, im)
        except (OSError, ValueError) as e:  # the result is stored; only its last frame could not be kept
            log.warning("result %s: last frame not kept: %s", entry.id, e)

    @staticmethod
    def done_text(entry: HistoryEntry, lang: str) -> str:
        s = entry.settings
        status = tr("run.done", lang, seconds=s["elapsed_s"], seed=s["seed"], width=s["video"]["width"],
                    height=s["video"]["height"], frames=s["video"]["frames"], fps=s["video"]["fps"])
        forwards = s.get("forwards")
        if s.get("cache") and isinstance(forwards, Mapping):  # what the step cache saved in this run
            status += " · " + tr("cache.done", lang, reused=forwards.get("reused"),
                                 total=(forwards.get("run") or 0) + (forwards.get("reused") or 0))
        return f"{status}\n\n{code(entry.id)}"

    async def _generate(self, req: Any, track: _Progress, cancel: Any, owner: str | None) -> HistoryEntry:
        try:
            entry = await asyncio.to_thread(self.studio.generate, req, on_step=track.step, on_status=track.status,
                                            cancel=cancel, owner=owner)
            await asyncio.to_thread(self._keep_last_image, entry, req)
            return entry
        except asyncio.CancelledError:
            cancel.set()  # Cancel button, client disconnect or job.cancel(): stop at the next step
            raise
        except GenerationCancelled:
            log.info("generation cancelled (%s)", req.task)
            raise RunCancelled(track.cancelled_text()) from None
        except WeightsMissing as e:
            log.info("cannot generate %s: weights missing", req.task)
            raise user_error(toast(self._weights_message(req.task, e)), title="Cannot generate") from None
        except InputError as e:
            log.info("cannot generate %s: %s", req.task, e)  # e.g. the image vanished: one line
            raise input_error(e, "Cannot generate") from None
        except OutOfMemory as e:
            log.warning("out of memory (%s): %s", req.task, e)
            raise user_error(toast(str(e)), title="Out of GPU memory") from None
        except Exception as e:  # a bug or a pipeline error: log it fully, tell the user, keep serving
            log.exception("generation failed for %s", req.task)
            raise user_error(toast(f"Generation failed: {type(e).__name__}: {e}"), title="Generation failed") from None

    def _weights_message(self, task: str, e: WeightsMissing) -> str:
        if self.options.public:  # the full message names server folders
            return f"The {task} weights are not available on this server."
        return str(e)


Run = Callable[..., Awaitable[tuple[str, int, str, str]]]


class Endpoint(Protocol):
    __name__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[tuple[str, int, str, str]]: ...


def _form(local_vars: Mapping[str, Any]) -> dict[str, Any]:
    form = {k: v for k, v in local_vars.items() if k in FORM_FIELDS}
    for k in API_EXTRAS:  # resolved by GenerateRunner.api_values (a JSON list; a preset name)
        if local_vars.get(k) not in (None, ""):
            form[k] = local_vars[k]
    return form


def make_generate_endpoints(run: Run, specs: Mapping[str, ModelSpec], *, demo: bool,
                            download: bool = False) -> dict[str, Endpoint]:
    """The three generate endpoints (task -> function), documented for ``specs``, ``demo`` and whether the
    server downloads missing files (``download``)."""
    endpoints = {"t2v-A14B": _t2v(run), "i2v-A14B": _i2v(run), "ti2v-5B": _ti2v(run)}
    for task, fn in endpoints.items():
        assert fn.__name__ == TASK_UI[task].api_name  # noqa: S101 - the API names are part of the contract
        document(fn, **doc_values(task, specs[task], demo, download))
        fn.runner = run  # type: ignore[attr-defined]  # the task tab's own flow (check, batch) uses it too
    return endpoints


def _t2v(run: Run) -> Endpoint:
    async def generate_t2v(prompt: str, negative_prompt: str, size: str, frame_num: int, fps: int,
                           sampling_steps: int, shift: float, sample_solver: str, guide_scale_high: float,
                           guide_scale_low: float, seed: int, randomize_seed: bool, request: gr.Request,
                           progress: gr.Progress = gr.Progress(), prompt_fields: dict[str, Any] | None = None,
                           owner: str | None = None, attention: str | None = None, loras: str | None = None,
                           preset: str | None = None, cache: str | None = None):
        """Generate a video with Wan 2.2 {task}: {title}.

        Args:
            {form_args}
            guide_scale_high: classifier-free guidance of the high-noise expert (early steps: layout, motion). Default {guide_high}.
            guide_scale_low: classifier-free guidance of the low-noise expert (late steps: detail). Default {guide_low}.
            {seed_args}
            {lora_args}

        Returns:
            the mp4
            the seed actually used
            a status line with the time taken and the result id
            the result's permalink (?gen=<id>)
        """
        return await run("t2v-A14B", _form(locals()), request=request, progress=progress,
                         prompt_fields=prompt_fields, owner=owner)
    return generate_t2v


def _i2v(run: Run) -> Endpoint:
    async def generate_i2v(prompt: str, negative_prompt: str, size: str, frame_num: int, fps: int,
                           sampling_steps: int, shift: float, sample_solver: str, guide_scale_high: float,
                           guide_scale_low: float, seed: int, randomize_seed: bool, request: gr.Request,
                           progress: gr.Progress = gr.Progress(), prompt_fields: dict[str, Any] | None = None,
                           owner: str | None = None, attention: str | None = None, image: str | None = None,
                           loras: str | None = None, preset: str | None = None, cache: str | None = None,
                           last_image: str | None = None):
        """Generate a video with Wan 2.2 {task}: {title}.

        Args:
            {form_args}
            guide_scale_high: classifier-free guidance of the high-noise expert (early steps: layout, motion). Default {guide_high}.
            guide_scale_low: classifier-free guidance of the low-noise expert (late steps: detail). Default {guide_low}.
            {seed_args}
            image: the first frame (PNG, JPEG or WebP, at most 25 MB); required. The video keeps the image's aspect ratio at about the pixel area of size.
            {lora_args}
            last_image: optional last frame (PNG, JPEG or WebP, at most 25 MB): the video ends on it (first-last frame); needs image.

        Returns:
            the mp4
            the seed actually used
            a status line with the time taken and the result id
            the result's permalink (?gen=<id>)
        """
        return await run("i2v-A14B", _form(locals()), request=request, progress=progress, image=image,
                         prompt_fields=prompt_fields, owner=owner, last_image=last_image)
    return generate_i2v


def _ti2v(run: Run) -> Endpoint:
    async def generate_ti2v(prompt: str, negative_prompt: str, size: str, frame_num: int, fps: int,
                            sampling_steps: int, shift: float, sample_solver: str, guide_scale: float, seed: int,
                            randomize_seed: bool, request: gr.Request, progress: gr.Progress = gr.Progress(),
                            prompt_fields: dict[str, Any] | None = None, owner: str | None = None,
                            attention: str | None = None, image: str | None = None, loras: str | None = None,
                            preset: str | None = None, cache: str | None = None):
        """Generate a video with Wan 2.2 {task}: {title}.

        Args:
            {form_args}
            guide_scale: classifier-free guidance scale. Default {guide_high}.
            {seed_args}
            image: optional first frame (PNG, JPEG or WebP, at most 25 MB); leave empty for text-to-video.
            {lora_args}

        Returns:
            the mp4
            the seed actually used
            a status line with the time taken and the result id
            the result's permalink (?gen=<id>)
        """
        return await run("ti2v-5B", _form(locals()), request=request, progress=progress, image=image,
                         prompt_fields=prompt_fields, owner=owner)
    return generate_ti2v


# ----------------------------------------------------------------------------- extension
def _check_extend_args(prompt: Any, task: Any, lang: Any, has_image: Any) -> None:
    """The extend_prompt arguments' types and values, with a message naming the argument."""
    if prompt is not None and not isinstance(prompt, str):
        raise user_error(f"prompt: must be text (the short prompt to extend), not {type(prompt).__name__}",
                       title="Invalid input")
    if not (prompt or "").strip():
        raise user_error("prompt: is empty", title="Empty prompt")
    if not isinstance(task, str) or task not in TASK_UI:
        raise user_error(toast(f"task: {task!r} is not one of {', '.join(TASK_UI)}"), title="Invalid input")
    if lang not in ("en", "zh"):
        raise user_error(toast(f"lang: {lang!r} is not one of en, zh"), title="Invalid input")
    if not isinstance(has_image, bool):
        raise user_error(toast(f"has_image: {has_image!r} is not true or false"), title="Invalid input")


def extenders_of(extender: Any) -> dict[str, Any]:
    """The enhancers by kind, the default first: a ``{kind: extender}`` mapping as given, or one extender."""
    if isinstance(extender, Mapping):
        return dict(extender)
    return {getattr(extender, "name", "offline"): extender}


def make_extend_api(extender: Any) -> Callable[..., str]:
    """The extend_prompt endpoint over one extender or a ``{kind: extender}`` mapping (default first)."""
    extenders = extenders_of(extender)
    default = next(iter(extenders))

    def extend_prompt(prompt: str, task: str = "t2v-A14B", lang: str = "en", has_image: bool = False,
                      backend: str | None = None) -> str:
        """Extend a short video prompt into a detailed one in the Wan 2.2 prompt-extension style (subject, scene, motion, light, camera); use the result as the prompt of a generate tool.

        Args:
            prompt: the short prompt to extend, e.g. "a red fox in the snow".
            task: the model the prompt is for: "t2v-A14B" (text-to-video), "i2v-A14B" (image-to-video) or "ti2v-5B" (text or text + image).
            lang: the language of the extended prompt: "en" (English) or "zh" (Chinese). The "offline" enhancer does not translate: it keeps the prompt's own language.
            has_image: true if the video will start from an input image (i2v-A14B, or ti2v-5B with an image); the prompt then describes motion and camera rather than the scene. Default false.
            backend: the prompt enhancer to use, one of {backends} on this server. Default {default}.

        Returns:
            the extended prompt
        """
        try:
            _check_extend_args(prompt, task, lang, has_image)
            if backend is not None and (not isinstance(backend, str) or backend not in extenders):
                raise user_error(toast(f"backend: {backend!r} is not one of {', '.join(extenders)} (this server)"),
                                 title="Invalid input")
        except gr.Error as e:
            log.info("invalid input: extend_prompt: %s", e.message)
            raise
        chosen = extenders[backend or default]
        try:
            result = chosen.extend(prompt, task=task, lang=lang, has_image=has_image)
        except ValueError as e:
            log.info("extend_prompt refused: %s", e)
            raise user_error(toast(f"Prompt extension: {e}"), title="Invalid input") from None
        if not result.ok:
            raise user_error(toast(f"Prompt extension failed ({result.backend}): {result.warning}"),
                           title="Extension failed")
        return str(result.prompt)
    return document(extend_prompt, backends=", ".join(f'"{k}"' for k in extenders), default=f'"{default}"')


# --------------------------------------------------------------------------------- LoRAs
def make_list_loras(library: Any) -> Callable[..., list[str]]:
    """The list_loras endpoint over a ``playground.loras.LoraLibrary`` (the server's LoRA folder)."""

    def list_loras(task: str = "t2v-A14B") -> list[str]:
        """The LoRA files of this server that fit a model: pass them as "name" in the loras parameter of generate_t2v / generate_i2v / generate_ti2v.

        Args:
            task: the model: "t2v-A14B", "i2v-A14B" or "ti2v-5B". Only files whose shapes fit it are listed (an A14B LoRA does not fit TI2V-5B).

        Returns:
            the file names, relative to the server's LoRA folder
        """
        if not isinstance(task, str) or task not in TASK_UI:
            raise user_error(toast(f"task: {task!r} is not one of {', '.join(TASK_UI)}"), title="Invalid input")
        return library.compatible(task)

    return list_loras


# ------------------------------------------------------------------------------ timelines
# The endpoints that run a generation (app.py adds them to the per-session job cap).
TIMELINE_API_RUNS = ("continue_clip",)


class TimelineApi:
    """The continue/timeline API and MCP tools: continue a clip from its last frame (``Studio.continue_request``,
    run like a generate endpoint), export a timeline as one mp4, read, create and extend timelines.

    Through the API a caller has no browser owner: it may change only timelines made through the API
    (owner none); reading and exporting work on any timeline (a timeline's permalink is public too).
    """

    def __init__(self, runner: GenerateRunner, timelines: Any, options: AppOptions) -> None:
        self.runner = runner
        self.studio = runner.studio
        self.timelines = timelines
        self.options = options

    # ------------------------------------------------------------------------------ helpers
    def _timeline(self, timeline_id: Any, owner: str | None = None, *, change: bool = False) -> Any:
        """The timeline, or a ``gr.Error`` saying why not (malformed id, unknown, another owner's)."""
        from playground.history import InvalidIdError, NotOwnerError, UnknownIdError

        try:
            tl = self.timelines.get(str(timeline_id or "").strip())
            if change and tl.owner != owner:
                raise NotOwnerError(f"Timeline {tl.id} was made in a browser, so it cannot be changed through the API.")
            return tl
        except (InvalidIdError, UnknownIdError, NotOwnerError) as e:
            raise user_error(toast(str(e)), title="Unknown timeline" if isinstance(e, UnknownIdError) else "Invalid input") from None

    def _info(self, tl: Any, request: gr.Request | None) -> dict[str, Any]:
        from playground.timeline import UnknownClipError

        clips = []
        for c in tl.clips:
            try:
                entry = self.runner.store.get(c.result_id)
            except KeyError:
                clips.append({"result_id": c.result_id, "overlap": c.overlap, "missing": True})
                continue
            video = entry.settings.get("video") or {}
            clips.append({"result_id": c.result_id, "overlap": c.overlap, "task": entry.task, "prompt": entry.prompt,
                          "seed": entry.settings.get("seed"), "frames": video.get("frames"), "fps": video.get("fps"),
                          "parent": entry.settings.get("parent"), "permalink": permalink(app_url(request), entry.id)})
        try:
            frames = self.timelines.frame_count(tl) if tl.clips else 0
        except UnknownClipError:
            frames = None
        base = permalink(app_url(request), tl.id).replace("?gen=", "?timeline=")
        return {"id": tl.id, "title": tl.title, "created": tl.created, "updated": tl.updated, "clips": clips,
                "frames": frames, "permalink": base}

    # ------------------------------------------------------------------------------ endpoints
    async def continue_clip(self, result_id: str, prompt: str = "", overlap: float = 1, color_match: float = 0.5,
                            seed: float = -1, randomize_seed: bool = True, task: str = "",
                            frame_num: float | None = None, sampling_steps: float | None = None,
                            timeline_id: str = "", video: str | None = None, request: gr.Request = None,  # type: ignore[assignment]
                            progress: gr.Progress = gr.Progress(), owner: str | None = None):
        """Continue a video from its last frame (image-to-video: the clip's last frame is the new clip's first frame); the new clip is colour-matched to it and records it as its parent.

        Args:
            result_id: the id of a result of this server to continue (e.g. 20260101-120000-a1b2c3, from a generate tool's status or permalink); leave empty when you upload video.
            prompt: what happens next; default: the parent's prompt.
            overlap: leading frames of the new clip dropped when clips are joined (1 = the repeated hand-over frame), 0 to frames - 1. Default 1.
            color_match: 0 (off) to 1: how far the new clip's colours (Lab mean and spread) are moved to the parent's last frames, against colour drift along a chain. Default 0.5.
            seed: random seed, 0 to {max_seed} (-1: random); used only when randomize_seed is false.
            randomize_seed: pick a random seed (the seed used is returned). Default true.
            task: "i2v-A14B" or "ti2v-5B"; default: the parent's model (i2v-A14B for a text-to-video parent or an upload made elsewhere).
            frame_num: number of frames, 4n+1; default: the parent's.
            sampling_steps: denoising steps; default: the parent's.
            timeline_id: optional: a timeline made through the API (create_timeline) to append the new clip to.
            video: an mp4 to continue instead of result_id (at most {max_upload}).

        Returns:
            the new clip (mp4)
            the seed actually used
            a status line with the time taken and the result id
            the new clip's permalink (?gen=<id>)
            the new clip's result id (pass it as result_id to continue again, or to timeline_add)
        """
        from playground.history import InvalidIdError, UnknownIdError

        lang = request_lang(request)
        parent = (video or "").strip() if isinstance(video, str) else ""
        rid = (result_id or "").strip() if isinstance(result_id, str) else result_id
        if parent and rid:
            raise user_error("Give either result_id or video, not both.", title="Invalid input")
        values: dict[str, Any] = {"prompt": prompt, "overlap": overlap, "color_match": color_match,
                                  "frame_num": frame_num, "sampling_steps": sampling_steps}
        values["seed"] = -1 if randomize_seed or seed in (None, "") else seed
        tl = self._timeline(timeline_id, owner, change=True) if str(timeline_id or "").strip() else None
        try:
            req = await asyncio.to_thread(self.studio.continue_request, parent or rid, values,
                                          task=(task or "").strip() or None)
        except InputError as e:
            log.info("invalid continuation: %s", e)
            raise input_error(e) from None
        except (InvalidIdError, UnknownIdError) as e:
            raise user_error(toast(str(e)), title="Unknown result") from None
        track = _Progress(progress, lang)
        track.status("run.queued")
        with self.runner.cancels.register(session_of(request), req.task) as cancel:
            try:
                entry = await self.runner._generate(req, track, cancel, owner)
            except RunCancelled:
                raise user_error("Generation cancelled.", title="Cancelled") from None
        if parent and self.options.upload_root:
            discard_upload(parent, self.options.upload_root)
        if tl is not None:
            try:
                self.timelines.append(tl.id, entry.id, owner=owner)
            except Exception as e:  # the clip is stored either way; say why it was not placed
                log.info("continuation %s not added to timeline %s: %s", entry.id, tl.id, e)
                raise user_error(toast(f"The clip {entry.id} was made but not added to timeline {tl.id}: {e}"),
                                 title="Not added") from None
        return (str(entry.video), req.seed, self.runner.done_text(entry, lang), permalink(app_url(request), entry.id),
                entry.id)

    async def export_timeline(self, timeline_id: str, request: gr.Request = None):  # type: ignore[assignment]
        """Export a timeline as one mp4: its clips in order, each clip's overlap frames dropped, at the clips' common fps; the metadata lists the settings of every clip.

        Args:
            timeline_id: the timeline's id (from create_timeline, or the ?timeline=<id> link).

        Returns:
            the mp4
            a status line: clips and frames
        """
        from playground.timeline import ClipMismatchError, EmptyTimelineError, UnknownClipError

        tl = self._timeline(timeline_id)
        try:
            path = await asyncio.to_thread(self.timelines.export, tl.id)
        except EmptyTimelineError as e:
            raise user_error(toast(str(e)), title="Empty timeline") from None
        except (UnknownClipError, ClipMismatchError, InputError) as e:
            raise user_error(toast(str(e)), title="Cannot export") from None
        frames = self.timelines.frame_count(tl)
        log.info("timeline %s exported through the API (%d clips, %d frames)", tl.id, len(tl.clips), frames)
        return str(path), f"{len(tl.clips)} clips, {frames} frames"

    def timeline_info(self, timeline_id: str, request: gr.Request = None) -> dict[str, Any]:  # type: ignore[assignment]
        """A timeline's clips in order (result id, overlap, task, prompt, seed, frames, fps, parent, permalink) and the frame count of its export.

        Args:
            timeline_id: the timeline's id.

        Returns:
            the timeline as JSON
        """
        return self._info(self._timeline(timeline_id), request)

    def create_timeline(self, result_ids: str = "", title: str = "", request: gr.Request = None,  # type: ignore[assignment]
                        owner: str | None = None) -> dict[str, Any]:
        """Create a timeline (an ordered list of clips that exports as one video) from results of this server.

        Args:
            result_ids: the clips' result ids in order, separated by commas or spaces; may be empty.
            title: an optional name.

        Returns:
            the timeline as JSON (its id, clips, frames, permalink)
        """
        from playground.history import InvalidIdError, UnknownIdError

        ids = [x for x in str(result_ids or "").replace(",", " ").split() if x]
        try:
            tl = self.timelines.create(owner, ids, title=str(title or ""))
        except (InvalidIdError, UnknownIdError) as e:
            raise user_error(toast(str(e)), title="Unknown result") from None
        except InputError as e:
            raise input_error(e) from None
        return self._info(tl, request)

    def timeline_add(self, timeline_id: str, result_id: str, overlap: float = -1, request: gr.Request = None,  # type: ignore[assignment]
                     owner: str | None = None) -> dict[str, Any]:
        """Append a result of this server to a timeline made through the API.

        Args:
            timeline_id: the timeline's id.
            result_id: the result to add at the end.
            overlap: its leading frames dropped on export; -1: the overlap recorded with the clip (a continuation's), else 0. Default -1.

        Returns:
            the timeline as JSON
        """
        from playground.history import InvalidIdError, UnknownIdError

        tl = self._timeline(timeline_id, owner, change=True)
        try:
            over = None if overlap in (None, "", -1) else int(overlap) if float(overlap) == int(overlap) else overlap
            tl = self.timelines.append(tl.id, str(result_id or "").strip(), overlap=over, owner=owner)
        except (InvalidIdError, UnknownIdError) as e:
            raise user_error(toast(str(e)), title="Unknown result") from None
        except InputError as e:
            raise input_error(e) from None
        except (TypeError, ValueError):
            raise user_error(f"overlap: must be a whole number; got {overlap!r}", title="Invalid input") from None
        return self._info(tl, request)


def register_timeline_api(runner: GenerateRunner, timelines: Any, options: AppOptions) -> TimelineApi:
    """Adds the timeline endpoints (hidden components + events) to the Blocks being built; returns the API object."""
    from .common import MAX_UPLOAD

    api = TimelineApi(runner, timelines, options)
    document(api.continue_clip.__func__, max_seed=MAX_SEED, max_upload=MAX_UPLOAD.upper())  # type: ignore[attr-defined]
    with gr.Column(visible=False, elem_id="timeline-api"):
        # inputs: an initial value makes the API/MCP parameter optional with that default (as the docstrings say)
        rid, prompt, task, tid = gr.Textbox(""), gr.Textbox(""), gr.Textbox(""), gr.Textbox("")
        overlap, color, seed = gr.Number(1, precision=0), gr.Number(0.5), gr.Number(-1, precision=0)
        frames, steps = gr.Number(None, precision=0), gr.Number(None, precision=0)
        randomize = gr.Checkbox(value=True)
        video = gr.File(file_types=[".mp4"], type="filepath")
        timeline_id, result_id = gr.Textbox(), gr.Textbox()  # required by the timeline endpoints
        add_overlap, ids, title = gr.Number(-1, precision=0), gr.Textbox(""), gr.Textbox("")
        out_video, out_file, out_seed = gr.Video(), gr.File(), gr.Number()
        out_status, out_link, out_id = gr.Textbox(), gr.Textbox(), gr.Textbox()
        info = gr.JSON()
        buttons = [gr.Button() for _ in range(5)]
    buttons[0].click(api.continue_clip, inputs=[rid, prompt, overlap, color, seed, randomize, task, frames, steps, tid,
                                               video], outputs=[out_video, out_seed, out_status, out_link, out_id],
                     api_name="continue_clip", concurrency_id="gpu", concurrency_limit=1)
    buttons[1].click(api.export_timeline, inputs=[timeline_id], outputs=[out_file, out_status],
                     api_name="export_timeline", concurrency_id="export", concurrency_limit=1)
    buttons[2].click(api.timeline_info, inputs=[timeline_id], outputs=[info], api_name="timeline_info", queue=False)
    buttons[3].click(api.create_timeline, inputs=[ids, title], outputs=[info], api_name="create_timeline", queue=False)
    buttons[4].click(api.timeline_add, inputs=[timeline_id, result_id, add_overlap], outputs=[info],
                     api_name="timeline_add", queue=False)
    return api
