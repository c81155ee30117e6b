"""Unit tests of the app's non-UI logic (``playground``): validation, history, share links, i18n, ZeroGPU."""

from __future__ import annotations

import json
import os
import re
import string
import threading
from pathlib import Path

import pytest

from playground import discovery, history, i18n, share, zerogpu
from playground.images import check_image
from playground.request import (
    DEMO_MAX_SIDE,
    LIMITS,
    InputError,
    app_policy,
    closest_preset,
    error_text,
    parse_size,
    size_presets,
)
from wan.request import request_from_values, resolve_seed

TASKS = ("t2v-A14B", "i2v-A14B", "ti2v-5B")


def _spec(task: str):
    from wan.configs import get_spec

    return get_spec(task)


def _values(spec, **over):
    v = {
        "prompt": "a cat surfing a wave at sunset",
        "negative_prompt": "blurry",
        "size": f"{spec.sizes[0][0]}*{spec.sizes[0][1]}",
        "frame_num": 17,
        "fps": spec.sample_fps,
        "sampling_steps": 4,
        "shift": 5.0,
        "sample_solver": "unipc",
        "seed": 42,
        "randomize_seed": False,
    }
    if spec.moe:
        v.update(guide_scale_high=4.0, guide_scale_low=3.0)
    else:
        v.update(guide_scale=5.0)
    v.update(over)
    return v


# --------------------------------------------------------------------------------- request
def test_parse_size_accepts_common_spellings():
    assert parse_size("1280*720") == (1280, 720)
    assert parse_size(" 832 x 480 ") == (832, 480)
    assert parse_size("704×1280") == (704, 1280)
    with pytest.raises(InputError, match=r"'W\*H' string of two positive integers such as '1280\*720'") as e:
        parse_size("big")
    assert e.value.field == "size"


def _studio(tmp_path, *, demo=False, any_size=False):
    from playground.engine import Engine
    from playground.history import HistoryStore
    from playground.studio import Studio

    return Studio(Engine(demo=demo, demo_root=tmp_path / "demo"), HistoryStore(tmp_path / "out"), any_size=any_size)


@pytest.mark.parametrize("task", TASKS)
def test_request_roundtrip_and_guidance_shape(task, tmp_path):
    spec = _spec(task)
    image = None
    if spec.image_input == "required":
        image = str(tmp_path / "in.png")
        from PIL import Image

        Image.new("RGB", (1280, 720), (90, 120, 200)).save(image)
    req = _studio(tmp_path).build_request(task, _values(spec), image=image)
    assert req.seed == 42 and req.size == spec.sizes[0]
    if spec.moe:
        assert req.guide_scale == {"high_noise": 4.0, "low_noise": 3.0}  # the form shows high first
    else:
        assert req.guide_scale == {"dense": 5.0}
    d = json.loads(json.dumps(req.to_settings()))
    assert request_from_values(task, d, image=image) == req


def test_validation_messages_name_the_field_and_what_is_allowed(tmp_path):
    spec = _spec("ti2v-5B")
    studio = _studio(tmp_path)

    def err(**over):
        with pytest.raises(InputError) as e:
            studio.build_request("ti2v-5B", _values(spec, **over))
        return e.value

    e = err(prompt="   ")
    assert e.field == "prompt" and "empty" in str(e)
    e = err(size="1280*720")
    assert e.field == "size" and "1280*704" in str(e) and "704*1280" in str(e)
    e = err(frame_num=80)
    assert e.field == "frame_num" and "4n+1" in str(e)
    e = err(sampling_steps=0)
    assert e.field == "sampling_steps" and "from 1 to 100" in str(e)
    e = err(sample_solver="ddim")
    assert e.field == "sample_solver" and "unipc" in str(e)
    assert error_text(err(seed=1.5)).startswith("Seed: must be a whole number")
    assert error_text(err(sampling_steps="abc")) == "Steps: must be a whole number; got 'abc'"
    assert err(frame_num="True").field == "frame_num"
    assert err(shift=float("nan")).field == "shift"


def test_any_size_uses_the_stride_multiple(tmp_path):
    spec = _spec("ti2v-5B")
    with pytest.raises(InputError, match="not supported"):
        _studio(tmp_path).build_request("ti2v-5B", _values(spec, size="160*96"))
    loose = _studio(tmp_path, any_size=True)
    assert loose.build_request("ti2v-5B", _values(spec, size="160*96")).size == (160, 96)
    with pytest.raises(InputError, match="multiples of 32"):
        loose.build_request("ti2v-5B", _values(spec, size="160*100"))


def test_image_policy(tmp_path):
    spec = _spec("i2v-A14B")
    with pytest.raises(InputError) as e:
        _studio(tmp_path).build_request("i2v-A14B", _values(spec))
    assert re.match("Image: .*upload one", error_text(e.value))


def test_seed_resolution():
    assert resolve_seed(7) == 7
    seeds = {resolve_seed(-1) for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= s <= LIMITS.random_seed_max for s in seeds)


def test_size_presets_and_closest():
    spec = _spec("t2v-A14B")
    demo = size_presets(spec, demo=True)
    assert demo and all("demo" in p.label for p in demo)
    assert all(64 <= side <= 128 for p in demo for side in (p.width, p.height))  # seconds on a CPU
    assert all(p.width % 32 == 0 and p.height % 32 == 0 for p in demo)  # valid for every task
    assert [(p.width, p.height) for p in size_presets(spec)] == list(spec.sizes)
    official = size_presets(spec)
    assert closest_preset(official, 1000, 1800).height > closest_preset(official, 1000, 1800).width
    assert closest_preset(official, 1920, 1080).value == "1280*720"


def test_demo_caps_the_size(tmp_path):
    spec = _spec("ti2v-5B")
    big = _values(spec, size="1280*704")
    assert _studio(tmp_path, any_size=True).build_request("ti2v-5B", big).size == (1280, 704)  # fine in real mode
    demo = _studio(tmp_path, demo=True)
    assert demo.policy == app_policy(demo=True, any_size=False)
    with pytest.raises(InputError, match=f"between 32 and {DEMO_MAX_SIDE} in demo mode"):
        demo.build_request("ti2v-5B", big)
    assert demo.build_request("ti2v-5B", _values(spec, size="128*96")).size == (128, 96)


# ------------------------------------------------------------------------------- assistant
def test_assistant_uses_prompting_groups_and_round_trips():
    import prompting
    from playground import assistant

    assert assistant.STYLE_GROUP == prompting.STYLE_GROUP
    groups = assistant.aesthetic_groups()
    assert prompting.STYLE_GROUP not in groups and "motion_type" in groups and "visual_style" not in groups
    values = {"subject": "a red fox", "scene": "a snowy forest", "motion": "trots", "lighting": "soft_lighting",
              "motion_type": "running", prompting.STYLE_GROUP: "pixel_style", "fixed_camera": True}
    text, fields = assistant.build_preview(values, "advanced", "en")
    assert text == "Pixel style, soft lighting, running. A red fox, a snowy forest. Trots. Fixed camera."
    assert fields["style"] == "pixel_style"
    assert fields["mode"] == "advanced" and fields["aesthetics"]["motion_type"] == "running"
    back = assistant.values_from_fields(fields)
    assert back["lighting"] == "soft_lighting" and back["style"] == "pixel_style" and back["fixed_camera"] is True
    assert back["subject"] == "a red fox" and back["shot_size"] == assistant.NONE_CHOICE
    assert assistant.build_preview({}, "basic", "en") == ("", None)


def test_assistant_notes_what_the_formula_leaves_out():
    from playground import assistant

    values = {"subject": "a fox", "scene": "snow", "motion": "runs", "lighting": "soft_lighting",
              "camera_movement": "camera_pushes_in"}
    assert assistant.mode_notes(values, "advanced") == []
    (basic,) = assistant.mode_notes(values, "basic")
    assert "Basic" in basic and "Soft lighting" in basic and "Camera pushes in" in basic
    (i2v,) = assistant.mode_notes(values, "i2v", "ko")
    assert "피사체" in i2v and "장면" in i2v and "카메라" not in i2v  # the camera move is used by i2v
    (basic_ko,) = assistant.mode_notes(values, "basic", "ko")  # term labels in Korean, by id
    assert "부드러운 조명" in basic_ko and "카메라 푸시 인" in basic_ko and "Soft lighting" not in basic_ko
    with pytest.raises(ValueError, match="mode must be one of"):
        assistant.mode_notes(values, "fancy")


def test_assistant_reports_contradictory_choices():
    from playground import assistant

    values = {"subject": "a fox", "fixed_camera": True, "camera_movement": "camera_pushes_in"}
    (note,) = assistant.conflicts(values, "en")
    assert "contradicts" in note and "Camera pushes in" in note and "Fixed camera" in note
    (zh,) = assistant.conflicts(values, "zh")
    assert "矛盾" in zh
    text, _ = assistant.build_preview(values, "advanced", "en")
    assert "pushes in" not in text.lower() and "fixed camera" in text.lower()


def test_examples_fill_the_form():
    from playground import assistant

    for task in TASKS:
        exs = assistant.examples(task)
        assert exs, task
        for ex in exs:
            values = assistant.values_from_fields(ex["fields"])
            text, _ = assistant.build_preview(values, ex["mode"], ex["lang"])
            assert text == ex["prompt"], (task, ex["title"])


# ---------------------------------------------------------------------------------- images
def test_check_image_rejects_non_images_and_huge_images(tmp_path):
    from PIL import Image

    ok = tmp_path / "ok.png"
    Image.new("RGB", (200, 100), "red").save(ok)
    assert check_image(ok) == (200, 100)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(InputError) as e:
        check_image(text)
    assert error_text(e.value).startswith("Image: 'notes.png' is not an image")
    huge = tmp_path / "huge.png"
    Image.new("1", (9000, 5000)).save(huge)  # 1-bit keeps the file small; 45 MP
    with pytest.raises(InputError, match="too large"):
        check_image(huge)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    with pytest.raises(InputError, match="too small"):
        check_image(tiny)


# --------------------------------------------------------------------------------- history
def _commit(store: history.HistoryStore, **settings) -> history.HistoryEntry:
    gen_id = store.reserve_id()
    video = store.work_path(gen_id, ".mp4")
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return store.commit(gen_id, video, {"task": "t2v-A14B", "prompt": "p", "seed": 1, **settings})


def test_history_commit_get_list_and_restart(tmp_path):
    store = history.HistoryStore(tmp_path / "out")
    a = _commit(store, prompt="first")
    b = _commit(store, prompt="second")
    assert store.get(a.id).settings["prompt"] == "first"
    assert [e.id for e in store.list()] == [b.id, a.id]  # newest first
    assert store.get(a.id).settings["id"] == a.id
    assert json.loads(store.settings_path(b.id).read_text())["video_file"] == f"{b.id}.mp4"
    assert not list(store.tmp_dir.iterdir())  # work files were moved in
    reopened = history.HistoryStore(tmp_path / "out")  # "restart"
    assert {e.id for e in reopened.list()} == {a.id, b.id}


def test_history_ids_are_validated_against_traversal(tmp_path):
    store = history.HistoryStore(tmp_path)
    for bad in ("../etc/passwd", "..", "20260101-120000-a1b2c3/../x", "x" * 30, "", None, "20260101-120000-A1B2C3"):
        with pytest.raises(history.InvalidIdError):
            store.get(bad)  # type: ignore[arg-type]
    with pytest.raises(history.UnknownIdError, match="No result with id 20260101-120000-abcdef"):
        store.get("20260101-120000-abcdef")


def test_history_skips_incomplete_and_corrupt_entries(tmp_path):
    store = history.HistoryStore(tmp_path)
    good = _commit(store)
    (tmp_path / "20250101-000000-aaaaaa.json").write_text("{not json")
    (tmp_path / "20250101-000000-aaaaaa.mp4").write_bytes(b"x")
    (tmp_path / "20250101-000000-bbbbbb.json").write_text("{}")  # no mp4
    assert [e.id for e in store.list()] == [good.id]


def test_history_concurrent_writers_lose_nothing(tmp_path):
    store = history.HistoryStore(tmp_path)
    ids: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for j in range(10):
            e = _commit(store, prompt=f"{i}-{j}")
            with lock:
                ids.append(e.id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(ids)) == 40
    assert {e.id for e in store.list()} == set(ids)


def test_atomic_write_json_leaves_no_partial_file(tmp_path):
    target = tmp_path / "a.json"
    history.atomic_write_json(target, {"x": 1})
    with pytest.raises(TypeError):
        history.atomic_write_json(target, {"x": object()})
    assert json.loads(target.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


# ----------------------------------------------------------------------------------- share
def test_share_permalink_and_parse():
    gen_id = "20260101-120000-a1b2c3"
    link = share.permalink("http://127.0.0.1:7860/?__theme=dark#x", gen_id)
    assert link == f"http://127.0.0.1:7860/?gen={gen_id}"
    q = share.parse_query({"gen": gen_id}, TASKS)
    assert q.gen_id == gen_id and not q.problems
    q = share.parse_query({"gen": "../../secret"}, TASKS)
    assert q.gen_id is None and "not a valid result id" in q.problems[0]


def test_share_prefill_parsing_reports_what_was_ignored():
    q = share.parse_query(
        {"task": "ti2v", "prompt": "a dog", "seed": "12", "steps": "abc", "size": "704x1280", "solver": "dpm++"},
        TASKS,
    )
    assert q.task == "ti2v-5B"
    assert q.prefill == {"prompt": "a dog", "seed": 12, "size": "704*1280", "sample_solver": "dpm++"}
    assert len(q.problems) == 1 and q.problems[0].startswith("steps:")
    q = share.parse_query({"task": "nope", "prompt": "x"}, TASKS)
    assert q.task == "t2v-A14B" and "not a task" in q.problems[0]
    link = share.prefill_link("http://h:1/app", "i2v-A14B", prompt="a b&c", seed=3)
    assert link == "http://h:1/app/?task=i2v-A14B&prompt=a+b%26c&seed=3"
    back = share.parse_query(dict(__import__("urllib.parse").parse.parse_qsl(link.split("?")[1])), TASKS)
    assert back.task == "i2v-A14B" and back.prefill == {"prompt": "a b&c", "seed": 3}


def test_share_prefill_names_every_rejected_parameter():
    """Values that used to crash the page load (inf, nan, 1e400, "True") are named, with what is allowed."""
    q = share.parse_query({"task": "i2v", "frames": "10", "size": "999*1", "seed": "abc", "steps": "nan",
                           "shift": "1e400", "fps": "True", "prompt": "p" * 3001, "guidance_high": "inf"}, TASKS)
    named = sorted(p.split(":")[0] for p in q.problems)
    assert named == ["fps", "frames", "guidance_high", "prompt", "seed", "shift", "size", "steps"], q.problems
    assert any("4n+1" in p for p in q.problems) and any("1280*720" in p for p in q.problems)
    assert q.prefill == {} and q.task == "i2v-A14B"


# ------------------------------------------------------------------------------------ i18n
def test_i18n_tables_are_complete_and_placeholders_match():
    en = i18n.STRINGS["en"]
    fields = lambda s: {f for _, f, _, _ in string.Formatter().parse(s) if f}  # noqa: E731
    for lang in ("ko", "zh"):
        table = i18n.STRINGS[lang]
        assert set(table) == set(en), f"{lang}: missing {set(en) - set(table)}, extra {set(table) - set(en)}"
        for key, text in table.items():
            assert fields(text) == fields(en[key]), (lang, key)
    assert i18n.tr("run.step", "ko", step=3, total=40, expert="x", eta=12) == "스텝 3/40 · x · 남은 시간 12초"


def test_lang_from_header():
    assert i18n.lang_from_header("ko-KR,ko;q=0.9,en-US;q=0.8") == "ko"
    assert i18n.lang_from_header("fr-FR,zh-CN;q=0.7,en;q=0.5") == "zh"
    assert i18n.lang_from_header(None) == "en"
    assert i18n.lang_from_header("de") == "en"


def test_korean_vocabulary_covers_the_official_vocabulary():
    from playground import assistant

    tables = assistant.vocab_translations()
    untranslated = [k for k, v in tables["ko"].items() if v == tables["en"][k]]
    assert not untranslated, untranslated


# --------------------------------------------------------------------------------- zerogpu
def test_zerogpu_detection_and_estimates():
    assert not zerogpu.on_zero_gpu({})
    assert zerogpu.on_zero_gpu({"SPACES_ZERO_GPU": "true"})
    small = zerogpu.estimate_gpu_seconds("t2v-A14B", 40, 81, 832, 480)
    big = zerogpu.estimate_gpu_seconds("t2v-A14B", 40, 81, 1280, 720)
    assert 30 <= small < big
    assert zerogpu.estimate_gpu_seconds("ti2v-5B", 10, 121, 1280, 704) < zerogpu.estimate_gpu_seconds(
        "ti2v-5B", 50, 121, 1280, 704
    )
    with pytest.raises(ValueError, match="unknown task"):
        zerogpu.estimate_gpu_seconds("t2v-1.3B", 1, 1, 16, 16)


def test_wrap_gpu_is_identity_off_zerogpu():
    fn = lambda x: x  # noqa: E731
    assert zerogpu.wrap_gpu(fn, lambda *a: 60, environ={}) is fn


# ------------------------------------------------------------------------------- discovery
def test_missing_weights_message_names_files_and_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("WAN_CKPT_DIR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    status = discovery.locate_weights("ti2v-5B", tmp_path / "nowhere")
    assert status.path is None and not status.ready
    msg = status.detail
    assert "ti2v-5B weights were not found" in msg and "HF_HUB_OFFLINE" in msg
    assert "Wan2.2_VAE.pth" in msg and "hf download Wan-AI/Wan2.2-TI2V-5B" in msg
    assert "--demo" in msg
    with pytest.raises(discovery.WeightsMissing, match="offline"):
        discovery.download_weights("ti2v-5B", tmp_path)




# ------------------------------------------------------------------------------ app views
def test_safe_text_renders_no_html_or_links():
    from markdown_it import MarkdownIt

    from playground.views.safe import code, md, toast

    render = MarkdownIt("commonmark").render
    evil = ('<form action=http://127.0.0.1:9911/steal method=post><input name=token type=password></form>'
            ' <img src=http://host/pixel> [click](http://evil) ![x](http://host/p.png) **bold** `tick`')
    for text in (md(evil), code(evil), "**Link problems:** " + md(evil)):
        out = render(text)
        assert "<form" not in out and "<img" not in out and "<input" not in out and "<a " not in out, out
    assert "&lt;form" in render(md(evil))  # shown as text, not dropped
    assert "<" not in toast(evil) and "&lt;img src=http://host/pixel&gt;" in toast(evil)


def test_cancel_registry_is_per_session_and_task():
    from playground.views import CancelRegistry

    reg = CancelRegistry()
    with reg.register("s1", "t2v-A14B") as a, reg.register("s2", "t2v-A14B") as b:
        assert reg.cancel("s1", "t2v-A14B") and a.is_set() and not b.is_set()
        assert not reg.cancel("s1", "ti2v-5B")
        with reg.register("s2", "t2v-A14B") as newer:  # a newer run of the same key replaces the entry
            pass
        assert not newer.is_set() and not reg.cancel("s2", "t2v-A14B")  # the newer one left; the older stays out
    assert len(reg) == 0

    def churn(i: int) -> None:
        for _ in range(200):
            with reg.register(f"s{i % 3}", "t2v-A14B"):
                reg.cancel(f"s{(i + 1) % 3}", "t2v-A14B")

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(reg) == 0


def test_owner_ids_are_opaque_history_tokens():
    from playground.history import validate_owner
    from playground.views import ownership

    token = ownership.new_token()
    oid = ownership.owner_id(token)
    assert oid and validate_owner(oid) == oid and token not in oid and ownership.owner_id(token) == oid
    assert ownership.owner_id(ownership.new_token()) != oid
    for bad in (None, "", "short", "x" * 500, "<script>" * 8, 42):
        assert ownership.owner_id(bad) is None


@pytest.mark.parametrize("payload, fragment", [("abc", "is not a number"), (float("nan"), "not a finite number"),
                                                (float("inf"), "not a finite number"), (500, "out of range"),
                                                (True, "is not a number")])
def test_number_inputs_name_the_field(payload, fragment):
    import gradio as gr

    from playground.views.common import CheckedSlider, named

    steps = named(CheckedSlider(1, 100, value=4, step=1), "sampling_steps")
    with pytest.raises(gr.Error) as e:
        steps.preprocess(payload)
    assert str(e.value.message).startswith("Steps: ") and fragment in e.value.message, e.value.message
    assert "from 1 to 100" in e.value.message
    assert steps.preprocess(30) == 30 and steps.preprocess("30") == 30


def test_extend_prompt_api_checks_its_argument_types():
    import gradio as gr

    from playground.views.endpoints import make_extend_api

    class Extender:
        name = "offline"

        def extend(self, prompt, **kw):  # pragma: no cover - never reached with bad input
            raise AssertionError("called with bad input")

    extend = make_extend_api(Extender())
    for args, fragment in [((123,), "prompt: must be text"), (("a cat", 5), "task: 5 is not one of"),
                           (("a cat", "t2v-A14B", "fr"), "lang: 'fr'"), (("a cat", "t2v-A14B", "en", "yes"), "has_image"),
                           (("  ",), "prompt: is empty")]:
        with pytest.raises(gr.Error) as e:
            extend(*args)
        assert fragment in e.value.message, (args, e.value.message)


def test_session_job_cap_counts_waiting_and_running_jobs():
    from types import SimpleNamespace as NS

    from playground.views import SessionJobCap

    gen, cheap = NS(api_name="generate_t2v"), NS(api_name="get_result")
    ev = lambda s, fn: NS(session_hash=s, fn=fn)  # noqa: E731
    queue = NS(event_queue_per_concurrency_id={"gpu": NS(queue=[ev("a", gen), ev("b", gen)]),
                                               "x": NS(queue=[ev("a", cheap)])},
               active_jobs=[None, [ev("a", gen)]])
    cap = SessionJobCap(["generate_t2v", "generate_i2v"], limit=2)
    assert cap.pending(queue, "a") == 2 and cap.pending(queue, "b") == 1 and cap.pending(queue, "c") == 0
    refusal = cap.refusal(2)
    assert refusal["is_valid"] is False and "already have 2 generation jobs" in refusal["message"]


def _demo_blocks(tmp_path, **options):
    from app import create_demo
    from playground.engine import Engine
    from playground.history import HistoryStore
    from playground.views import AppOptions

    engine = Engine(demo=True, demo_root=tmp_path / "demo_ckpt")
    store = HistoryStore(tmp_path / "outputs")
    return create_demo(engine, store, options=AppOptions(**options))


def test_public_config_has_no_server_paths_and_download_needs_the_flag(tmp_path):
    import gradio as gr

    public = json.dumps(_demo_blocks(tmp_path, public=True).config, default=str)
    assert str(tmp_path) not in public and "site-packages" not in public and str(Path.home()) + "/" not in public
    for opts in ({}, {"allow_download": True}):
        demo = _demo_blocks(tmp_path, **opts)
        buttons = [b for b in demo.blocks.values() if isinstance(b, gr.Button) and "btn.download" in repr(vars(b.value) if hasattr(b.value, "__dict__") else b.value)]
        assert len(buttons) == 3 and not any(b.visible for b in buttons)  # demo mode: never a download


def test_cheap_endpoints_are_not_queued(tmp_path):
    demo = _demo_blocks(tmp_path)
    queued = {fn.api_name: fn.queue for fn in demo.fns.values() if fn.api_name}
    for name in ("get_result", "settings_from_video", "extend_prompt", "list_history"):
        assert queued[name] is False, (name, queued)
    assert all(queued[f"generate_{t}"] for t in ("t2v", "i2v", "ti2v"))


# ----------------------------------------------------------------------- restoring settings
def test_restore_form_reports_bad_stored_values_and_keeps_the_rest():
    """Malformed settings (mp4 metadata, a history JSON) never raise: each bad value is named, the rest fills the form."""
    import json as _json

    from playground.studio import _embedded_settings, restore_form

    bad = {"task": "t2v-A14B", "prompt": "a fox", "width": "abc", "height": 480, "guide_scale": "abc",
           "seed": "seven", "sampling_steps": 30, "frame_num": True, "shift": float("inf"),
           "negative_prompt": "x" * 20_000_000, "prompt_fields": {"mode": "<img src=x>", "lang": "en", "subject": "fox"}}
    form = restore_form(bad)
    assert form.values == {"prompt": "a fox", "sampling_steps": 30}
    assert sorted({e.field for e in form.problems}) == [
        "frame_num", "guide_scale", "negative_prompt", "prompt_fields", "seed", "shift", "size"]
    assert form.prompt_fields == {"lang": "en", "subject": "fox"}  # the bad mode dropped, named in problems
    # version 1 settings as written before the request contract still restore completely
    v1 = {"task": "i2v-A14B", "prompt": "p", "negative_prompt": "", "width": 832, "height": 480, "frame_num": 17,
          "fps": 16, "sampling_steps": 20, "shift": 5.0, "guide_scale": [3.0, 4.5], "sample_solver": "euler",
          "seed": 12, "version": 1}
    form = restore_form(v1)
    assert not form.problems
    assert form.values["guide_scale_high"] == 4.5 and form.values["guide_scale_low"] == 3.0
    assert form.values["size"] == "832*480" and form.values["randomize_seed"] is False
    with pytest.raises(InputError, match="unknown task"):
        restore_form({"task": "<b>x</b>"})
    deep: object = {"app": "wan-playground", "task": "t2v-A14B"}
    for _ in range(900):
        deep = {"nested": deep}
    assert _embedded_settings(_json.dumps(deep)) is None or True  # no RecursionError, whatever it finds
    assert _embedded_settings({"comment": _json.dumps({"app": "wan-playground", "task": "ti2v-5B"})})["task"] == "ti2v-5B"


@pytest.mark.parametrize("lang", ["ko", "zh"])
def test_validation_errors_are_translated(lang, tmp_path):
    """Every field-named error reads in the UI's language: translated label and rule, English detail after."""
    import re as _re

    from playground.request import _FIELD_I18N

    hangul_or_han = _re.compile(r"[\uac00-\ud7a3\u4e00-\u9fff]")
    for field in _FIELD_I18N:
        text = error_text(InputError(field, "must be something; got 'x'"), lang)
        label, _, rest = text.partition(": ")
        assert hangul_or_han.search(label) or label in ("FPS",), (field, text)
        assert hangul_or_han.search(rest.split(" (")[0]), (field, text)
        assert rest.endswith("(must be something; got 'x')")
    spec = _spec("t2v-A14B")
    with pytest.raises(InputError) as e:
        _studio(tmp_path).build_request("t2v-A14B", _values(spec, sampling_steps=500))
    assert "1–100" in error_text(e.value, lang) and hangul_or_han.search(error_text(e.value, lang))
