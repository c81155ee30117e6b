"""Real-browser tests of the page itself (Playwright + Debian's Chromium against `app.py --demo`):
colour contrast of both themes measured from the rendered page, the phone layout, keyboard use,
the weights status line and quality presets, the Korean UI's error text, and History (search,
delete, pages). Screenshots and the measured contrast go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from test_app import generate, launch_app, stop_app
from test_browser import ARTIFACTS, CHROMIUM_ARGS, browser  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The WCAG 2 contrast ratio of an element's text: its computed colour (times the opacity of it and its
# ancestors) over its effective background, found by walking up the ancestors and alpha-compositing
# their background colours until an opaque one (or a gradient of opaque stops: the worst stop counts).
CONTRAST_JS = """
(el) => {
  const parse = (c) => {
    const m = c && c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, base) => [0, 1, 2].map(i => top[i] * top[3] + base[i] * (1 - top[3])).concat([1]);
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const layers = [];
  let bases = null, opacity = 1;
  for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
    const cs = getComputedStyle(n);
    opacity *= parseFloat(cs.opacity || '1');
    const stops = cs.backgroundImage && cs.backgroundImage !== 'none'
      ? (cs.backgroundImage.match(/rgba?\\([^)]+\\)/g) || []).map(parse) : [];
    if (stops.length && stops.every(s => s[3] >= 0.999)) { bases = stops; break; }
    const bg = parse(cs.backgroundColor);
    if (bg && bg[3] >= 0.999) { bases = [bg]; break; }
    if (bg && bg[3] > 0) layers.push(bg);
  }
  if (!bases) bases = [[255, 255, 255, 1]];  // the canvas
  const c = parse(getComputedStyle(el).color);
  let worst = Infinity, fgOut = null, bgOut = null;
  for (const base of bases) {
    let bg = base;
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    const fg = over([c[0], c[1], c[2], c[3] * opacity], bg);
    const r = ratio(fg, bg);
    if (r < worst) { worst = r; fgOut = fg; bgOut = bg; }
  }
  const hex = (v) => '#' + v.slice(0, 3).map(x => Math.round(x).toString(16).padStart(2, '0')).join('');
  return {ratio: Math.round(worst * 100) / 100, fg: hex(fgOut), bg: hex(bgOut)};
}
"""

# The elements the issue measured (demo badge, small labels, Cancel, Generate, active tab) and more labels.
ELEMENTS = {
    "demo badge": "#demo-badge p",
    "small label (Prompt)": "#tab-t2v .prompt [data-testid='block-info']",
    "small label (info under Resolution)": "#tab-t2v .size .info-text, #tab-t2v .size [data-testid='block-info'] + *",
    "small label (slider min/max)": "#tab-t2v .steps .min_value, #tab-t2v .steps .max_value",
    "estimate line": "#tab-t2v .estimate p",
    "weights line": "#tab-t2v .weights p",
    "Cancel": "#tab-t2v button.cancel",
    "Generate": "#tab-t2v button.generate",
    "active tab": "#tabs [role='tab'][aria-selected='true']",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser_page")
    s = launch_app(base / "outputs", base / "app.log")
    yield s
    stop_app(s)


def _open(browser, url, *, theme=None, locale="en-US", **ctx_args):  # noqa: F811
    ctx = browser.new_context(locale=locale, **({"viewport": {"width": 1440, "height": 1000}} | ctx_args))
    page = ctx.new_page()
    page.goto(url + ("?__theme=light" if theme == "light" else ""))
    page.locator("#tab-t2v .prompt textarea").wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    return ctx, page


def measure(page) -> dict[str, dict]:
    """The contrast of every element in ``ELEMENTS`` (the worst match of each selector); Cancel both as
    rendered and enabled (it is disabled while no job of this user runs)."""
    out: dict[str, dict] = {}
    for name, sel in ELEMENTS.items():
        loc = page.locator(sel)
        if loc.count() == 0:
            continue
        results = [loc.nth(i).evaluate(CONTRAST_JS) for i in range(loc.count()) if loc.nth(i).is_visible()]
        if results:
            out[name] = min(results, key=lambda r: r["ratio"])
    cancel = page.locator("#tab-t2v button.cancel")
    if cancel.count() and cancel.is_disabled():
        out["Cancel (disabled)"] = out.pop("Cancel")
        cancel.evaluate("b => b.removeAttribute('disabled')")
        out["Cancel (enabled)"] = cancel.evaluate(CONTRAST_JS)
        cancel.evaluate("b => b.setAttribute('disabled', '')")
    return out


def test_text_contrast_meets_wcag_aa_in_both_themes(browser, server):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = {}
    for theme in ("light", "dark"):
        ctx, page = _open(browser, server.url, theme=theme)
        assert page.evaluate("document.body.classList.contains('dark')") == (theme == "dark")
        report[theme] = measure(page)
        page.screenshot(path=str(ARTIFACTS / f"page_{theme}_after.png"))
        ctx.close()
    (ARTIFACTS / "contrast_after.json").write_text(json.dumps(report, indent=2))
    for theme, values in report.items():
        for name in ("demo badge", "small label (Prompt)", "Generate", "active tab"):
            assert name in values, (theme, name, values)
        assert "Cancel" in values or "Cancel (enabled)" in values, values
        low = {name: v for name, v in values.items() if v["ratio"] < 4.5}
        assert not low, f"{theme}: below 4.5:1: {low}"


def test_phone_tabs_reachable_and_generate_shows_progress(browser, server):  # noqa: F811
    ctx, page = _open(browser, server.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                      device_scale_factor=2)
    tabs = page.locator("#tabs [role='tab']")
    assert tabs.count() == 5  # no "..." overflow menu (T2V, I2V, TI2V, Timeline, History)
    for i in range(5):
        box = tabs.nth(i).bounding_box()
        assert tabs.nth(i).is_visible() and box and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    assert page.locator("button[aria-label='More tabs']").count() == 0
    t2v = page.locator("#tab-t2v")
    # the assistant starts collapsed on a phone
    page.wait_for_function("() => !document.querySelector('#tab-t2v .assistant .f-subject') || "
                           "!document.querySelector('#tab-t2v .assistant .f-subject').offsetParent", timeout=10_000)
    # Generate and Cancel share one row
    g, c = t2v.locator("button.generate").bounding_box(), t2v.locator("button.cancel").bounding_box()
    assert abs(g["y"] - c["y"]) < 4 and c["width"] < 200, (g, c)
    page.screenshot(path=str(ARTIFACTS / "phone_after.png"))
    t2v.locator(".prompt textarea").fill("a red fox runs through a snowy forest")
    t2v.locator("button.generate").tap()
    page.wait_for_timeout(2000)
    out = t2v.locator(".outputs").bounding_box()
    assert out["y"] < 844 and out["y"] + out["height"] > 0, out  # the result/progress column is in view
    t2v.locator(".result-video video").wait_for(state="attached", timeout=120_000)
    page.wait_for_timeout(800)
    page.screenshot(path=str(ARTIFACTS / "phone_after_generate.png"))
    ctx.close()


def test_keyboard_ctrl_enter_generates_and_tab_closes_dropdowns(browser, server):  # noqa: F811
    ctx, page = _open(browser, server.url)
    t2v = page.locator("#tab-t2v")
    before = len(list(server.outputs.glob("*.mp4")))
    prompt = t2v.locator(".prompt textarea")
    prompt.fill("a lighthouse in a storm, waves crashing")
    prompt.press("Control+Enter")
    t2v.locator(".result-video video").wait_for(state="attached", timeout=120_000)
    assert len(list(server.outputs.glob("*.mp4"))) == before + 1
    # Tab out of an open dropdown closes it
    t2v.locator(".g-lighting input").first.click()
    page.wait_for_timeout(300)
    expanded = "() => [...document.querySelectorAll('[role=combobox][aria-expanded=true]')].map(e => e.getAttribute('aria-label'))"
    assert page.evaluate(expanded) == ["Lighting type"]
    page.keyboard.press("Tab")
    page.wait_for_timeout(300)
    page.keyboard.press("Tab")
    page.wait_for_timeout(300)
    assert "Lighting type" not in page.evaluate(expanded)
    assert len(page.evaluate(expanded)) <= 1
    # the built-prompt preview and the share link have accessible names
    assert page.get_by_label(re.compile("Built prompt")).first.count() == 1
    link = t2v.locator(".permalink textarea, .permalink input").first
    assert link.get_attribute("aria-label") or link.evaluate("e => e.labels.length > 0")
    ctx.close()


def test_korean_ui_error_title_and_labels(browser, server):  # noqa: F811
    ctx, page = _open(browser, server.url, locale="ko-KR")
    page.get_by_role("tab", name="텍스트→비디오 (A14B)").wait_for(timeout=30_000)
    assert "플레이그라운드" in page.locator(".header .title").first.inner_text()
    t2v = page.locator("#tab-t2v")
    assert "데모 가중치" in t2v.locator(".block.weights").inner_text()
    t2v.locator("button.generate").click()  # empty prompt
    page.get_by_text(re.compile("프롬프트.*비어")).first.wait_for(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "korean_empty_prompt.png"))
    ctx.close()


def test_weights_line_presets_and_examples_keep_a_typed_prompt(browser, server):  # noqa: F811
    ctx, page = _open(browser, server.url)
    for tab in ("i2v", "ti2v", "t2v"):  # a line at the top of each task tab
        page.locator(f"#tab-{tab}-button").click()
        line = page.locator(f"#tab-{tab} .block.weights")
        assert "Demo weights" in line.inner_text() and line.is_visible()
    t2v = page.locator("#tab-t2v")
    assert t2v.locator(".block.weights").is_visible()  # at the top, not in a collapsed accordion
    assert "Use as prompt ↑" in t2v.locator("button.use-prompt").inner_text()
    t2v.locator(".negative-acc").get_by_text("Negative prompt").first.click()
    assert "garish colors" in t2v.locator(".negative-gloss").first.inner_text()  # the English gloss
    # Official quality, then Draft: the estimate follows
    steps = t2v.locator(".steps input[type=number]").first
    t2v.locator("button.preset-official").click()
    page.wait_for_function("el => el.value === '40'", arg=steps.element_handle(), timeout=10_000)
    page.wait_for_function("() => document.querySelector('#tab-t2v .estimate').innerText.includes('81 frames')",
                           timeout=10_000)
    t2v.locator("button.preset-draft").click()
    page.wait_for_function("el => el.value === '4'", arg=steps.element_handle(), timeout=10_000)
    # picking an example keeps a typed prompt and says how to apply it
    prompt = t2v.locator(".prompt textarea")
    prompt.fill("my own prompt")
    t2v.locator(".examples input").first.click()
    page.get_by_role("option", name="Fisherman at dawn", exact=True).click()
    preview = t2v.locator(".preview textarea")
    page.wait_for_function("el => el.value.includes('fisherman')", arg=preview.element_handle(), timeout=10_000)
    assert prompt.input_value() == "my own prompt"
    page.get_by_text(re.compile("Your prompt was kept")).first.wait_for(timeout=5_000)
    t2v.locator("button.use-prompt").click()
    page.wait_for_function("el => el.value.includes('fisherman')", arg=prompt.element_handle(), timeout=10_000)
    ctx.close()


def test_missing_weights_show_up_front_without_server_paths(browser, tmp_path):  # noqa: F811
    ckpts = tmp_path / "empty-ckpts"
    ckpts.mkdir()
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "WAN_CKPT_DIR": ""}
    s = launch_app(tmp_path / "outputs", tmp_path / "real.log", "--ckpt-dir", str(ckpts), demo=False, env_extra=env)
    try:
        ctx, page = _open(browser, s.url)
        line = page.locator("#tab-t2v .block.weights")
        assert "Weights missing" in line.inner_text() and line.is_visible()
        line.locator("summary").click()
        assert "hf download Wan-AI/Wan2.2-T2V-A14B" in line.inner_text()
        html = page.content()
        for path in (str(tmp_path), str(ckpts), "/.cache/huggingface", ".demo_ckpt"):
            assert path not in html, path
        assert not page.locator("#tab-t2v button", has_text="Download weights").is_visible()  # no --download
        # the draft preset is the default: 480p-class, fewer frames and steps than the official 720p/81/40
        size = page.locator("#tab-t2v .size input").first.input_value()
        assert "832" in size and "480" in size, size
        estimate = page.locator("#tab-t2v .block.estimate").inner_text()
        assert "49 frames" in estimate and "GPU time" in estimate, estimate
        ctx.close()
    finally:
        stop_app(s)
    assert "Searched: --ckpt-dir" in s.log_text()  # the path detail is in the server log


def _copy_result(outputs, gen_id: str, new_id: str, prompt: str) -> None:
    """Another stored result: the real mp4 of ``gen_id`` under a new id and prompt (the store's layout)."""
    shutil.copyfile(outputs / f"{gen_id}.mp4", outputs / f"{new_id}.mp4")
    settings = json.loads((outputs / f"{gen_id}.json").read_text())
    settings.update(id=new_id, prompt=prompt)
    (outputs / f"{new_id}.json").write_text(json.dumps(settings))


def test_history_search_sort_pages_and_delete(browser, tmp_path):  # noqa: F811
    s = launch_app(tmp_path / "outputs", tmp_path / "app.log")
    try:
        from test_app import ID_RE

        _, _, _, link = generate(s.client(), "ti2v-5B", prompt="an otter juggling pebbles")
        gen_id = ID_RE.search(link).group(1)
        for i in range(26):  # 27 results: two pages of 24
            _copy_result(s.outputs, gen_id, f"20200101-0000{i:02d}-{i:06x}", f"archive clip number {i}")
        ctx, page = _open(browser, s.url)
        page.on("dialog", lambda d: d.accept())
        page.get_by_role("tab", name="History").click()
        info = page.locator("#history-page")
        page.wait_for_function("() => document.querySelector('#history-page').innerText.includes('27 results')",
                               timeout=20_000)
        assert "Page 1 of 2" in info.inner_text()
        gallery = page.locator("#history-gallery")
        assert gallery.locator(".thumbnail-item").count() == 24
        assert "otter" in gallery.locator(".thumbnail-item").first.inner_text()  # newest first
        assert re.search(r"\d{4}|\w{3} \d{2}, \d{4} \d{2}:\d{2}", gallery.inner_text())  # date and time shown
        page.locator("#history-next").click()
        page.wait_for_function("() => document.querySelector('#history-page').innerText.includes('Page 2 of 2')",
                               timeout=10_000)
        assert gallery.locator(".thumbnail-item").count() == 3
        # oldest first
        page.locator("#history-sort").get_by_label("Oldest first").check()
        page.wait_for_function("() => document.querySelector('#history-page').innerText.includes('Page 1 of 2')",
                               timeout=10_000)
        assert "archive clip number 0" in gallery.locator(".thumbnail-item").first.inner_text()
        # search
        page.locator("#history-search input, #history-search textarea").first.fill("otter")
        page.wait_for_function("() => document.querySelector('#history-page').innerText.includes('1 results')",
                               timeout=10_000)
        assert gallery.locator(".thumbnail-item").count() == 1
        # select, download settings, delete
        gallery.locator(".thumbnail-item").first.click()
        id_box = page.locator("#history-id input, #history-id textarea").first
        page.wait_for_function("el => el.value.length > 0", arg=id_box.element_handle(), timeout=15_000)
        assert id_box.input_value() == gen_id
        page.locator("#history-delete").wait_for(state="visible", timeout=10_000)
        with page.expect_download() as dl:
            page.locator("#history-download").click()
        saved = json.loads(open(dl.value.path()).read())
        assert saved["id"] == gen_id and saved["prompt"] == "an otter juggling pebbles"
        page.locator("#history-delete").click()
        page.wait_for_function("() => document.querySelector('#history-page').innerText.includes('No result matches')",
                               timeout=10_000)
        assert not (s.outputs / f"{gen_id}.mp4").exists() and not (s.outputs / f"{gen_id}.json").exists()
        page.screenshot(path=str(ARTIFACTS / "history_after.png"), full_page=True)
        ctx.close()
    finally:
        stop_app(s)
