"""The app's LoRA side without a browser: the folder listing and its compatibility filter, the demo LoRA
files, the Fast preset applied to a tab, the API's loras / preset parameters (a path outside the LoRA
folder refused), restoring LoRAs (a missing file named and left out), list_loras, and the strings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from playground.discovery import DEMO_LORAS, ensure_demo_loras
from playground.i18n import STRINGS
from playground.loras import LoraLibrary, api_values, parse_api_loras, safe_name
from playground.request import InputError, app_policy
from playground.speed import _data as preset_data
from wan.testing.lora import write_tiny_lora
from wan.testing.synthetic import tiny_dit_config

T2V_PAIR = [f["file"] for f in preset_data()["loras"]["t2v-A14B"]]


@pytest.fixture(scope="module")
def demo_loras(tmp_path_factory) -> Path:
    return ensure_demo_loras(tmp_path_factory.mktemp("demo") / "loras")


@pytest.fixture(scope="module")
def library(demo_loras) -> LoraLibrary:
    return LoraLibrary(demo_loras, tiny_dit_config)


# ------------------------------------------------------------------------------ demo files
def test_demo_loras_are_written_once_in_several_formats(demo_loras):
    names = {p.relative_to(demo_loras).as_posix() for p in demo_loras.rglob("*.safetensors")}
    assert set(DEMO_LORAS) | set(T2V_PAIR) | {f["file"] for f in preset_data()["loras"]["i2v-A14B"]} == names
    assert {fmt for _, fmt, _ in DEMO_LORAS.values()} >= {"official", "musubi", "diffusers"}
    assert not list(demo_loras.rglob(".tmp-*"))  # written aside, then renamed
    mtimes = {p: p.stat().st_mtime_ns for p in demo_loras.rglob("*.safetensors")}
    ensure_demo_loras(demo_loras)  # the marker says done: nothing rewritten
    assert mtimes == {p: p.stat().st_mtime_ns for p in demo_loras.rglob("*.safetensors")}


def test_demo_loras_complete_an_interrupted_folder(tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    keep = write_tiny_lora(folder / "mine.safetensors", "t2v-A14B", "official", seed=99)
    before = keep.read_bytes()
    ensure_demo_loras(folder)
    assert keep.read_bytes() == before  # a user's file is kept
    assert all((folder / n).is_file() for n in [*DEMO_LORAS, *T2V_PAIR])


# --------------------------------------------------------------------------- listing / fit
def test_listing_only_offers_files_that_fit_the_tab(library):
    t2v, ti2v = library.compatible("t2v-A14B"), library.compatible("ti2v-5B")
    assert {"demo-style_HIGH.safetensors", "demo-style_LOW.safetensors", "demo-detail-diffusers.safetensors",
            *T2V_PAIR} <= set(t2v)
    assert "demo-5b-style-peft.safetensors" not in t2v
    assert ti2v == ["demo-5b-style-peft.safetensors"]
    reason = library.fits("demo-style_HIGH.safetensors", "ti2v-5B")
    assert isinstance(reason, str) and "demo-style_HIGH.safetensors" in reason and "head.head" in reason


def test_listing_skips_non_loras_hidden_files_and_caches_by_mtime(tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    good = write_tiny_lora(folder / "a.safetensors", "t2v-A14B", "musubi", seed=1)
    (folder / "notes.txt").write_text("not a LoRA")
    (folder / ".hidden.safetensors").write_bytes(b"x")
    (folder / "broken.safetensors").write_bytes(b"\x00" * 16)
    calls = []

    def config_for(task):
        calls.append(task)
        return tiny_dit_config(task)

    lib = LoraLibrary(folder, config_for)
    assert lib.names() == ["a.safetensors", "broken.safetensors"]
    assert lib.compatible("t2v-A14B") == ["a.safetensors"]  # the broken file is not offered
    assert "broken.safetensors" in str(lib.fits("broken.safetensors", "t2v-A14B"))
    n = len(calls)
    assert lib.compatible("t2v-A14B") == ["a.safetensors"] and len(calls) == n  # cached
    # a file replaced by one for another model (new mtime): checked again
    write_tiny_lora(good, "ti2v-5B", "official", seed=2, head_diff=True)
    os.utime(good, ns=(good.stat().st_atime_ns, good.stat().st_mtime_ns + 10_000_000))
    assert lib.compatible("t2v-A14B") == [] and lib.compatible("ti2v-5B") == ["a.safetensors"]
    assert LoraLibrary(tmp_path / "absent", config_for).compatible("t2v-A14B") == []


@pytest.mark.parametrize("name", ["../x.safetensors", "/etc/x.safetensors", "a/../../x.safetensors",
                                  "C:\\x.safetensors", "a\\b.safetensors", "x.txt", "", ".hidden.safetensors",
                                  None, 3])
def test_unsafe_names_are_refused(library, name):
    assert safe_name(name) is None
    assert library.path_of(name) is None


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = write_tiny_lora(tmp_path / "outside.safetensors", "t2v-A14B", "official")
    folder = tmp_path / "loras"
    folder.mkdir()
    (folder / "link.safetensors").symlink_to(outside)
    lib = LoraLibrary(folder, tiny_dit_config)
    assert lib.path_of("link.safetensors") is None
    assert lib.compatible("t2v-A14B") == []


# --------------------------------------------------------------------------- API parameters
def test_api_loras_parameter_parsing():
    assert parse_api_loras(None, "t2v-A14B") == [] and parse_api_loras("  ", "t2v-A14B") == []
    raw = json.dumps([{"name": "sub/a.safetensors", "strength": {"high_noise": 1, "low_noise": 0.5}}, "b.safetensors"])
    assert parse_api_loras(raw, "t2v-A14B") == [
        {"name": "sub/a.safetensors", "strength": {"high_noise": 1, "low_noise": 0.5}},
        {"name": "b.safetensors", "strength": 1.0},
    ]
    assert parse_api_loras({"name": "c.safetensors", "strength": 0.3}, "ti2v-5B") == [
        {"name": "c.safetensors", "strength": 0.3}]
    for bad, words in [("not json", "JSON list"), ('[{"path": "a.safetensors"}]', "each LoRA"),
                       ('[{"name": "../../etc/passwd.safetensors"}]', "inside this server's LoRA folder"),
                       ('[{"name": "/abs/a.safetensors"}]', "inside this server's LoRA folder"),
                       (json.dumps([{"name": f"{i}.safetensors"} for i in range(9)]), "at most 8")]:
        with pytest.raises(InputError) as e:
            parse_api_loras(bad, "t2v-A14B")
        assert e.value.field == "loras" and words in e.value.message, e.value


def test_api_values_with_a_preset_and_loras(demo_loras):
    values = api_values("t2v-A14B", {"prompt": "x", "sampling_steps": 30, "preset": "lightning-4step",
                                     "loras": '[{"name": "demo-style_HIGH.safetensors", "strength": 0.5}]'},
                        lora_dir=demo_loras)
    assert values["sampling_steps"] == 4 and values["sample_solver"] == "euler" and values["schedule"] == "lightning"
    assert [p["steps"] for p in values["phases"]] == [2, 2]
    assert [x["name"] for x in values["loras"]] == [*T2V_PAIR, "demo-style_HIGH.safetensors"]
    assert "preset" not in values
    with pytest.raises(InputError) as e:
        api_values("ti2v-5B", {"preset": "lightning-4step"}, lora_dir=demo_loras)
    assert e.value.field == "preset" and "not ti2v-5B" in e.value.message
    with pytest.raises(InputError) as e:  # offline, files missing: which files and how to get them
        api_values("t2v-A14B", {"preset": "lightning-4step"}, lora_dir=demo_loras.parent / "empty")
    assert "high_noise_model.safetensors" in e.value.message and "--download" in e.value.message


# ------------------------------------------------------------------------------ the studio
@pytest.fixture(scope="module")
def app_parts(tmp_path_factory, demo_loras):
    from playground.engine import Engine
    from playground.history import HistoryStore
    from playground.studio import Studio

    base = tmp_path_factory.mktemp("studio")
    engine = Engine(demo=True, demo_root=demo_loras.parent)
    store = HistoryStore(base / "out")
    return engine, store, Studio(engine, store, lora_dir=demo_loras)


def test_studio_requests_take_names_in_the_folder_only(app_parts, tmp_path):
    _, _, studio = app_parts
    req = studio.build_request("t2v-A14B", {"prompt": "a fox", "size": "128*96", "loras": [
        {"name": T2V_PAIR[0], "strength": {"high_noise": 1.0, "low_noise": 0.0}}]})
    settings = req.to_settings()
    studio._lora_names(req, settings)
    assert settings["loras"][0]["name"] == T2V_PAIR[0]  # its path inside the folder, not just the file name
    outside = write_tiny_lora(tmp_path / "x.safetensors", "t2v-A14B", "official")
    for name in (str(outside), "../x.safetensors"):
        with pytest.raises(InputError) as e:
            studio.build_request("t2v-A14B", {"prompt": "a fox", "size": "128*96", "loras": [{"name": name}]})
        assert e.value.field == "loras"
    # a server without a LoRA folder accepts no LoRA path at all
    assert app_policy(demo=False, any_size=False).lora_dir is not None


def test_runner_api_values_refuse_traversal(app_parts):
    from playground.views.common import AppOptions
    from playground.views.endpoints import GenerateRunner

    engine, store, studio = app_parts
    runner = GenerateRunner(studio, store, None, AppOptions(demo=True))
    with pytest.raises(InputError):
        runner.api_values("t2v-A14B", {"prompt": "x", "loras": '[{"name": "../../../etc/passwd.safetensors"}]'})
    assert runner.api_values("t2v-A14B", {"prompt": "x"}) == {"prompt": "x"}


# --------------------------------------------------------------------------- the task tab
@pytest.fixture(scope="module")
def panels(library):
    """The LoRA panel of each tab, built and wired in a Blocks with the form fields the Fast preset sets."""
    import gradio as gr

    from playground.views.common import AppOptions
    from playground.views.lora_panel import LoraPanel
    from playground.views.weights_view import QualityPresets
    from wan.configs import get_spec

    out = {}
    with gr.Blocks():
        for task in ("t2v-A14B", "i2v-A14B", "ti2v-5B"):
            spec = get_spec(task)
            quality = QualityPresets(task, spec, True).build()
            panel = LoraPanel(task, spec, library, AppOptions(demo=True)).build_fast().build()
            form = {"sampling_steps": gr.Slider(1, 100), "sample_solver": gr.Dropdown(["unipc", "euler"]),
                    "shift": gr.Slider(0, 20), "size": gr.Textbox(), "frame_num": gr.Slider(1, 81)}
            panel.wire(form, quality)
            out[task] = panel
    return out


def test_fast_preset_fills_steps_solver_state_and_rows(panels):
    panel = panels["t2v-A14B"]
    flat = ["demo-detail-diffusers.safetensors", 0.5, 0.5, "", 1.0, 1.0, "", 1.0, 1.0, "", 1.0, 1.0]
    updates = panel.apply_fast("lightning-4step", flat, "en")
    form = panel._form
    assert updates[form["sampling_steps"]] == 4 and updates[form["sample_solver"]] == "euler"
    assert updates[form["shift"]] == 5.0
    speed = updates[panel.speed]
    assert speed["schedule"] == "lightning" and [p["expert"] for p in speed["phases"]] == ["high_noise", "low_noise"]
    names = [updates[f].value for f in panel.files]
    assert names == [*T2V_PAIR, "demo-detail-diffusers.safetensors", ""]  # the user's row is kept
    assert [updates[panel.sliders[0][e]] for e in ("high_noise", "low_noise")] == [1.0, 0.0]
    assert [updates[panel.sliders[2][e]] for e in ("high_noise", "low_noise")] == [0.5, 0.5]
    assert "4 steps, CFG off" in updates[panel.fast_note].value
    # the request values a Generate click sends
    values = {"lora_speed": speed}
    for i in range(4):
        values[f"lora_{i}_file"] = names[i]
        values.update({f"lora_{i}_{e}": updates[panel.sliders[i][e]] for e in panel.experts})
    out = panel.take(values)
    assert out["schedule"] == "lightning" and len(out["phases"]) == 2 and len(out["loras"]) == 3
    assert out["loras"][0] == {"name": T2V_PAIR[0], "strength": {"high_noise": 1.0, "low_noise": 0.0}}
    # Draft / Official quality: the preset is off, its rows go, the user's row stays
    cleared = panel.clear_fast(*[v for i in range(4) for v in (names[i], *(updates[panel.sliders[i][e]]
                                                                         for e in panel.experts))])
    assert cleared[panel.speed] is None
    assert [cleared[f].value for f in panel.files] == ["demo-detail-diffusers.safetensors", "", "", ""]


def test_fast_preset_names_missing_files(panels, tmp_path):
    panel = panels["i2v-A14B"]
    lib = LoraLibrary(tmp_path / "empty", tiny_dit_config)
    saved = panel.library
    panel.library = lib
    try:
        updates = panel.apply_fast("lightning-4step", [""] * 12, "ko")
    finally:
        panel.library = saved
    note = updates[panel.fast_note].value
    assert "빠른 프리셋을 적용하지 않았습니다" in note and "high\\_noise\\_model" in note and "download" in note
    assert set(updates) == {panel.fast_note}  # nothing else changes
    assert not panels["ti2v-5B"].fast_btns and panels["t2v-A14B"].fast_btns  # Fast only on the A14B tabs


def test_restore_fills_rows_and_names_a_missing_file(panels):
    panel = panels["t2v-A14B"]
    settings = {"task": "t2v-A14B", "loras": [
        {"name": "demo-style_HIGH.safetensors", "strength": {"high_noise": 0.7, "low_noise": 0.3}},
        {"name": "gone.safetensors", "sha256": "0" * 12, "strength": 1.0},
        {"name": "demo-style_LOW.safetensors", "sha256": "ffffffffffff", "strength": 1.0},  # another file now
    ], "phases": [{"steps": 2, "expert": "high_noise", "guide_scale": 1.0}], "schedule": "lightning"}
    problems: list[str] = []
    updates = panel.restore_updates(settings, {"phases": settings["phases"], "schedule": "lightning",
                                               "sampling_steps": 2}, problems)
    assert [updates[f].value for f in panel.files] == ["demo-style_HIGH.safetensors", "", "", ""]
    assert [updates[panel.sliders[0][e]] for e in ("high_noise", "low_noise")] == [0.7, 0.3]
    assert any("gone.safetensors" in p and "not in this server's LoRA folder" in p for p in problems), problems
    assert any("demo-style_LOW.safetensors" in p and "sha256" in p for p in problems), problems
    assert updates[panel.speed]["schedule"] == "lightning"
    dense = panels["ti2v-5B"]
    problems = []
    up = dense.restore_updates({"task": "ti2v-5B", "loras": [{"name": "demo-5b-style-peft.safetensors",
                                                              "strength": 0.4}]}, {}, problems)
    assert up[dense.files[0]].value == "demo-5b-style-peft.safetensors" and up[dense.sliders[0]["dense"]] == 0.4
    assert up[dense.speed] is None and not problems


def test_default_strengths_follow_high_low_names():
    from playground.views.lora_panel import default_strength

    moe = ("high_noise", "low_noise")
    assert default_strength("x/high_noise_model.safetensors", moe) == {"high_noise": 1.0, "low_noise": 0.0}
    assert default_strength("style_LOW.safetensors", moe) == {"high_noise": 0.0, "low_noise": 1.0}
    assert default_strength("highlight.safetensors", moe) == {"high_noise": 1.0, "low_noise": 1.0}
    assert default_strength("style_high.safetensors", ("dense",)) == {"dense": 1.0}


def test_list_loras_endpoint_and_docs(demo_loras):
    from playground.views.endpoints import doc_values, make_list_loras
    from wan.configs import get_spec

    fn = make_list_loras(LoraLibrary(demo_loras, tiny_dit_config))
    assert fn("ti2v-5B") == ["demo-5b-style-peft.safetensors"]
    assert "task" in fn.__doc__ and "Returns" in fn.__doc__
    import gradio as gr

    with pytest.raises(gr.Error):
        fn("t2v-1.3B")
    d = doc_values("t2v-A14B", get_spec("t2v-A14B"), True)
    assert '"lightning-4step"' in d["presets"] and "high_noise" in d["strength_doc"]
    assert "none for ti2v-5B" in doc_values("ti2v-5B", get_spec("ti2v-5B"), True)["presets"]


def test_generate_endpoints_keep_their_parameters_and_append_loras_preset():
    import inspect

    from playground.views.endpoints import _i2v, _t2v, _ti2v, doc_values, document
    from wan.configs import get_spec

    async def run(*a, **k):  # pragma: no cover - only the signatures are read
        return None

    t2v = list(inspect.signature(_t2v(run)).parameters)
    assert t2v[:12] == ["prompt", "negative_prompt", "size", "frame_num", "fps", "sampling_steps", "shift",
                        "sample_solver", "guide_scale_high", "guide_scale_low", "seed", "randomize_seed"]
    assert t2v[-3:] == ["loras", "preset", "cache"]
    for task, fn in (("i2v-A14B", _i2v(run)), ("ti2v-5B", _ti2v(run))):
        params = list(inspect.signature(fn).parameters)
        if task == "i2v-A14B":  # first-last frame: appended after cache
            assert params.pop() == "last_image"
        assert params[-4:] == ["image", "loras", "preset", "cache"]
        document(fn, **doc_values(task, get_spec(task), False, False))  # as the app documents it
        assert "loras:" in fn.__doc__ and "preset:" in fn.__doc__ and "cache:" in fn.__doc__


def test_every_lora_string_in_three_languages():
    keys = {k for k in STRINGS["en"] if k.startswith("lora.")}
    assert len(keys) > 20
    for lang in ("ko", "zh"):
        assert keys <= set(STRINGS[lang]), keys - set(STRINGS[lang])
        same = [k for k in keys if STRINGS[lang][k] == STRINGS["en"][k] and k != "lora.section"]
        assert not same, (lang, same)  # translated, not copied
