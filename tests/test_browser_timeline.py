"""Real-browser tests of long videos (`app.py --demo`, Debian's Chromium): the Timeline tab and the I2V last frame.

* the generate box makes a clip (text -> T2V), Extend twice (each clip starts from the last frame of the one
  before), reorder, export one mp4 (frames counted by ffmpeg: the clips minus the overlaps), the timeline's
  permalink reopens it, also after a server restart;
* bad input gets a clear error where the user looks: a file that is not an image or a video in the box, a
  timeline link that names no timeline, the export of an empty timeline, an unknown result id;
* I2V-A14B: a first and a last frame (from the tab, and through generate_i2v's last_image), the result's
  permalink restores both.

Screenshots go to tests/artifacts/ (desktop 1280 wide and phone 390 wide).
"""

from __future__ import annotations

import re

import pytest

from test_app import ROOT, SAMPLE_IMAGE, launch_app, mp4_info, stop_app
from test_browser import ARTIFACTS, browser  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMELINE_LINK = re.compile(r"\?timeline=(\d{8}-\d{6}-[0-9a-f]{6})$")
FRAMES = 9  # the demo's default frame count of every tab


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("browser_timeline")


@pytest.fixture(scope="module")
def server(outputs):
    s = launch_app(outputs / "outputs", outputs / "app.log")
    yield s
    stop_app(s)


def _timeline_tab(page):
    page.get_by_role("tab", name="Timeline").click()
    tab = page.locator("#tab-timeline")
    tab.locator("#timeline-box textarea").wait_for(timeout=60_000)
    return tab


def _wait_text(page, locator, text: str, timeout: float = 120_000) -> str:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("([el, t]) => el.innerText.includes(t)", arg=[locator.element_handle(), text],
                               timeout=timeout)
    except PlaywrightTimeout:
        raise AssertionError(f"{text!r} never showed; the element says {locator.inner_text()!r}") from None
    return locator.inner_text()


def _assert_link_fills_both_images(page, link: str, gen_id: str) -> None:
    """An I2V result's permalink restores the first image and the last frame from the result's own copies."""
    page.goto(link)
    page.locator("#notice").wait_for(state="visible", timeout=60_000)
    i2v = page.locator("#tab-i2v")
    i2v.locator(".input-image img").wait_for(timeout=30_000)
    i2v.locator(".last-image img").wait_for(timeout=30_000)
    assert f"{gen_id}.last.png" in (i2v.locator(".last-image img").get_attribute("src") or "")
    assert f"{gen_id}.input.png" in (i2v.locator(".input-image img").get_attribute("src") or "")


def _submit_box(tab) -> None:
    tab.locator("#timeline-box button").last.click()  # "Add clip" (the box's submit button)


def _captions(tab) -> list[str]:
    return [c.strip() for c in tab.locator("#timeline-clips .caption-label").all_inner_texts()]


def test_generate_extend_twice_reorder_export_and_reopen_after_restart(browser, server, outputs):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1280, "height": 1300}, locale="en-US")
    page = ctx.new_page()
    page.goto(server.url)
    tab = _timeline_tab(page)
    route = tab.locator("#timeline-route")

    # the generate box says what will run, then makes the first clip (text alone: T2V-A14B)
    tab.locator("#timeline-box textarea").fill("a red fox trots through fresh snow")
    assert "Text-to-video (T2V-A14B)" in _wait_text(page, route, "Text only")
    _submit_box(tab)
    summary = tab.locator("#timeline-summary")
    _wait_text(page, summary, "1 clips")
    assert "Done in" in tab.locator("#timeline-status").inner_text()
    link_box = tab.locator("#timeline-link input, #timeline-link textarea").first
    page.wait_for_function("el => el.value.includes('?timeline=')", arg=link_box.element_handle(), timeout=10_000)
    link = link_box.input_value()
    m = TIMELINE_LINK.search(link)
    assert m and link.startswith(server.url), link
    tid = m.group(1)

    # Extend twice: each clip continues the last one from its last frame (I2V-A14B), overlap 1
    for n, prompt in ((2, "the fox stops and sniffs the air"), (3, "the fox leaps into a snowdrift")):
        tab.locator("#timeline-extend-prompt textarea").fill(prompt)
        tab.locator("#timeline-extend-btn").click()
        _wait_text(page, summary, f"{n} clips")
        selected = _wait_text(page, tab.locator("#timeline-selected"), prompt)
        assert f"Clip {n} of {n}" in selected and "i2v-A14B" in selected and "continues" in selected, selected
    captions = _captions(tab)
    assert [c.split(" · ")[0] for c in captions] == ["1", "2", "3"], captions
    assert "red fox" in captions[0] and "sniffs" in captions[1] and "leaps" in captions[2], captions
    assert f"{3 * FRAMES - 2} frames" in summary.inner_text()  # two overlaps of 1 frame
    title = tab.locator("#timeline-title input, #timeline-title textarea").first
    title.fill("Fox in the snow")
    title.press("Enter")
    assert summary.inner_text().startswith("Fox in the snow") or _wait_text(page, summary, "Fox in the snow", 15_000)
    page.screenshot(path=str(ARTIFACTS / "timeline_desktop.png"), full_page=True)

    # reorder: the last clip moves up to the middle
    tab.locator("#timeline-clips .thumbnail-item").nth(2).click()
    _wait_text(page, tab.locator("#timeline-selected"), "Clip 3 of 3")
    tab.locator("#timeline-up").click()
    page.wait_for_function("el => el.innerText.includes('2 · ') && el.innerText.indexOf('leaps') < el.innerText.indexOf('sniffs')",
                           arg=tab.locator("#timeline-clips").element_handle(), timeout=15_000)
    captions = _captions(tab)
    assert "red fox" in captions[0] and "leaps" in captions[1] and "sniffs" in captions[2], captions
    assert "Clip 2 of 3" in tab.locator("#timeline-selected").inner_text()

    # regenerate the first clip (text-to-video) with another seed and prompt: it is replaced in place
    tab.locator("#timeline-clips .thumbnail-item").nth(0).click()
    _wait_text(page, tab.locator("#timeline-selected"), "Clip 1 of 3")
    tab.locator("#timeline-regen-prompt textarea").fill("a grey fox trots through fresh snow")
    tab.locator("#timeline-regen-random input").uncheck()
    tab.locator("#timeline-regen-seed input").fill("7")
    tab.locator("#timeline-regen-btn").click()
    selected = _wait_text(page, tab.locator("#timeline-selected"), "grey fox")
    assert "Clip 1 of 3" in selected and "t2v-A14B" in selected and "seed 7 " in selected, selected
    captions = _captions(tab)
    assert captions[0].startswith("1 · seed 7 · a grey fox") and "leaps" in captions[1], captions

    # export: one mp4, shown and offered for download; ffmpeg counts the clips' frames minus the overlaps
    tab.locator("#timeline-export").click()
    _wait_text(page, tab.locator("#timeline-status"), "Exported 3 clips")
    exported = server.outputs / "timelines" / f"{tid}.mp4"
    assert exported.is_file()
    info = mp4_info(exported)
    assert info["frames"] == 3 * FRAMES - 2 and info["fps"] == 16, info
    download = tab.locator("#timeline-download")
    download.wait_for(state="visible", timeout=10_000)
    tab.locator("#timeline-player video").wait_for(state="attached", timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "timeline_exported.png"), full_page=True)

    # the permalink in a new page: the Timeline tab, the clips in their new order
    other = ctx.new_page()
    other.goto(link)
    notice = other.locator("#notice")
    notice.wait_for(state="visible", timeout=60_000)
    assert "Opened timeline" in notice.inner_text()
    tab2 = other.locator("#tab-timeline")
    _wait_text(other, tab2.locator("#timeline-summary"), "3 clips")
    captions = _captions(tab2)
    assert "grey fox" in captions[0] and "leaps" in captions[1] and "sniffs" in captions[2], captions
    ctx.close()

    # a restart: the timeline and its permalink survive (timelines are files next to the history)
    stop_app(server)
    again = launch_app(server.outputs, outputs / "app2.log")
    try:
        ctx = browser.new_context(viewport={"width": 1280, "height": 1300}, locale="en-US")
        page = ctx.new_page()
        page.goto(again.url + f"?timeline={tid}")
        tab = page.locator("#tab-timeline")
        assert "Fox in the snow" in _wait_text(page, tab.locator("#timeline-summary"), "3 clips", timeout=60_000)
        captions = _captions(tab)
        assert "grey fox" in captions[0] and "leaps" in captions[1] and "sniffs" in captions[2], captions
        ctx.close()
    finally:
        stop_app(again)
        server.proc = again.proc  # the module's fixture stops this one (already stopped: a no-op)


@pytest.fixture(scope="module")
def server2(outputs):
    s = launch_app(outputs / "outputs2", outputs / "app3.log")
    yield s
    stop_app(s)


def test_bad_input_gets_a_clear_error_and_the_app_keeps_serving(browser, server2, tmp_path):  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1280, "height": 1300}, locale="en-US")
    page = ctx.new_page()

    # a link to a timeline that does not exist
    page.goto(server2.url + "?timeline=20200101-000000-abcdef")
    notice = page.locator("#notice")
    notice.wait_for(state="visible", timeout=60_000)
    assert "No timeline with id 20200101-000000-abcdef" in notice.inner_text()
    page.goto(server2.url + "?timeline=..%2F..%2Fetc%2Fpasswd")
    notice.wait_for(state="visible", timeout=60_000)
    assert "not a valid timeline id" in notice.inner_text()

    tab = _timeline_tab(page)
    status = tab.locator("#timeline-status")
    # a file that is neither an image nor a video: the note says so at once, and the run does not start
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    tab.locator("#timeline-box input[type=file]").set_input_files(str(notes))
    assert "notes.txt is not an image or a video" in _wait_text(page, tab.locator("#timeline-route"), "notes.txt")
    _submit_box(tab)
    assert "Not started" in _wait_text(page, status, "notes.txt is not an image or a video", timeout=15_000)
    # an .mp4 that is not a video (a fresh page: the box holds one file at a time)
    page.goto(server2.url)
    tab = _timeline_tab(page)
    status = tab.locator("#timeline-status")
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"this is not an mp4")
    tab.locator("#timeline-box input[type=file]").set_input_files(str(fake))
    _wait_text(page, tab.locator("#timeline-route"), "Continue from its last frame")
    _submit_box(tab)
    assert "Not started" in _wait_text(page, status, "fake.mp4", timeout=15_000)

    # an image: image-to-video, on the model chosen below the box
    page.goto(server2.url)
    tab = _timeline_tab(page)
    status = tab.locator("#timeline-status")
    tab.locator("#timeline-box input[type=file]").set_input_files(str(SAMPLE_IMAGE))
    assert "Image-to-video (i2v-A14B)" in _wait_text(page, tab.locator("#timeline-route"), "Image attached")
    tab.locator("#timeline-task").get_by_label("TI2V-5B").check()
    _wait_text(page, tab.locator("#timeline-route"), "Image-to-video (ti2v-5B)", 15_000)

    # Extend with no timeline open
    tab.locator("#timeline-extend-btn").click()
    _wait_text(page, status, "No timeline is open", timeout=15_000)

    # a clip, then remove it: exporting the empty timeline says there is nothing to export
    page.goto(server2.url)
    tab = _timeline_tab(page)
    tab.locator("#timeline-box textarea").fill("a paper boat on a pond")
    _submit_box(tab)
    _wait_text(page, tab.locator("#timeline-summary"), "1 clips")
    tab.locator("#timeline-remove").click()  # the new clip is selected
    _wait_text(page, tab.locator("#timeline-summary"), "no clips yet", timeout=15_000)
    tab.locator("#timeline-export").click()
    status = tab.locator("#timeline-status")
    assert "no clips" in _wait_text(page, status, "add a clip before exporting it", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "timeline_empty_export.png"), full_page=True)

    # History: "Add to timeline" with an id that is not a result
    page.get_by_role("tab", name="History").click()
    id_box = page.locator("#history-id input, #history-id textarea").first
    id_box.fill("20200101-000000-abcdef")
    page.locator("#history-to-timeline").click()
    notice = page.locator("#notice")
    assert "No result with id 20200101-000000-abcdef" in _wait_text(page, notice, "20200101-000000-abcdef", 15_000)

    # the app still serves: a clip from the generate box
    tab = _timeline_tab(page)
    tab.locator("#timeline-box textarea").fill("a lantern drifts over the water")
    _submit_box(tab)
    _wait_text(page, tab.locator("#timeline-summary"), "1 clips")

    # History's "Add to timeline" with a real result: it joins the open timeline, the Timeline tab shows it
    page.get_by_role("tab", name="History").click()
    page.locator("#history-refresh, button:has-text('Refresh')").first.click()
    gallery = page.locator("#history-gallery")
    gallery.locator(".thumbnail-item").first.wait_for(timeout=30_000)
    gallery.locator(".thumbnail-item").first.click()
    page.wait_for_function("el => el.value.length > 0", arg=id_box.element_handle(), timeout=15_000)
    page.locator("#history-to-timeline").click()
    assert "added to timeline" in _wait_text(page, page.locator("#notice"), "added to timeline", 15_000)
    _wait_text(page, tab.locator("#timeline-summary"), "2 clips", 15_000)
    assert tab.locator("#timeline-summary").is_visible()
    ctx.close()
    assert "Traceback" not in server2.log_text(), server2.log_text()[-3000:]


def test_timeline_in_korean_and_chinese(browser, server2):  # noqa: F811
    for locale, tab_name, route, export in (("ko-KR", "타임라인", "텍스트만", "mp4 하나로 내보내기"),
                                            ("zh-CN", "时间线", "仅文本", "导出为一个 mp4")):
        ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, locale=locale)
        page = ctx.new_page()
        page.goto(server2.url)
        page.get_by_role("tab", name=tab_name).click()
        tab = page.locator("#tab-timeline")
        tab.locator("#timeline-box textarea").fill("a cat")
        _wait_text(page, tab.locator("#timeline-route"), route, 15_000)
        assert tab.locator("#timeline-export").inner_text().strip() == export
        tab.locator("#timeline-export").click()  # no timeline open: said in the visitor's language
        _wait_text(page, tab.locator("#timeline-status"), "⚠", 15_000)
        assert "No timeline" not in tab.locator("#timeline-status").inner_text()
        page.screenshot(path=str(ARTIFACTS / f"timeline_{locale}.png"))
        ctx.close()


def test_i2v_last_frame_is_used_stored_and_restored_by_the_permalink(browser, server2, tmp_path):  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1280, "height": 1300}, locale="en-US")
    page = ctx.new_page()
    page.goto(server2.url)
    page.get_by_role("tab", name="Image-to-Video (A14B)").click()
    i2v = page.locator("#tab-i2v")
    i2v.locator(".input-image input[type=file]").set_input_files(str(SAMPLE_IMAGE))
    # a last frame that is not an image: said under the images, and the slot is cleared
    bad = tmp_path / "last.png"
    bad.write_text("definitely not a PNG")
    i2v.locator(".last-image input[type=file]").set_input_files(str(bad))
    note = i2v.locator(".block.image-note")
    assert "This last frame cannot be used" in _wait_text(page, note, "is not an image", 15_000)
    page.wait_for_function("el => !el.querySelector('img')", arg=i2v.locator(".last-image").element_handle(),
                           timeout=10_000)
    last = ROOT / "assets" / "samples" / "cat_portrait.png"
    last = last if last.is_file() else SAMPLE_IMAGE
    i2v.locator(".last-image input[type=file]").set_input_files(str(last))
    i2v.locator(".last-image img").wait_for(timeout=15_000)
    i2v.locator(".prompt textarea").fill("the sun sets behind the mountains")
    i2v.locator("button.generate").click()
    link_box = i2v.locator(".permalink input, .permalink textarea").first
    page.wait_for_function("el => el.value.includes('?gen=')", arg=link_box.element_handle(), timeout=120_000)
    link = link_box.input_value()
    gen_id = link.split("?gen=")[1]
    assert (server2.outputs / f"{gen_id}.last.png").is_file()
    settings = (server2.outputs / f"{gen_id}.json").read_text()
    assert f'"last_image": "{last.name}"' in settings
    page.screenshot(path=str(ARTIFACTS / "i2v_last_frame.png"))

    _assert_link_fills_both_images(ctx.new_page(), link, gen_id)
    ctx.close()


def test_i2v_last_frame_from_the_api_is_restored_by_the_permalink(browser, server2):  # noqa: F811
    """generate_i2v(..., last_image=) (gradio_client) runs the tab's runner: its permalink fills both image slots."""
    from gradio_client import handle_file

    from test_app import ID_RE, generate

    last = ROOT / "assets" / "samples" / "cat_portrait.png"
    _, _, _, link = generate(server2.client(), "i2v-A14B", prompt="the lake at dusk", last_image=handle_file(str(last)))
    gen_id = ID_RE.search(link).group(1)
    assert (server2.outputs / f"{gen_id}.last.png").is_file()
    ctx = browser.new_context(viewport={"width": 1280, "height": 1300}, locale="en-US")
    _assert_link_fills_both_images(ctx.new_page(), link, gen_id)
    ctx.close()


def test_timeline_on_a_phone(browser, server2):  # noqa: F811
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US", is_mobile=True, has_touch=True,
                              device_scale_factor=2)
    page = ctx.new_page()
    page.goto(server2.url)
    tab = _timeline_tab(page)
    # the box, then the player and Extend, all inside the screen's width
    for sel in ("#timeline-box", "#timeline-player", "#timeline-extend-btn", "#timeline-clips", "#timeline-export"):
        box = tab.locator(sel).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 391, (sel, box)
    assert tab.locator("#timeline-box").bounding_box()["y"] < tab.locator("#timeline-player").bounding_box()["y"]
    tab.locator("#timeline-box textarea").fill("a kite over the dunes")
    _submit_box(tab)
    _wait_text(page, tab.locator("#timeline-summary"), "1 clips")
    up, remove = tab.locator("#timeline-up").bounding_box(), tab.locator("#timeline-remove").bounding_box()
    assert abs(up["y"] - remove["y"]) < 4, (up, remove)  # Move up, Move down and Remove share one row
    page.screenshot(path=str(ARTIFACTS / "timeline_phone.png"), full_page=True)
    ctx.close()


def test_cancel_stops_a_timeline_run(browser, server2):  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1280, "height": 1300}, locale="en-US")
    page = ctx.new_page()
    page.goto(server2.url)
    # the generate box runs with the T2V tab's settings: 100 steps keep the run going long enough to cancel it
    t2v = page.locator("#tab-t2v")
    steps = t2v.locator(".steps input").first
    steps.wait_for(timeout=60_000)
    frames = t2v.locator(".frames input").first
    page.wait_for_timeout(3000)  # let the page's load events (restore, weights line) finish first
    for _ in range(20):  # the page's load events may still reset the form: type until the values stay
        for box, value in ((steps, "100"), (frames, "81")):  # 100 steps x 81 frames: seconds even when idle
            box.fill(value)
            box.press("Tab")
        page.wait_for_timeout(500)
        if steps.input_value() == "100" and frames.input_value() == "81":
            break
    assert steps.input_value() == "100" and frames.input_value() == "81"
    tab = _timeline_tab(page)
    tab.locator("#timeline-box textarea").fill("a clip that is cancelled")
    _submit_box(tab)
    cancel = tab.locator("#timeline-cancel")
    _wait_text(page, tab.locator("#timeline-status"), "step", 60_000)  # running (it may queue behind another job)
    page.wait_for_function("el => !el.disabled", arg=cancel.element_handle(), timeout=15_000)
    cancel.click()
    status = _wait_text(page, tab.locator("#timeline-status"), "Cancelled", 60_000)
    assert "nothing was saved" in status, status
    page.wait_for_function("el => el.disabled", arg=cancel.element_handle(), timeout=15_000)
    assert "no timeline" in tab.locator("#timeline-summary").inner_text().lower()  # nothing was added
    ctx.close()
