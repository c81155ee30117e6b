"""Real-browser tests of the LoRA panel and the Fast (Lightning) preset: Playwright drives Debian's
Chromium against ``app.py --demo`` (tiny random weights and tiny random LoRAs; every generation runs).

Pick a demo LoRA pair, set per-expert strengths, generate, reopen the permalink in a fresh context: the
rows and strengths come back. The Fast (4-step) button fills steps / solver and the Lightning rows, and a
generation with it stores schedule "lightning" and the phases. A screenshot of the panel goes to
tests/artifacts/loras_desktop.png.
"""

from __future__ import annotations

import json
import re

import pytest

from test_app import launch_app, stop_app
from test_browser import ARTIFACTS, browser  # noqa: F401 - the browser fixture
from test_browser_generate import _field, _generate, _open, _set

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NONE = "— none —"  # an empty row
T2V_LIGHTNING = "Wan2.2-T2V-A14B-4steps-lora-rank64-Seko-V1.1/{}_noise_model.safetensors"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser-loras")
    s = launch_app(base / "outputs", base / "app.log", "--demo-dir", str(base / "demo"))
    yield s
    stop_app(s)
    assert "generation failed" not in s.log_text(), s.log_text()[-4000:]


def _open_panel(panel) -> None:
    head = panel.locator(".loras > .label-wrap").first
    if "open" not in (head.get_attribute("class") or ""):
        head.click()
    panel.locator(".lora-row-0 .lora-file input").first.wait_for(state="visible", timeout=10_000)


def _pick(page, row, name: str) -> None:
    row.locator(".lora-file input").first.click()
    page.get_by_role("option", name=name, exact=True).click()


def _row_value(row) -> str:
    return row.locator(".lora-file input").first.input_value()


def _settings(server, link: str) -> dict:
    gen_id = link.split("?gen=")[1]
    return json.loads((server.outputs / f"{gen_id}.json").read_text())


def test_lora_pair_strengths_survive_the_permalink(browser, server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ctx, page, t2v, errors = _open(browser, server.url, "tab-t2v")
    _open_panel(t2v)
    # only files that fit the tab's model are offered: the 5B demo LoRA is not
    t2v.locator(".lora-row-0 .lora-file input").first.click()
    options = [o.inner_text().strip() for o in page.get_by_role("option").all()]
    assert "demo-style_HIGH.safetensors" in options and "demo-style_LOW.safetensors" in options, options
    assert "demo-5b-style-peft.safetensors" not in options, options
    row0, row1 = t2v.locator(".lora-row-0"), t2v.locator(".lora-row-1")
    assert not row1.is_visible()  # the next row appears once a file is picked
    page.get_by_role("option", name="demo-style_HIGH.safetensors", exact=True).click()
    # a HIGH file starts on the high-noise expert only
    page.wait_for_function("el => el.value === '0'", arg=_field(row0, "lora-low").element_handle(), timeout=10_000)
    assert _field(row0, "lora-high").input_value() == "1"
    _set(row0, "lora-high", 0.7)
    _set(row0, "lora-low", 0.3)
    row1.wait_for(state="visible", timeout=10_000)
    _pick(page, row1, "demo-style_LOW.safetensors")
    page.wait_for_function("el => el.value === '0'", arg=_field(row1, "lora-high").element_handle(), timeout=10_000)
    t2v.locator(".loras").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "loras_desktop.png"))

    link = _generate(page, t2v, prompt="a kite over green hills", seed=77, steps=3)
    stored = _settings(server, link)
    assert [(x["name"], x["strength"]) for x in stored["loras"]] == [
        ("demo-style_HIGH.safetensors", {"high_noise": 0.7, "low_noise": 0.3}),
        ("demo-style_LOW.safetensors", {"high_noise": 0.0, "low_noise": 1.0}),
    ], stored["loras"]
    assert all(re.fullmatch(r"[0-9a-f]{12}", x["sha256"]) for x in stored["loras"])
    assert stored["schedule"] == "official" and stored["phases"] is None
    ctx.close()

    # a fresh context: the link alone restores the rows and both strengths of each
    ctx2 = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    other = ctx2.new_page()
    other.goto(link)
    t2v2 = other.locator("#tab-t2v")
    other.wait_for_function("el => el.value.includes('kite')", arg=t2v2.locator(".prompt textarea").element_handle(),
                            timeout=60_000)
    r0, r1 = t2v2.locator(".lora-row-0"), t2v2.locator(".lora-row-1")
    r1.wait_for(state="visible", timeout=10_000)  # the panel opens with the restored rows
    assert _row_value(r0) == "demo-style_HIGH.safetensors"
    assert _field(r0, "lora-high").input_value() == "0.7" and _field(r0, "lora-low").input_value() == "0.3"
    assert _row_value(r1) == "demo-style_LOW.safetensors"
    assert _field(r1, "lora-high").input_value() == "0" and _field(r1, "lora-low").input_value() == "1"
    assert t2v2.locator(".lora-row-2").is_visible() and _row_value(t2v2.locator(".lora-row-2")) == NONE
    ctx2.close()
    assert not errors, errors


def test_fast_preset_fills_the_form_and_generates_on_the_lightning_grid(browser, server):
    ctx, page, t2v, errors = _open(browser, server.url, "tab-t2v")
    assert t2v.locator("button.fast-lightning-4step").is_visible()
    t2v.locator("button.fast-lightning-4step").click()
    steps = _field(t2v, "steps")
    page.wait_for_function("el => el.value === '4'", arg=steps.element_handle(), timeout=10_000)
    note = t2v.locator(".block.fast-note")
    note.wait_for(state="visible", timeout=10_000)
    assert "Fast preset: 4 steps, CFG off" in note.inner_text()
    assert "Draft" in note.inner_text() and "Official quality" in note.inner_text()
    assert _field(t2v, "solver").input_value() == "euler" and _field(t2v, "shift").input_value() == "5"
    row0, row1 = t2v.locator(".lora-row-0"), t2v.locator(".lora-row-1")
    row1.wait_for(state="visible", timeout=10_000)
    assert _row_value(row0) == T2V_LIGHTNING.format("high") and _row_value(row1) == T2V_LIGHTNING.format("low")
    assert _field(row0, "lora-high").input_value() == "1" and _field(row0, "lora-low").input_value() == "0"
    assert _field(row1, "lora-high").input_value() == "0" and _field(row1, "lora-low").input_value() == "1"

    link = _generate(page, t2v, prompt="a paper boat in the rain", seed=5, steps=4)
    stored = _settings(server, link)
    assert stored["schedule"] == "lightning" and stored["sampling_steps"] == 4 and stored["sample_solver"] == "euler"
    assert stored["shift"] == 5.0
    assert [(p["steps"], p["expert"], p["guide_scale"]) for p in stored["phases"]] == [
        (2, "high_noise", 1.0), (2, "low_noise", 1.0)]
    assert [x["name"] for x in stored["loras"]] == [T2V_LIGHTNING.format("high"), T2V_LIGHTNING.format("low")]

    # Official quality turns the preset off: no note, no Lightning rows; the next run is on the official grid
    t2v.locator("button.preset-official").click()
    note.wait_for(state="hidden", timeout=10_000)
    page.wait_for_function("([el, none]) => el.value === none",
                           arg=[row0.locator(".lora-file input").first.element_handle(), NONE], timeout=10_000)
    link2 = _generate(page, t2v, prompt="a paper boat in the rain", seed=5, steps=2)
    stored2 = _settings(server, link2)
    assert stored2["schedule"] == "official" and stored2["phases"] is None and stored2["loras"] == []
    ctx.close()
    assert not errors, errors
