#!/usr/bin/env python
"""Wan 2.2 Playground — the Gradio app. A thin shell: UI and event wiring only.

    python app.py [--demo] [--ckpt-dir DIR] [--host 127.0.0.1] [--port 7860] [--share] [--mcp]
                  [--outputs DIR] [--download] [--queue-size N] [--jobs-per-session N] [--public]
                  [--extender offline|openai|local] [--lora-dir DIR]

The models live in ``playground.engine.Engine`` (lazy, one task resident); validation, the history
store and share links live in ``playground``. ``--demo`` runs the whole flow on CPU with tiny random
weights (the videos are noise). Importing this module loads no model and does not import torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from playground.zerogpu import on_zero_gpu

if on_zero_gpu():  # ZeroGPU needs `spaces` imported before anything initialises CUDA
    import spaces  # noqa: F401

import gradio as gr

from playground import assistant
from playground.engine import Engine
from playground.history import HistoryStore
from playground.i18n import LANGS, STRINGS
from playground.loras import LoraLibrary, task_dit_config
from playground.studio import TASK_UI, Studio
from playground.timeline import TimelineStore
from playground.views import AppOptions, CancelRegistry, HistoryView, SessionJobCap, TaskView
from playground.views.common import MAX_UPLOAD, t
from playground.views.endpoints import (
    TIMELINE_API_RUNS, GenerateRunner, extenders_of, make_extend_api, make_generate_endpoints, make_list_loras,
    register_timeline_api,
)
from playground.views.history_view import HISTORY_TAB
from playground.views.timeline_view import RUN_API_NAMES as TIMELINE_RUNS, TIMELINE_TAB, TimelineView
from playground.views.task_tab import TAB_KEYS, estimate_text
from playground.views.weights_view import MemoryPanel
from prompting.extension import PromptExtender

log = logging.getLogger("wan.app")

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
JOBS_PER_SESSION = 2           # generation jobs one session may have queued or running
DELETE_CACHE = (600, 3600)     # every 10 min, delete uploads and cached files older than 1 h

# Colours checked for WCAG AA (4.5:1 for text) in both themes (tests/test_browser_page.py measures them
# from the rendered page): primary buttons and the active tab on violet-600/-300, Cancel on red-700,
# small labels and info text on slate-600 (light) / slate-400 (dark).
THEME = gr.themes.Default(primary_hue="violet", secondary_hue="sky", neutral_hue="slate", radius_size="md").set(
    body_text_color_subdued="*neutral_600",
    body_text_color_subdued_dark="*neutral_400",
    color_accent="*primary_600",
    button_primary_background_fill="*primary_600",
    button_primary_background_fill_hover="*primary_700",
    button_primary_background_fill_dark="*primary_600",
    button_primary_background_fill_hover_dark="*primary_700",
    button_cancel_background_fill="#b91c1c",
    button_cancel_background_fill_hover="#991b1b",
    button_cancel_background_fill_dark="#b91c1c",
    button_cancel_background_fill_hover_dark="#991b1b",
)
# Runs once in the browser: dark by default (`?__theme=light` keeps Gradio's light theme); Ctrl/Cmd+Enter
# in a prompt box generates; Tab out of an open dropdown closes it; text boxes whose <label> also holds a
# copy button get an accessible name; on small screens the prompt assistant starts collapsed and Generate
# brings the result and its progress into view.
APP_JS = """
() => {
  const params = new URLSearchParams(window.location.search);
  if (params.get('__theme') !== 'light') { document.body.classList.add('dark'); }
  const small = () => window.matchMedia('(max-width: 768px)').matches;
  const panelOf = (el) => el.closest('[role=tabpanel], .tabitem') || document;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (!(t instanceof Element)) return;
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && t.closest('.prompt')) {
      const btn = panelOf(t).querySelector('button.generate');
      if (btn && !btn.disabled) { e.preventDefault(); btn.click(); }
    } else if (e.key === 'Tab' && t.getAttribute('role') === 'combobox') {
      // Gradio's dropdown handles keys after a tick and reopens its list for any key but Escape, after the
      // blur closed it: keep Tab from it (focus still moves; the blur closes the list)
      e.stopPropagation();
    }
  }, true);
  document.addEventListener('click', (e) => {
    const btn = e.target instanceof Element && e.target.closest('button.generate');
    if (!btn || !small()) return;
    const out = panelOf(btn).querySelector('.outputs');
    if (!out) return;
    setTimeout(() => {
      const r = out.getBoundingClientRect();
      if (r.top < 0 || r.top > window.innerHeight * 0.6) out.scrollIntoView({behavior: 'smooth', block: 'start'});
    }, 60);
  }, true);
  const nameBoxes = () => {
    for (const box of document.querySelectorAll('.block textarea, .block input[type=text], .block input:not([type])')) {
      if (box.getAttribute('aria-label') || (box.labels && box.labels.length)) continue;
      const info = box.closest('.block')?.querySelector('[data-testid=block-info]');
      if (info && info.textContent.trim()) box.setAttribute('aria-label', info.textContent.trim());
    }
  };
  let collapsed = !small();
  const onChange = () => {
    nameBoxes();
    if (!collapsed) {
      const heads = document.querySelectorAll('.assistant > button.label-wrap.open, .assistant > .label-wrap.open');
      if (heads.length) { heads.forEach((h) => h.click()); collapsed = true; }
    }
  };
  new MutationObserver(onChange).observe(document.body, {childList: true, subtree: true});
  onChange();
}
"""
DARK_BY_DEFAULT_JS = APP_JS  # the old name


# ------------------------------------------------------------------------------------ i18n
def build_i18n() -> gr.I18n:
    """UI strings (en/ko/zh) plus the prompt vocabulary's group and term labels."""
    tables = {lang: dict(STRINGS[lang]) for lang in LANGS}
    for lang, extra in assistant.vocab_translations().items():
        tables[lang].update(extra)
    return gr.I18n(**tables)


_estimate_text = estimate_text  # the info line under Generate (kept under its old name for callers)


# ----------------------------------------------------------------------------- the factory
def create_demo(
    engine: Engine,
    store: HistoryStore,
    *,
    extender: PromptExtender | Mapping[str, PromptExtender] | None = None,
    any_size: bool | None = None,
    options: AppOptions | None = None,
) -> gr.Blocks:
    """Build the Blocks app over ``engine`` (models) and ``store`` (history on disk).

    Composition only: a ``TaskView`` per task tab, a ``TimelineView`` (clips continued from each other, one
    mp4; ``/?timeline=<id>``) and a ``HistoryView``; the views own their components and handlers,
    ``endpoints`` the documented API functions.
    """
    any_size = engine.demo if any_size is None else any_size
    options = options or AppOptions(demo=engine.demo, any_size=any_size, allow_download=engine.allow_download)
    options = replace(options, demo=engine.demo, any_size=any_size)
    if extender is None:
        import prompting

        extender = prompting.make_extender("offline")
    extenders = extenders_of(extender)  # {kind: extender}, the default first: every one is offered in the UI
    lora_dir = Path(options.lora_dir) if options.lora_dir else default_lora_dir(engine)
    options = replace(options, lora_dir=str(lora_dir))
    if engine.demo:  # tiny random LoRAs (several formats, the Lightning pairs) so the panel is real
        from playground.discovery import ensure_demo_loras

        ensure_demo_loras(lora_dir)
    log.info("LoRA folder: %s", lora_dir.resolve())  # the page names the folder only, never the server path
    studio = Studio(engine, store, any_size=any_size, lora_dir=lora_dir)
    library = LoraLibrary(lora_dir, lambda task: task_dit_config(engine, task))
    cancels = CancelRegistry()
    views = {task: TaskView(task, engine, store, cancels, options) for task in TASK_UI}
    for view in views.values():
        view.extenders = extenders
        view.library = library
    history = HistoryView(studio, store, views, options)
    timelines = TimelineStore(store)
    timeline = TimelineView(studio, store, timelines, views, cancels, options)

    with gr.Blocks(title="Wan 2.2 Playground", fill_width=True, delete_cache=DELETE_CACHE) as demo:
        notice = _build_header(engine.demo)
        memory = MemoryPanel(engine, options).build()  # app-wide: one engine serves every tab
        # "wrap": on a phone every tab stays visible (the default "menu" hides three of four behind "...")
        with gr.Tabs(selected=TASK_UI[next(iter(TASK_UI))].tab_id, elem_id="tabs", overflow_behavior="wrap") as tabs:
            for task, view in views.items():
                with gr.Tab(t(TAB_KEYS[task]), id=view.ui.tab_id, elem_id=view.ui.tab_id):
                    view.build()
            with gr.Tab(t("tab.timeline"), id=TIMELINE_TAB, elem_id=TIMELINE_TAB):
                timeline.build()
            with gr.Tab(t("tab.history"), id=HISTORY_TAB, elem_id=HISTORY_TAB):
                history.build()
        history.set_page(tabs, notice)
        timeline.set_page(tabs, notice, history.owner)

        run = GenerateRunner(studio, store, cancels, options)
        endpoints = make_generate_endpoints(run, {task: v.spec for task, v in views.items()}, demo=engine.demo,
                                            download=options.allow_download)
        for task, view in views.items():
            view.wire(demo, endpoints[task], owner=history.owner, extender=extenders, on_result=history.on_result)
        history.wire(demo)
        memory.wire(demo)
        register_timeline_api(run, timelines, options)  # continue_clip, export_timeline, timeline_* (API/MCP)
        timeline.wire(demo, history)  # after the task tabs: its runs use their runner
        # the offline extender is a quick CPU rewrite: no queue; an LLM backend waits in its own line
        gr.api(make_extend_api(extenders), api_name="extend_prompt",
               queue=set(extenders) != {"offline"}, concurrency_id="llm")
        gr.api(make_list_loras(library), api_name="list_loras", queue=False)  # a folder listing (cached fits)
    return demo


def default_lora_dir(engine: Engine) -> Path:
    """``<demo-dir>/loras`` in the demo, else ``loras/`` next to app.py."""
    return engine.demo_root / "loras" if engine.demo else ROOT / "loras"


def _build_header(demo_mode: bool) -> gr.Markdown:
    """Title, subtitle, the demo badge; returns the (hidden) notice that links and restores write."""
    with gr.Row(elem_classes=["header"]):
        gr.Markdown("# " + t("app.title"), elem_classes=["title"])
    gr.Markdown(t("app.subtitle"), elem_classes=["subtitle"])
    if demo_mode:
        gr.Markdown(t("app.demo_badge"), elem_classes=["demo-badge"], elem_id="demo-badge")
    return gr.Markdown(visible=False, elem_classes=["notice"], elem_id="notice")


def configure_queue(demo: gr.Blocks, *, max_size: int, per_session: int = JOBS_PER_SESSION) -> gr.Blocks:
    """One GPU line of ``max_size`` jobs, at most ``per_session`` generation jobs of one session."""
    demo.queue(max_size=max_size, default_concurrency_limit=1)
    api_names = [ui.api_name for ui in TASK_UI.values()] + list(TIMELINE_RUNS) + list(TIMELINE_API_RUNS)
    SessionJobCap(api_names, limit=per_session, shared_limit=max(per_session, max_size // 2)).install(demo)
    return demo


# ----------------------------------------------------------------------------- launch
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Wan 2.2 Playground (Gradio).")
    p.add_argument("--demo", action="store_true", help="tiny random weights: the whole UI on CPU in seconds (videos are noise)")
    p.add_argument("--ckpt-dir", type=Path, default=None, help="checkpoint folder (else WAN_CKPT_DIR, else the Hugging Face cache)")
    p.add_argument("--download", action="store_true", help="download missing weights from the Hugging Face Hub on first use")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="create a public *.gradio.live link")
    p.add_argument("--mcp", action="store_true", help="also serve the API as an MCP server (needs gradio[mcp])")
    p.add_argument("--outputs", type=Path, default=ROOT / "outputs", help="history folder (mp4 + settings JSON)")
    p.add_argument("--demo-dir", type=Path, default=ROOT / ".demo_ckpt", help="where --demo writes its tiny weights")
    p.add_argument("--lora-dir", type=Path, default=ROOT / "loras",
                   help="the LoRA folder: the LoRA panel lists the files here that fit each tab's model, and requests "
                        "name LoRAs by their path inside it (in --demo: <demo-dir>/loras, with tiny demo LoRAs)")
    p.add_argument("--queue-size", type=int, default=16, help="maximum number of queued generations")
    p.add_argument("--jobs-per-session", type=int, default=JOBS_PER_SESSION,
                   help="generation jobs one browser session or API client may have queued or running")
    p.add_argument("--public", action=argparse.BooleanOptionalAction, default=bool(os.environ.get("SPACE_ID")),
                   help="a server anyone can reach (default on a Hugging Face Space): History shows each visitor "
                        "only their own results, no server paths on the page")
    p.add_argument("--any-size", action="store_true", help="allow any W*H that is a multiple of the model stride")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    p.add_argument("--offload", nargs="?", const="expert", default=None, type=_offload_profile,
                   metavar="{none,expert,block}",
                   help="memory profile: none (all weights on the GPU), expert (one A14B expert at a time; the "
                        "default on CUDA), block (DiT blocks streamed from pinned RAM, VAE on the GPU only to "
                        "decode: the least VRAM). Bare --offload = expert, --no-offload = none (the old flags)")
    p.add_argument("--no-offload", dest="offload", action="store_const", const="none", help=argparse.SUPPRESS)
    p.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="run each job across N GPUs (Ulysses sequence parallel, or CFG-parallel x Ulysses when N "
                        "does not divide the heads); the app spawns the N worker ranks itself. On CPU (--demo): "
                        "N gloo ranks. Not on ZeroGPU (one GPU per call)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the DiT block (inductor): faster steps after a one-time compile per size; "
                        "not with --offload block")
    p.add_argument("--quantize", default=None, choices=["fp8"],
                   help="fp8 weights for the DiT's block linears and the text encoder (about half the VRAM of bf16)")
    p.add_argument("--extender", default="offline", choices=["offline", "openai", "local"],
                   help="the default prompt enhancer of 'Extend with LLM'; every configured one (offline always, "
                        "openai with --extender-url or WAN_PROMPT_API_BASE/keys, local with a model) can be picked in the UI")
    p.add_argument("--extender-model", default=None, help="model name for the openai / local extender")
    p.add_argument("--extender-url", default=None, help="base URL of an OpenAI-compatible endpoint")
    return p.parse_args(argv)


def _offload_profile(text: str) -> str:
    """``--offload`` value: a profile name (or the old true/false) -> none / expert / block."""
    from wan.offload import resolve_profile  # torch is imported by the engine anyway

    try:
        return resolve_profile(text, "cpu")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def make_extenders(args: argparse.Namespace) -> dict[str, PromptExtender]:
    """Every configured prompt enhancer ({kind: extender}), ``--extender``'s first (the default)."""
    import prompting

    config = prompting.ExtenderConfig.from_flags(args.extender, args.extender_model, args.extender_url)
    return prompting.make_extenders(config)


def make_extender(args: argparse.Namespace) -> PromptExtender:
    import prompting

    options: dict[str, Any] = {}
    if args.extender_model:
        options["model"] = args.extender_model
    if args.extender_url:
        options["base_url"] = args.extender_url
    return prompting.make_extender(args.extender, **options)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.mcp:
        try:
            import mcp  # noqa: F401
        except ImportError as e:
            sys.exit(f"--mcp needs the MCP extra ({e}): pip install -r requirements.txt (or pip install 'gradio[mcp]')")
        # The generate tools take the prompt assistant's fields from a gr.State; over MCP it stays None
        # (no assistant fields are stored with the result), which is what we want: no warning for it.
        warnings.filterwarnings("ignore", message="This MCP server includes a tool that has a gr.State input")
    if args.compile and args.offload == "block":
        sys.exit("--compile cannot be combined with --offload block (its per-layer hooks stream the weights); "
                 "use --offload expert or none")  # fmt: skip
    engine_args = dict(
        ckpt_dir=args.ckpt_dir, demo=args.demo, demo_root=args.demo_dir, device=args.device,
        dtype=args.dtype, offload=args.offload, allow_download=args.download, quantize=args.quantize,
        compile=args.compile,
    )
    if args.gpus < 1:
        sys.exit(f"--gpus must be >= 1; got {args.gpus}")
    if args.gpus > 1:
        if on_zero_gpu():
            sys.exit("--gpus N is for a local multi-GPU server; on ZeroGPU each call gets one GPU (drop --gpus)")
        from playground.multigpu import GroupEngine

        try:
            engine: Engine = GroupEngine(gpus=args.gpus, **engine_args)
        except ValueError as e:
            sys.exit(f"--gpus {args.gpus}: {e}")
    else:
        engine = Engine(**engine_args)
    store = HistoryStore(args.outputs)
    any_size = args.any_size or args.demo
    lora_dir = args.demo_dir / "loras" if args.demo else args.lora_dir
    options = AppOptions(demo=args.demo, any_size=any_size, public=args.public, allow_download=args.download,
                         upload_root=gr.utils.get_upload_folder(), lora_dir=str(lora_dir))
    try:
        extenders = make_extenders(args)
    except ValueError as e:
        sys.exit(f"--extender {args.extender}: {e}")
    demo = create_demo(engine, store, extender=extenders, any_size=any_size, options=options)
    configure_queue(demo, max_size=args.queue_size, per_session=args.jobs_per_session)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        mcp_server=args.mcp,
        allowed_paths=[str(store.root)],
        max_file_size=MAX_UPLOAD,
        i18n=build_i18n(),
        theme=THEME,
        css_paths=[ASSETS / "style.css"],
        js=APP_JS,
        favicon_path=ASSETS / "favicon.png" if (ASSETS / "favicon.png").is_file() else None,
        footer_links=["api", "gradio", "settings"],
    )


if __name__ == "__main__":
    main()
