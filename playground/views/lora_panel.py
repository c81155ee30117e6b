"""The LoRA panel of a task tab, and its Fast (Lightning) preset buttons.

* An accordion "LoRAs" in the settings column: up to ``MAX_ROWS`` rows of (file, strength sliders),
  the files being those of the server's LoRA folder whose shapes fit the tab's model
  (``playground.loras.LoraLibrary``). A14B tabs have a HIGH (high-noise expert) and a LOW (low-noise
  expert) slider per row, the 5B tab one. A refresh button re-reads the folder; "Add from the Hub"
  downloads a file into it (only on a server started with ``--download``).
* On the A14B tabs, *Fast (4-step)* and *Fast + motion (3-phase)*: the preset's steps, solver and shift
  go into the form, its phases and schedule into a hidden state, its Lightning LoRA pair into the rows
  (``playground.speed.preset_values``); a note says what is on and how to go back (Draft / Official
  quality clear it).

The rows, the state and the note are request values (``take``: ``loras``, ``phases``, ``schedule``),
so they are stored with each result and restored by its permalink and by *Load settings from video*
(``restore_updates``; a LoRA file that is missing here is named in the notice and left out).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from playground.i18n import tr
from playground.loras import LoraLibrary, safe_name
from playground.request import InputError, error_text
from playground.speed import PresetError, _data as _preset_data, preset_values, speed_presets
from wan.configs import LIMITS, ModelSpec
from wan.request import RequestPolicy, check_fields

from .common import AppOptions, request_lang, t, user_error
from .safe import md

__all__ = ["MAX_ROWS", "LoraPanel", "default_strength"]

log = logging.getLogger("wan.app")

MAX_ROWS = 4
_NONE = ""  # the dropdown value of an empty row
_HIGH_RE = re.compile(r"(^|[^a-z])(high|hn)([^a-z]|$)")
_LOW_RE = re.compile(r"(^|[^a-z])(low|ln)([^a-z]|$)")


def default_strength(name: str, experts: tuple[str, ...]) -> dict[str, float]:
    """Slider values for a newly picked file: on A14B a file named like the HIGH half of a pair goes to the
    high-noise expert only (and LOW to the low-noise one); anything else at 1 everywhere."""
    stem = Path(name or "").name.lower()
    values = {e: 1.0 for e in experts}
    if set(experts) == {"high_noise", "low_noise"}:
        high, low = bool(_HIGH_RE.search(stem)), bool(_LOW_RE.search(stem))
        if high and not low:
            values["low_noise"] = 0.0
        elif low and not high:
            values["high_noise"] = 0.0
    return values


class LoraPanel:
    """The LoRA rows, the Fast buttons and the hidden speed-preset state of one task tab."""

    def __init__(self, task: str, spec: ModelSpec, library: LoraLibrary, options: AppOptions) -> None:
        self.task, self.spec, self.library, self.options = task, spec, library, options
        self.experts: tuple[str, ...] = tuple(spec.experts)
        self.presets = speed_presets(task)  # {} on TI2V-5B
        self.files: list[Any] = []
        self.sliders: list[dict[str, Any]] = []  # per row: expert -> slider
        self.rows: list[Any] = []
        self._form: dict[str, Any] = {}

    # ------------------------------------------------------------------------------ build
    def build_fast(self) -> LoraPanel:
        """The Fast buttons (A14B tabs) and their note, under the Draft / Official quality row; the state."""
        self.speed = gr.State(None)  # {"phases": [...], "schedule": "lightning", "preset": name} or None
        self.fast_btns: dict[str, Any] = {}
        if self.presets:
            with gr.Row(elem_classes=["fast-row"]):
                for name in self.presets:
                    key = "lora.fast_4step" if name == "lightning-4step" else "lora.fast_3phase"
                    self.fast_btns[name] = gr.Button(t(key), size="sm", variant="secondary",
                                                     elem_classes=["fast-preset", f"fast-{name}"])
        self.fast_note = gr.Markdown(visible=False, elem_classes=["fast-note"])
        return self

    def build(self) -> LoraPanel:
        """The "LoRAs" accordion (in the settings column)."""
        choices = self._choices(self.library.compatible(self.task))
        lim = LIMITS.lora_strength
        with gr.Accordion(t("lora.section"), open=False, elem_classes=["loras"]) as self.accordion:
            gr.Markdown(t("lora.info_moe" if self.spec.moe else "lora.info_dense"), elem_classes=["lora-info"])
            for i in range(MAX_ROWS):
                # a row: the file on its own line (long names stay readable), its strengths under it
                with gr.Column(visible=i == 0, variant="panel", elem_classes=["lora-row", f"lora-row-{i}"]) as row:
                    self.files.append(gr.Dropdown(choices, value=_NONE, label=f"LoRA {i + 1}",
                                                  elem_classes=["lora-file"]))
                    sliders = {}
                    with gr.Row(equal_height=True):
                        for expert in self.experts:
                            key = {"high_noise": "lora.high", "low_noise": "lora.low"}.get(expert, "lora.strength")
                            cls = {"high_noise": "lora-high", "low_noise": "lora-low"}.get(expert, "lora-strength")
                            sliders[expert] = gr.Slider(lim.lo, lim.hi, value=1.0, step=lim.step, label=t(key),
                                                        min_width=160, elem_classes=[cls])
                    self.sliders.append(sliders)
                self.rows.append(row)
            with gr.Row(equal_height=True):
                self.refresh_btn = gr.Button(t("lora.refresh"), size="sm", variant="secondary", scale=0,
                                             min_width=120, elem_classes=["lora-refresh"])
                self.note = gr.Markdown(self._listing_note("en"), elem_classes=["lora-note"])
            self._build_hub()
        return self

    def _build_hub(self) -> None:
        with gr.Accordion(t("lora.hub"), open=False, elem_classes=["lora-hub"]):
            if self.hub_allowed:
                with gr.Row(equal_height=True):
                    self.hub_repo = gr.Textbox(label=t("lora.hub_repo"), placeholder="lightx2v/Wan2.2-Lightning",
                                               max_lines=1, scale=2, elem_classes=["lora-hub-repo"])
                    self.hub_file = gr.Textbox(label=t("lora.hub_file"), max_lines=1, scale=3,
                                               placeholder="Wan2.2-T2V-A14B-4steps-lora-rank64-Seko-V1.1/high_noise_model.safetensors",
                                               elem_classes=["lora-hub-file"])
                self.hub_btn = gr.Button(t("lora.hub_download"), size="sm", variant="secondary",
                                         elem_classes=["lora-hub-download"])
                self.hub_status = gr.Markdown(elem_classes=["lora-hub-status"])
            else:
                key = "lora.hub_public" if self.options.public else "lora.hub_off"
                self.hub_status = gr.Markdown(t(key), elem_classes=["lora-hub-status"])

    @property
    def hub_allowed(self) -> bool:
        return self.options.allow_download and not self.options.public

    # ------------------------------------------------------------------------- components
    @property
    def row_components(self) -> list[Any]:
        """Every row's file dropdown and sliders, row by row (the flat order of ``_entries``)."""
        out: list[Any] = []
        for files, sliders in zip(self.files, self.sliders, strict=True):
            out += [files, *sliders.values()]
        return out

    def inputs(self) -> dict[str, Any]:
        """The request-value components, by keyword (for ``inputs_kwargs``; ``take`` reads them back)."""
        out: dict[str, Any] = {"lora_speed": self.speed}
        for i, (files, sliders) in enumerate(zip(self.files, self.sliders, strict=True)):
            out[f"lora_{i}_file"] = files
            out.update({f"lora_{i}_{expert}": s for expert, s in sliders.items()})
        return out

    def restorable(self) -> list[Any]:
        return [*self.row_components, *self.rows, self.speed, self.fast_note, self.accordion]

    # ---------------------------------------------------------------------------- values
    def take(self, values: dict[str, Any]) -> dict[str, Any]:
        """Pop the panel's keyword values out of ``values`` and add the request values ``loras``
        (rows with a file), ``phases`` and ``schedule`` (the Fast preset, when on)."""
        speed = values.pop("lora_speed", None)
        flat: list[Any] = []
        for i in range(MAX_ROWS):
            flat.append(values.pop(f"lora_{i}_file", None))
            flat += [values.pop(f"lora_{i}_{e}", None) for e in self.experts]
        loras = self._entries(flat)
        if loras:
            values["loras"] = loras
        if isinstance(speed, Mapping):
            if speed.get("phases"):
                values["phases"] = list(speed["phases"])
            if speed.get("schedule"):
                values["schedule"] = speed["schedule"]
        return values

    def _entries(self, flat: list[Any]) -> list[dict[str, Any]]:
        """Row values (file, slider, ...) -> ``[{"name", "strength"}]`` for the rows with a file."""
        n = 1 + len(self.experts)
        out = []
        for i in range(0, len(flat), n):
            name, strengths = flat[i], flat[i + 1 : i + n]
            if not name:
                continue
            vals = {e: (float(v) if isinstance(v, (int, float)) else 1.0) for e, v in zip(self.experts, strengths, strict=True)}
            out.append({"name": name, "strength": vals if self.spec.moe else vals["dense"]})
        return out

    def _strengths(self, strength: Any) -> dict[str, float]:
        if isinstance(strength, Mapping):
            return {e: float(strength.get(e, 0.0)) for e in self.experts}
        try:
            return {e: float(strength) for e in self.experts}
        except (TypeError, ValueError):
            return {e: 1.0 for e in self.experts}

    def _choices(self, names: list[str]) -> list[tuple[Any, str]]:
        return [(t("lora.none"), _NONE), *((n, n) for n in names)]

    def rows_updates(self, entries: list[dict[str, Any]], choices: list[str] | None = None) -> dict[Any, Any]:
        """Updates that show ``entries`` (``{"name", "strength"}``) in the rows, in order; the rest empty."""
        names = choices if choices is not None else self.library.compatible(self.task)
        names = [*names, *(e["name"] for e in entries if e["name"] not in names)]
        updates: dict[Any, Any] = {}
        shown = min(MAX_ROWS, max(1, len(entries) + 1))
        for i in range(MAX_ROWS):
            entry = entries[i] if i < len(entries) else None
            updates[self.files[i]] = gr.Dropdown(choices=self._choices(names), value=entry["name"] if entry else _NONE)
            strengths = self._strengths(entry["strength"]) if entry else {e: 1.0 for e in self.experts}
            for expert, slider in self.sliders[i].items():
                updates[slider] = strengths[expert]
            updates[self.rows[i]] = gr.Column(visible=i < shown)
        return updates

    def _listing_note(self, lang: str) -> str:
        fitting = self.library.compatible(self.task)
        total = len(self.library.names())
        folder = self.library.root.name + "/"  # the folder's name only: no server path on the page
        if not total:
            return md(tr("lora.empty", lang, folder=folder))
        return md(tr("lora.listed", lang, count=len(fitting), total=total) + " · " + tr("lora.folder", lang, folder=folder))

    # ---------------------------------------------------------------------------- wiring
    def wire(self, form: dict[str, Any], quality: Any) -> None:
        self._form = form
        private = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
        for i, files in enumerate(self.files):
            files.input(self._picked(i), inputs=self.files, outputs=[*self.sliders[i].values(), *self.rows], **private)
        self.refresh_btn.click(self.refresh, inputs=self.files, outputs=[*self.files, self.note], **private)
        if self.hub_allowed:
            self.hub_btn.click(self.hub_download, inputs=[self.hub_repo, self.hub_file, *self.row_components],
                               outputs=[self.hub_status, self.note, *self.row_components, *self.rows],
                               concurrency_id="lora-hub", api_visibility="private", show_progress_on=[self.hub_status])
        fast_outputs = [form["sampling_steps"], form["sample_solver"], form["shift"], self.speed, self.fast_note,
                        *self.row_components, *self.rows, self.accordion]
        for name, btn in self.fast_btns.items():
            # with --download a click may fetch the Lightning pair (minutes): then it waits in the queue
            btn.click(self._fast(name), inputs=self.row_components, outputs=fast_outputs,
                      queue=self.options.allow_download, show_progress="minimal", api_visibility="private")
        for btn in (quality.draft_btn, quality.official_btn):
            btn.click(self.clear_fast, inputs=self.row_components,
                      outputs=[self.speed, self.fast_note, *self.row_components, *self.rows], **private)

    # --------------------------------------------------------------------------- handlers
    def _picked(self, index: int) -> Any:
        def picked(*names: str) -> tuple[Any, ...]:
            """A file picked in row ``index``: its default strengths; the next empty row appears."""
            name = names[index]
            strengths = default_strength(name, self.experts) if name else {e: 1.0 for e in self.experts}
            filled = [i for i, n in enumerate(names) if n]
            shown = min(MAX_ROWS, max(1, (max(filled) + 2) if filled else 1))
            return (*(strengths[e] for e in self.experts), *(gr.Column(visible=i < shown) for i in range(MAX_ROWS)))
        return picked

    def refresh(self, request: gr.Request, *names: str) -> tuple[Any, ...]:
        """Re-read the folder; a row whose file is gone (or no longer fits) keeps it (Generate names it)."""
        fitting = self.library.compatible(self.task)
        updates = []
        for name in names:
            extra = [name] if name and name not in fitting else []
            updates.append(gr.Dropdown(choices=self._choices([*fitting, *extra])))
        return (*updates, self._listing_note(request_lang(request)))

    def hub_download(self, request: gr.Request, progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008
                     *args: Any) -> dict[Any, Any]:
        """Download a file into the LoRA folder (``args``: repo, file, then the rows); it fills the first
        empty row when it fits this model."""
        repo, filename, *flat = args
        lang = request_lang(request)
        if not self.hub_allowed:
            raise user_error(tr("lora.hub_off", lang), title=tr("error.download_off", lang))
        try:
            name = self.library.download(repo, filename, progress=lambda msg: progress(0, desc=msg))
        except InputError as e:
            return {self.hub_status: f"⚠ {md(error_text(e))}"}
        fits = self.library.fits(name, self.task)
        if fits is not True:
            return {self.hub_status: f"⚠ {md(tr('lora.hub_no_fit', lang, name=name, reason=fits))}",
                    self.note: self._listing_note(lang)}
        entries = [e for e in self._entries(list(flat)) if e["name"] != name]
        if len(entries) < MAX_ROWS:
            entries.append({"name": name, "strength": default_strength(name, self.experts) if self.spec.moe else 1.0})
        updates = self.rows_updates(entries)
        updates[self.hub_status] = f"✓ {md(tr('lora.hub_done', lang, name=name))}"
        updates[self.note] = self._listing_note(lang)
        return updates

    def _lightning_names(self) -> set[str]:
        return {f["file"] for f in _preset_data()["loras"].get(self.task, [])}

    def _fast(self, name: str) -> Any:
        def fast(request: gr.Request, progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008
                 *flat: Any) -> dict[Any, Any]:
            return self.apply_fast(name, list(flat), request_lang(request),
                                   progress=lambda msg: progress(0, desc=msg))
        return fast

    def apply_fast(self, name: str, flat: list[Any], lang: str, progress: Any = None) -> dict[Any, Any]:
        """Fill the form from speed preset ``name``: steps / solver / shift, the hidden phases + schedule,
        the Lightning rows (other rows kept while there is room) and the note; or say which files are
        missing and how to get them (nothing changes then)."""
        try:
            values = preset_values(name, self.task, lora_dir=self.library.root, download=self.hub_allowed,
                                   progress=progress)
        except PresetError as e:
            log.info("fast preset %s (%s): %s", name, self.task, e)
            text = str(e) if not self.options.public else tr("lora.fast_missing_public", lang)
            return {self.fast_note: gr.Markdown(f"⚠ {md(tr('lora.fast_missing', lang, message=text))}", visible=True)}
        lightning = self._lightning_names()
        kept = [e for e in self._entries(flat) if e["name"] not in lightning]
        entries = [*values["loras"], *kept][:MAX_ROWS]
        phases = values.get("phases") or []
        speed = {"preset": name, "phases": phases, "schedule": values.get("schedule", "official")}
        updates = self.rows_updates(entries)
        updates.update({
            self.speed: speed,
            self.fast_note: gr.Markdown(self.fast_text(speed, values["sampling_steps"], lang), visible=True),
            self.accordion: gr.Accordion(open=True),
        })
        # the form fields the preset sets (the guidance sliders are not used while phases are on)
        return {**updates, **self._form_updates(values)}

    def _form_updates(self, values: Mapping[str, Any]) -> dict[Any, Any]:
        return {self._form[k]: values[k] for k in ("sampling_steps", "sample_solver", "shift")
                if k in values and k in self._form}

    @staticmethod
    def fast_text(speed: Mapping[str, Any], steps: Any, lang: str) -> str:
        """The note while a speed preset is on: steps, CFG off, and how to go back."""
        phases = speed.get("phases") or []
        cfg_phases = [p for p in phases if float(p.get("guide_scale", 1.0)) != 1.0]
        key = "lora.fast_note_motion" if cfg_phases else "lora.fast_note"
        return f"⚡ {md(tr(key, lang, steps=steps, phases=len(phases)))}"

    def clear_fast(self, *flat: Any) -> dict[Any, Any]:
        """Draft / Official quality: the speed preset is off (phases, schedule, its Lightning rows)."""
        lightning = self._lightning_names()
        entries = [e for e in self._entries(list(flat)) if e["name"] not in lightning]
        updates = self.rows_updates(entries)
        updates.update({self.speed: None, self.fast_note: gr.Markdown("", visible=False)})
        return updates

    # ---------------------------------------------------------------------------- restore
    def restore_updates(self, settings: Mapping[str, Any], values: Mapping[str, Any], problems: list[str],
                        lang: str = "en") -> dict[Any, Any]:
        """The rows from the stored LoRAs (each checked here: in the folder, the recorded file, fits this
        model; otherwise named in ``problems`` and left out) and the speed preset from phases/schedule."""
        entries: list[dict[str, Any]] = []
        raw = settings.get("loras")
        policy = RequestPolicy(any_size=True, lora_dir=self.library.root)
        for item in raw if isinstance(raw, list) else []:
            name = item.get("name") if isinstance(item, Mapping) else item if isinstance(item, str) else None
            if not isinstance(name, str) or not name:
                continue
            shown = str(name)[:80]
            if self.library.path_of(name) is None:
                problems.append(tr("lora.restore_missing", lang, name=shown))
                continue
            entry = {k: item[k] for k in ("name", "strength", "sha256") if isinstance(item, Mapping) and k in item}
            entry.setdefault("name", name)
            _, bad = check_fields(self.task, {"loras": [entry]}, policy)
            fits = self.library.fits(name, self.task)
            if bad or fits is not True:
                reason = error_text(bad[0]) if bad else str(fits)
                problems.append(tr("lora.restore_bad", lang, name=shown, reason=reason))
                continue
            if len(entries) < MAX_ROWS:
                entries.append({"name": safe_name(name) or name, "strength": entry.get("strength", 1.0)})
            else:
                problems.append(tr("lora.restore_too_many", lang, name=shown, rows=MAX_ROWS))
        updates = self.rows_updates(entries)
        if entries:
            updates[self.accordion] = gr.Accordion(open=True)
        phases, schedule = values.get("phases"), values.get("schedule")
        if phases or schedule == "lightning":
            speed = {"preset": None, "phases": list(phases or []), "schedule": schedule or "official"}
            updates[self.speed] = speed
            steps = values.get("sampling_steps", sum(int(p.get("steps", 0)) for p in phases or []))
            updates[self.fast_note] = gr.Markdown(self.fast_text(speed, steps, lang), visible=True)
        else:
            updates[self.speed] = None
            updates[self.fast_note] = gr.Markdown("", visible=False)
        return updates

