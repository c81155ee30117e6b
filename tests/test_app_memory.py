"""The Memory profile panel: the app-wide memory setting (profile, blocks ahead, fp8, tiled VAE).

Real engine and real app (``app.py --demo``, tiny random weights on CPU): switching the profile
changes the next result's recorded ``memory`` and never a running job's; ``block`` and ``none`` give
the same videos; on ``--public`` the panel is read-only and has no endpoint.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import pytest
import torch

from playground.engine import Engine, MemorySetting
from playground.history import HistoryStore
from playground.studio import Studio
from test_app import API, ID_RE, ROOT, generate, generate_args, launch_app, settings_of, stop_app
from test_browser import ARTIFACTS, browser  # noqa: F401 - the browser fixture

pytestmark = pytest.mark.slow

NONE = {"offload": "none", "offload_blocks": None, "quantize": None, "vae_tiling": False}
BLOCK = {"offload": "block", "offload_blocks": 2, "quantize": None, "vae_tiling": False}


def same_video(a, b) -> None:
    """Two mp4s of the same run under different memory profiles show the same video. The models agree
    to ~3e-6 (not bit for bit: ``none`` computes on the memory-mapped checkpoint tensors, ``block`` on
    its own copies, and CPU matmul kernels round differently on them; with the same tensors ``block``
    is bit-identical to ``none``, tests/test_offload.py). A pixel that rounds to its neighbour value
    changes H.264's choices on these noise videos, so the decoded frames are compared by PSNR."""
    fa, fb = frames_of(a).astype(np.float64), frames_of(b).astype(np.float64)
    assert fa.shape == fb.shape
    mse = np.mean((fa - fb) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) > 35, mse


def frames_of(path) -> np.ndarray:
    """The decoded frames of an mp4 (ffmpeg), as one uint8 array."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen])


# ----------------------------------------------------------------------------- the engine
def test_memory_setting_checks_its_values():
    with pytest.raises(ValueError, match="memory profile must be one of none, expert, block; got 'cpu'"):
        MemorySetting("cpu")
    with pytest.raises(ValueError, match="blocks ahead must be a whole number >= 1; got 0"):
        MemorySetting("block", 0)
    with pytest.raises(ValueError, match="quantize must be fp8 or off; got 'int4'"):
        MemorySetting("none", 2, "int4")
    assert MemorySetting("block").tiling and not MemorySetting("block", vae_tiling=False).tiling
    assert MemorySetting("expert", 5).as_dict()["offload_blocks"] is None  # N only means something for block
    assert MemorySetting("expert", 5).loads_like(MemorySetting("expert", 2, None, False))  # the same pipeline
    assert not MemorySetting("block", 3).loads_like(MemorySetting("block", 2))


def test_a_compiled_server_refuses_the_block_profile():
    """--compile traces the DiT block; the block profile's per-layer hooks cannot be traced: refused at Apply."""
    eng = Engine(demo=True, demo_root=ROOT / ".demo_ckpt", offload="none", compile="aot_eager")
    with pytest.raises(ValueError, match="block profile cannot run compiled"):
        eng.set_memory(MemorySetting("block", 2, None, None))
    assert eng.memory.offload == "none"  # nothing changed
    assert eng.set_memory(MemorySetting("expert", 2, None, None)) == "next"


def test_a_change_during_a_job_applies_after_it(tmp_path):
    """The running job keeps the pipeline it loaded (and records that setting); the next job reloads
    with the new one; block and none give the same video."""
    eng = Engine(demo=True, demo_root=ROOT / ".demo_ckpt", offload="none")
    studio = Studio(eng, HistoryStore(tmp_path), any_size=True)
    values = {"prompt": "a red fox", "size": "64*64", "frame_num": 5, "sampling_steps": 3, "seed": 11,
              "randomize_seed": False}
    req = studio.build_request("ti2v-5B", values)
    at_step, go_on = threading.Event(), threading.Event()
    outcome: list[str] = []

    def on_step(info):
        if info.step == 1 and info.phase == "denoise" and not at_step.is_set():
            at_step.set()
            assert go_on.wait(60)

    result: list = []
    job = threading.Thread(target=lambda: result.append(studio.generate(req, on_step=on_step)))
    job.start()
    assert at_step.wait(120), "the first job never reached step 1"
    outcome.append(eng.set_memory(MemorySetting("block", 2, None, False)))
    go_on.set()
    job.join(120)
    first = result[0]
    assert outcome == ["after_job"]
    assert first.settings["memory"] == NONE  # the job ran (and is recorded) with the setting it loaded
    second = studio.generate(req)
    assert second.settings["memory"] == BLOCK
    assert type(eng.pipeline("ti2v-5B").experts).__name__ == "BlockOffloader"
    same_video(first.video, second.video)
    eng.set_memory(MemorySetting("none"))
    want = eng.generate(req)
    eng.set_memory(MemorySetting("block", 2, None, False))
    assert torch.allclose(eng.generate(req), want, rtol=0, atol=1e-5)  # the frames before encoding
    assert eng.set_memory(MemorySetting("block", 2, None, False)) == "unchanged"
    assert eng.memory_setup() == BLOCK
    assert eng.set_memory(MemorySetting("expert")) == "next"  # idle: the next generation reloads
    assert eng.set_memory(MemorySetting("expert", 7, None, False)) == "unchanged"  # N only matters for block


# -------------------------------------------------------------------------------- the app
@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("memory")
    server = launch_app(base / "outputs", base / "app.log")
    yield server
    stop_app(server)


def test_switching_the_profile_in_the_app_changes_the_next_result(app_server):
    c = app_server.client()
    assert "none" in c.predict("none", 2, False, False, api_name="/set_memory_profile")
    video_none, _, _, link = generate(c, "ti2v-5B", seed=77)
    s_none = settings_of(app_server, ID_RE.search(link).group(1))
    assert s_none["memory"] == NONE

    text = c.predict("block", 2, False, False, api_name="/set_memory_profile")
    assert text == "Saved: the next generation loads the models with **block · 2 blocks ahead · full-precision weights**."
    video_block, _, _, link = generate(c, "ti2v-5B", seed=77)
    s_block = settings_of(app_server, ID_RE.search(link).group(1))
    assert s_block["memory"] == BLOCK
    same_video(video_none, video_block)

    # fp8 + tiled VAE: recorded too (and the app keeps working on CPU)
    c.predict("block", 3, True, True, api_name="/set_memory_profile")
    _, _, _, link = generate(c, "t2v-A14B", seed=77)
    assert settings_of(app_server, ID_RE.search(link).group(1))["memory"] == {
        "offload": "block", "offload_blocks": 3, "quantize": "fp8", "vae_tiling": True}

    # a change while a job runs: that job keeps its setting, the next one gets the new one
    job = c.submit(api_name=API["ti2v-5B"], **generate_args("ti2v-5B", sampling_steps=40, seed=5))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any((u.desc or "").startswith("step ") for u in (job.status().progress_data or [])):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the long job never reported a step")
    text = app_server.client().predict("none", 2, False, False, api_name="/set_memory_profile")
    assert text.startswith("Saved: a generation is running with the previous setting; **none"), text
    _, _, _, link = job.result()
    assert settings_of(app_server, ID_RE.search(link).group(1))["memory"]["quantize"] == "fp8"
    _, _, _, link = generate(c, "ti2v-5B", seed=5)
    assert settings_of(app_server, ID_RE.search(link).group(1))["memory"] == NONE


def test_a_bad_value_gets_a_clear_message_in_the_users_language(app_server):
    import httpx

    def call(data, lang):
        r = httpx.post(app_server.url + "gradio_api/call/set_memory_profile", json={"data": data},
                       headers={"Accept-Language": lang}, timeout=30)
        event_id = r.json()["event_id"]
        text = httpx.get(app_server.url + f"gradio_api/call/set_memory_profile/{event_id}", timeout=60).text
        data = json.loads(text.split("data:", 1)[1].strip())  # the one event: complete or error
        return data["error"] if isinstance(data, dict) else data[0]

    out = call(["block", 0, False, False], "ko")
    assert "메모리 설정을 적용하지 못했습니다: 미리 올릴 블록 수는 1부터 8까지의 정수여야 합니다 (받은 값: 0)." in out, out
    out = call(["block", 2.5, False, False], "zh")
    assert "未应用显存设置：预取块数必须是 1 到 8 的整数（收到：2.5）。" in out, out
    out = call(["block", "many", False, False], "en")
    assert "Memory setting not applied: blocks ahead must be a whole number from 1 to 8; got many." in out, out
    assert "Saved" in call(["expert", "3", False, False], "en")  # a numeric string is a number
    assert "**none · full-precision weights**" in call(["none", 2, False, False], "en")  # back to none


def test_public_server_shows_the_setting_read_only(tmp_path):
    server = launch_app(tmp_path / "outputs", tmp_path / "public.log", "--public", "--offload", "block")
    try:
        with urllib.request.urlopen(server.url + "config", timeout=10) as r:
            config = json.loads(r.read().decode())
        by_id = {c["props"].get("elem_id"): c["props"] for c in config["components"]}
        for elem in ("memory-profile", "memory-blocks", "memory-fp8", "memory-tiling"):
            assert by_id[elem]["interactive"] is False, elem
        assert by_id["memory-apply"]["visible"] is False
        from gradio_client import Client

        with pytest.raises(ValueError, match="set_memory_profile"):
            Client(server.url, verbose=False).predict("none", 2, False, False, api_name="/set_memory_profile")
        # the operator's flags are what runs and what is recorded
        _, _, _, link = generate(server.client(), "ti2v-5B")
        recorded = json.loads((server.outputs / f"{ID_RE.search(link).group(1)}.json").read_text())["memory"]
        assert recorded == {"offload": "block", "offload_blocks": 2, "quantize": None, "vae_tiling": True}
    finally:
        stop_app(server)


# before the browser tests: Playwright's sync API keeps an event loop running in this thread (job_updates
# runs one of its own)
def test_decode_progress_has_its_own_counter(app_server):
    """Denoising counts "k/n steps"; the VAE decode counts its own "k/n latent frames" (not more steps)."""
    from test_app import job_updates

    job = app_server.client().submit(api_name=API["ti2v-5B"], **generate_args("ti2v-5B", frame_num=9))
    units = [u for upd in job_updates(job) if upd.type == "status" for u in (upd.progress_data or []) if u.desc]
    steps = [u for u in units if u.desc.startswith("step ")]
    decode = [u for u in units if u.desc.startswith("decoding ")]
    assert steps and all(u.unit == "steps" and u.length == 3 for u in steps), steps
    assert decode and all(u.unit == "latent frames" and u.length == 3 for u in decode), decode  # 9 frames: 3 latent
    assert [u.index for u in decode] == sorted(u.index for u in decode)


@pytest.mark.browser
def test_memory_panel_in_a_browser(browser, app_server):  # noqa: F811 - the browser fixture
    """The panel in Chromium: open it, pick block (tiled VAE follows, blocks ahead unlocks), Apply, read
    the status; screenshots at desktop (1280) and phone (390) widths."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app_server.client().predict("none", 2, False, False, api_name="/set_memory_profile")
    for width, height, name in ((1280, 900, "memory_panel_desktop.png"), (390, 844, "memory_panel_phone.png")):
        ctx = browser.new_context(viewport={"width": width, "height": height}, locale="en-US")
        page = ctx.new_page()
        page.goto(app_server.url)
        panel = page.locator("#memory-panel")
        panel.get_by_text("⚙ Memory profile (GPU / RAM)").click()
        status = page.locator("#memory-status")
        status.get_by_text("The next generation uses:").wait_for(timeout=60_000)
        if width == 1280:
            assert "none · full-precision weights" in status.inner_text()
            blocks = page.locator("#memory-blocks input[type=number]")
            assert blocks.is_disabled()
            page.locator("#memory-profile").get_by_text("block — DiT blocks streamed from RAM").click()
            page.wait_for_function("() => !document.querySelector('#memory-blocks input[type=number]').disabled")
            assert page.locator("#memory-tiling input[type=checkbox]").is_checked()  # the block default
            page.locator("#memory-fp8 input[type=checkbox]").check()
            page.locator("#memory-apply").click()
            status.get_by_text("Saved: the next generation loads the models with").wait_for(timeout=30_000)
            assert "block · 2 blocks ahead · fp8 · tiled VAE" in status.inner_text()
        else:  # another visitor's page shows what the server now uses
            assert "block · 2 blocks ahead · fp8 · tiled VAE" in status.inner_text()
            assert page.locator("#memory-fp8 input[type=checkbox]").is_checked()
        panel.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / name), full_page=False)
        ctx.close()
    c = app_server.client()
    _, _, _, link = generate(c, "ti2v-5B")
    assert settings_of(app_server, ID_RE.search(link).group(1))["memory"] == {
        "offload": "block", "offload_blocks": 2, "quantize": "fp8", "vae_tiling": True}
    c.predict("none", 2, False, False, api_name="/set_memory_profile")


@pytest.mark.browser
def test_silent_result_video_has_no_volume_button(browser, app_server):  # noqa: F811 - the browser fixture
    """The demo videos have no audio track: the player shows no volume button (assets/style.css)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="en-US")
    page.goto(app_server.url)
    tab = page.locator("#tab-t2v")
    prompt = tab.locator(".prompt textarea").first
    prompt.wait_for(timeout=60_000)
    prompt.fill("a red fox runs through the snow")
    tab.locator("button.generate").click()
    video = tab.locator(".result-video video")
    video.wait_for(timeout=120_000)
    video.hover()
    volume = tab.locator(".result-video button.volume-button")
    assert volume.count() == 1 and not volume.is_visible()  # Gradio renders it; the stylesheet hides it
    assert tab.locator(".result-video [aria-label='Download']").is_visible()  # the rest of the controls stay
    tab.locator(".result-video").screenshot(path=str(ARTIFACTS / "silent_video_controls.png"))
    page.close()
