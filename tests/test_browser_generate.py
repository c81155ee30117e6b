"""Real-browser tests of a task tab's generate flow: Playwright drives Debian's Chromium against the
real app (``app.py --demo``, tiny random weights; every generation really runs on the CPU).

Share link round trip in a fresh browser, an input error that leaves the previous result in place,
bad image uploads answered on the image field (no HTTP 500), Cancel, a batch of seeds, every rejected
pre-fill parameter named, the "output will be W×H" hint, and the one progress display (with its
decoding phase). Screenshots of a tab after a generation go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re

import pytest

from test_app import ID_RE, SAMPLE_IMAGE, SMALL, job_updates, launch_app, stop_app
from test_browser import ARTIFACTS, browser  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser-generate")
    s = launch_app(base / "outputs", base / "app.log")
    yield s
    stop_app(s)
    assert "generation failed" not in s.log_text(), s.log_text()[-4000:]


def _field(panel, cls: str):
    return panel.locator(f".{cls} input, .{cls} textarea").first


def _set(panel, cls: str, value) -> None:
    box = _field(panel, cls)
    box.fill(str(value))
    box.press("Tab")


def _status(panel):
    return panel.locator(".block.status")


def _open(browser, url: str, tab: str, **ctx_args):
    ctx = browser.new_context(**{"viewport": {"width": 1440, "height": 900}, "locale": "en-US", **ctx_args})
    page = ctx.new_page()
    server_errors: list[tuple[int, str]] = []
    page.on("response", lambda r: server_errors.append((r.status, r.url)) if r.status >= 500 else None)
    if tab != "tab-t2v" and "?" not in url:
        url += "?task=" + tab.removeprefix("tab-")  # a pre-fill link selects the tab
    page.goto(url)
    panel = page.locator(f"#{tab}")
    panel.locator(".prompt textarea").wait_for(state="visible", timeout=60_000)
    return ctx, page, panel, server_errors


def _generate(page, panel, *, prompt: str, seed: int | None = None, steps: int = 3, timeout: float = 120_000) -> str:
    """Fill the prompt (and a fixed seed), click Generate, wait for the result; returns its permalink."""
    panel.locator(".prompt textarea").fill(prompt)
    _set(panel, "steps", steps)
    if seed is not None:
        panel.locator(".randomize input[type=checkbox]").uncheck()
        _set(panel, "seed", seed)
    old = panel.locator(".permalink input").input_value() if panel.locator(".permalink input").count() else ""
    panel.locator("button.generate").click()
    page.wait_for_function(
        "([el, old]) => { const i = el.querySelector('.permalink input');"
        " return i && i.value.includes('?gen=') && i.value !== old; }",
        arg=[panel.element_handle(), old], timeout=timeout,
    )
    return panel.locator(".permalink input").input_value()


def test_share_link_round_trip_in_a_fresh_context(browser, server):
    ctx, page, t2v, errors = _open(browser, server.url, "tab-t2v")
    # one share mechanism: the permalink, shown once a result exists; no "Share via link" button
    assert page.get_by_role("button", name="Share via link").count() == 0
    assert not t2v.locator(".permalink").is_visible()
    assert t2v.locator("button.cancel").is_disabled()
    _set(t2v, "frames", 13)
    link = _generate(page, t2v, prompt="a paper lantern drifting over a night river", seed=4321, steps=4)
    assert re.fullmatch(re.escape(server.url) + r"\?gen=\d{8}-\d{6}-[0-9a-f]{6}", link), link
    assert t2v.locator(".permalink").is_visible() and _field(t2v, "used-seed").input_value() == "4321"
    src = t2v.locator(".result-video video").get_attribute("src")
    assert src
    page.screenshot(path=str(ARTIFACTS / "generate_desktop.png"))
    ctx.close()

    # a fresh browser context (no cookies, no storage): the link alone restores prompt, settings, video
    ctx2 = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    other = ctx2.new_page()
    other.goto(link)
    t2v2 = other.locator("#tab-t2v")
    other.wait_for_function(
        "el => el.value.includes('paper lantern')", arg=t2v2.locator(".prompt textarea").element_handle(),
        timeout=60_000,
    )
    assert t2v2.locator(".prompt textarea").input_value() == "a paper lantern drifting over a night river"
    assert _field(t2v2, "seed").input_value() == "4321"
    assert not t2v2.locator(".randomize input[type=checkbox]").is_checked()
    assert _field(t2v2, "steps").input_value() == "4" and _field(t2v2, "frames").input_value() == "13"
    t2v2.locator(".result-video video").wait_for(state="attached", timeout=30_000)
    assert t2v2.locator(".result-video video").get_attribute("src")
    assert t2v2.locator(".permalink input").input_value() == link
    ctx2.close()
    assert not errors, errors


def test_input_error_keeps_the_previous_result(browser, server):
    ctx, page, ti2v, errors = _open(browser, server.url, "tab-ti2v")
    link = _generate(page, ti2v, prompt="a glass whale over a city", seed=11)
    src = ti2v.locator(".result-video video").get_attribute("src")
    for make_bad, expected in [
        (lambda: ti2v.locator(".prompt textarea").fill(""), "Prompt: is empty"),
        (lambda: (ti2v.locator(".prompt textarea").fill("a whale"), _set(ti2v, "frames", 10)), "Frames: must be"),
        (lambda: (_set(ti2v, "frames", 9), _set(ti2v, "size", "1000*1000")), "Resolution"),
    ]:
        make_bad()
        ti2v.locator("button.generate").click()
        page.wait_for_function("([el, t]) => el.innerText.includes(t)",
                               arg=[_status(ti2v).element_handle(), expected], timeout=15_000)
        assert "Not started" in _status(ti2v).inner_text()
        # the result the user still wants stays: video, seed, share link; no red "Error" pills
        assert ti2v.locator(".result-video video").get_attribute("src") == src
        assert ti2v.locator(".permalink input").input_value() == link
        assert _field(ti2v, "used-seed").input_value() == "11"
        assert page.locator(".error").count() == 0
        assert ti2v.locator("button.cancel").is_disabled()
    assert not errors, errors
    ctx.close()

    # in the user's language where the message is ours
    ctx, page, t2v, _ = _open(browser, server.url, "tab-t2v", locale="ko-KR")
    t2v.locator("button.generate").click()
    page.wait_for_function("el => el.innerText.includes('비어 있습니다')", arg=_status(t2v).element_handle(),
                           timeout=15_000)
    assert "시작하지 않음" in _status(t2v).inner_text()
    ctx.close()


def test_bad_uploads_are_answered_on_the_image_field(browser, server, tmp_path):
    from PIL import Image

    not_image = tmp_path / "notes.png"
    not_image.write_text("definitely not a PNG")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (20, 20), "red").save(tiny)
    good = tmp_path / "good.png"
    Image.new("RGB", (320, 240), "blue").save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:300])

    ctx, page, i2v, errors = _open(browser, server.url, "tab-i2v")
    note = i2v.locator(".block.image-note")
    upload = i2v.locator(".input-image input[type=file]")
    for path, expected in [(not_image, "is not an image"), (tiny, "too small"), (truncated, "damaged or truncated")]:
        upload.set_input_files(str(path))
        note.wait_for(state="visible", timeout=15_000)
        page.wait_for_function("([el, t]) => el.innerText.includes(t)", arg=[note.element_handle(), expected],
                               timeout=15_000)
        assert "This image cannot be used" in note.inner_text()
        # the bad image is cleared: no broken thumbnail, and Generate names the missing image
        page.wait_for_function("el => !el.querySelector('img')", arg=i2v.locator(".input-image").element_handle(),
                               timeout=10_000)
    i2v.locator(".prompt textarea").fill("the lake ripples")
    i2v.locator("button.generate").click()
    page.wait_for_function("el => el.innerText.includes('upload one')", arg=_status(i2v).element_handle(),
                           timeout=15_000)
    # a good image clears the note
    upload.set_input_files(str(good))
    note.wait_for(state="hidden", timeout=15_000)
    assert page.locator(".error").count() == 0
    assert not errors, errors  # no HTTP 500 anywhere on the way
    ctx.close()


def test_output_size_hint_follows_the_image_and_the_size(browser, server, tmp_path):
    from PIL import Image

    portrait = tmp_path / "portrait.png"
    Image.new("RGB", (300, 700), "green").save(portrait)  # 3:7, no preset has that shape
    ctx, page, ti2v, errors = _open(browser, server.url, "tab-ti2v")
    note = ti2v.locator(".block.size-note")
    assert note.count() == 0 or not note.is_visible()
    ti2v.locator(".input-image input[type=file]").set_input_files(str(portrait))
    # the upload picks the closest preset (portrait); the image's shape still changes the output
    page.wait_for_function("el => el.value.startsWith('96×128')", arg=_field(ti2v, "size").element_handle(), timeout=15_000)
    page.wait_for_function(
        "() => { const n = document.querySelector('#tab-ti2v .block.size-note');"
        " return n && /Output will be \\d+×\\d+: .* 96×128/.test(n.innerText); }", timeout=15_000)
    first = note.inner_text()
    w, h = map(int, re.search(r"(\d+)×(\d+)", first).groups())
    assert h > w and (w, h) != (96, 128), first
    _set(ti2v, "size", "256*256")
    page.wait_for_function(
        "() => { const n = document.querySelector('#tab-ti2v .block.size-note');"
        " return n && n.innerText.includes('256×256'); }", timeout=15_000)
    assert not errors, errors
    ctx.close()


def test_cancel_shows_where_it_stopped(browser, server):
    ctx, page, t2v, errors = _open(browser, server.url, "tab-t2v")
    t2v.locator(".prompt textarea").fill("a very long run")
    _set(t2v, "steps", 100)
    _set(t2v, "frames", 81)
    cancel = t2v.locator("button.cancel")
    assert cancel.is_disabled()
    t2v.locator("button.generate").click()
    page.wait_for_function("el => /step \\d+\\/100/.test(el.innerText)", arg=_status(t2v).element_handle(),
                           timeout=60_000)
    assert cancel.is_enabled()
    cancel.click()
    page.wait_for_function("el => el.innerText.includes('Cancelled')", arg=_status(t2v).element_handle(),
                           timeout=30_000)
    # where it stopped: a step, or (a fast machine finishes the 100 steps before the click lands) a decoded frame
    assert re.search(r"Cancelled (at step \d+/100|while decoding \(frame \d+/\d+\)); nothing was saved",
                     _status(t2v).inner_text()), _status(t2v).inner_text()
    page.wait_for_function("el => el.disabled", arg=cancel.element_handle(), timeout=10_000)
    assert not t2v.locator(".permalink").is_visible()  # nothing was saved, no result to share
    assert page.locator(".error").count() == 0
    assert not errors, errors
    ctx.close()


def test_batch_of_three_seeds(browser, server):
    before = {p.stem for p in server.outputs.glob("*.json")}
    ctx, page, t2v, errors = _open(browser, server.url, "tab-t2v")
    _set(t2v, "batch-count", 3)
    t2v.locator(".prompt textarea").fill("a kite over the dunes")
    t2v.locator(".randomize input[type=checkbox]").uncheck()
    _set(t2v, "seed", 500)
    t2v.locator("button.generate").click()
    page.wait_for_function("el => el.innerText.startsWith('3/3 · Done')", arg=_status(t2v).element_handle(),
                           timeout=180_000)
    gallery = t2v.locator(".block.batch-gallery")
    assert gallery.is_visible() and gallery.locator(".thumbnail-item").count() == 3
    new = {p.stem for p in server.outputs.glob("*.json")} - before
    seeds = sorted(json.loads((server.outputs / f"{i}.json").read_text())["seed"] for i in new)
    assert seeds == [500, 501, 502], seeds  # three results, each in History with its own id
    assert _field(t2v, "used-seed").input_value() == "502"  # the newest one in the player
    link = t2v.locator(".permalink input").input_value()
    assert ID_RE.search(link).group(1) in new
    # picking a batch item shows it in the player with its own seed and link
    gallery.locator(".thumbnail-item").first.click()
    page.wait_for_function("el => el.value === '500'", arg=_field(t2v, "used-seed").element_handle(), timeout=10_000)
    assert t2v.locator(".permalink input").input_value() != link
    page.screenshot(path=str(ARTIFACTS / "generate_batch_desktop.png"))
    assert not errors, errors
    ctx.close()


def test_prefill_link_names_every_rejected_parameter(browser, server):
    ctx = browser.new_context(viewport={"width": 1300, "height": 900}, locale="en-US")
    page = ctx.new_page()
    page.goto(server.url + "?task=i2v&frames=10&size=999*1&seed=abc")
    notice = page.locator("#notice")
    notice.wait_for(state="visible", timeout=60_000)
    text = notice.inner_text()
    for name in ("frames:", "size:", "seed:"):
        assert name in text, text
    assert "width=999, height=1" in text and "'abc'" in text and "got 10" in text, text
    ctx.close()


def test_phone_layout_after_a_generation(browser, server):
    ctx, page, t2v, errors = _open(browser, server.url, "tab-t2v", viewport={"width": 390, "height": 844},
                                   is_mobile=True, has_touch=True)
    _generate(page, t2v, prompt="a heron lands on a misty pond", seed=77)
    t2v.locator(".result-video").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "generate_phone.png"))
    box = t2v.locator(".result-video video").bounding_box()
    assert box and box["height"] <= 0.7 * 844, box  # a result never fills the whole screen
    assert not errors, errors
    ctx.close()


def test_one_progress_display_with_a_decoding_phase(server):
    """The phases reach the client in order: queued, steps k/n with the expert, decoding k/n, writing."""
    job = server.client().submit(api_name="/generate_t2v", prompt="a paper boat", **{**SMALL, "frame_num": 17})
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # job_updates runs its own event loop; Playwright holds this thread's
        updates = pool.submit(job_updates, job).result(timeout=120)
    descs = [unit.desc for u in updates if u.type == "status" for unit in (u.progress_data or []) if unit.desc]
    steps = [i for i, d in enumerate(descs) if d.startswith("step ")]
    decoding = [i for i, d in enumerate(descs) if d.startswith("decoding ")]
    assert steps and decoding and max(steps) < min(decoding), descs
    assert any(re.fullmatch(r"decoding \d+/5( · ETA \d+s)?", descs[i]) for i in decoding), descs
    assert "writing the mp4…" in descs[max(decoding):], descs
    assert not any("%" in d for d in descs), descs
    # the page: progress only on the status line (not over the video, seed or link)
    config = json.loads(__import__("urllib.request").request.urlopen(server.url + "config", timeout=10).read())
    status_ids = {c["id"] for c in config["components"] if "status" in (c["props"].get("elem_classes") or [])}
    for dep in config["dependencies"]:
        if (dep.get("api_name") or "").startswith("generate_"):
            assert set(dep["show_progress_on"] or []) <= status_ids and dep["show_progress_on"], dep
