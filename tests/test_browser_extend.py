"""Real-browser test of "Extend with LLM": the enhancer picker and the proposal with Accept / Discard / Undo.

The app runs with `--demo` and a configured OpenAI-compatible endpoint: a tiny fake chat server in this
process, so both the offline rules and the endpoint are offered. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from test_app import launch_app, stop_app
from test_browser import ARTIFACTS, _choose, browser  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FAKE_ANSWER = "A fake endpoint wrote this detailed prompt about: {prompt}"


class _FakeChat(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions that answers in English with a fixed sentence."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][-1]["content"]
        answer = {"choices": [{"message": {"role": "assistant", "content": FAKE_ANSWER.format(prompt=user)}}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake_llm():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FakeChat)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_llm):
    base = tmp_path_factory.mktemp("browser_extend")
    # the default stays offline; the endpoint is configured too, so both are offered
    s = launch_app(base / "outputs", base / "app.log", "--extender-url", fake_llm, "--extender-model", "fake-model",
                   env_extra={"WAN_PROMPT_API_KEY": "", "OPENAI_API_KEY": "", "DASHSCOPE_API_KEY": "",
                              "WAN_PROMPT_LOCAL_MODEL": ""})
    yield s
    stop_app(s)


def _open(browser, server, locale: str = "en-US"):  # noqa: F811 - the fixture's value
    ctx = browser.new_context(viewport={"width": 1300, "height": 1600}, locale=locale)
    page = ctx.new_page()
    page.goto(server.url)
    t2v = page.locator("#tab-t2v")
    t2v.locator(".prompt textarea").wait_for(timeout=60_000)
    return ctx, page, t2v


def _extend(page, t2v):
    """Click Extend and wait for a (new) proposal; return its text."""
    t2v.locator("button.extend-prompt").click()
    box = t2v.locator(".proposal-text textarea")
    box.wait_for(state="visible", timeout=20_000)
    page.wait_for_function("el => el.value.length > 0", arg=box.element_handle(), timeout=20_000)
    return box.input_value()


def test_extend_proposes_accept_replaces_undo_restores(browser, server):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ctx, page, t2v = _open(browser, server)
    prompt = t2v.locator(".prompt textarea")

    # the enhancer picker shows the active one (the --extender default) and lists every configured one
    enhancer = t2v.locator(".enhancer input").first
    assert enhancer.input_value() == "Offline rules (no model)"
    assert "official vocabulary" in t2v.locator(".enhancer-info").first.inner_text()
    enhancer.click()
    options = [o.inner_text().replace("✓", "").strip() for o in page.get_by_role("option").all()]
    assert "Offline rules (no model)" in options and "OpenAI-compatible endpoint" in options, options
    assert not any("Local model" in o for o in options)  # not configured: not offered
    page.keyboard.press("Escape")

    # Extend shows a proposal and leaves the prompt alone
    original = "the cat waves its paw"
    prompt.fill(original)
    proposal = _extend(page, t2v)
    assert prompt.input_value() == original
    assert "The cat waves its paw" in proposal and len(proposal) > 3 * len(original)
    assert "Camera pushes in" in proposal and "Fixed camera" not in proposal
    note = t2v.locator(".proposal-note").first.inner_text()
    assert "Offline rules" in note and "unchanged" in note
    assert not t2v.locator("button.undo-prompt").is_visible()
    page.screenshot(path=str(ARTIFACTS / "browser_extend_proposal.png"), full_page=True)

    # Accept replaces the prompt and offers Undo; Undo restores the original
    t2v.locator("button.accept-proposal").click()
    page.wait_for_function("([el, p]) => el.value === p", arg=[prompt.element_handle(), proposal], timeout=10_000)
    t2v.locator(".proposal-text textarea").wait_for(state="hidden", timeout=10_000)
    undo = t2v.locator("button.undo-prompt")
    undo.wait_for(state="visible", timeout=10_000)
    undo.click()
    page.wait_for_function("([el, p]) => el.value === p", arg=[prompt.element_handle(), original], timeout=10_000)
    undo.wait_for(state="hidden", timeout=10_000)

    # Discard drops a proposal; an edited proposal is what Accept takes
    _extend(page, t2v)
    t2v.locator("button.discard-proposal").click()
    t2v.locator(".proposal-text textarea").wait_for(state="hidden", timeout=10_000)
    assert prompt.input_value() == original
    _extend(page, t2v)
    t2v.locator(".proposal-text textarea").fill("my edited proposal")
    t2v.locator("button.accept-proposal").click()
    page.wait_for_function("el => el.value === 'my edited proposal'", arg=prompt.element_handle(), timeout=10_000)

    # the configured endpoint can be picked instead
    prompt.fill(original)
    _choose(page, t2v, "enhancer", "OpenAI-compatible endpoint")
    info = t2v.locator(".enhancer-info").first
    page.wait_for_function("el => el.innerText.includes('fake-model')", arg=info.element_handle(), timeout=10_000)
    t2v.locator("button.extend-prompt").click()
    box = t2v.locator(".proposal-text textarea")
    page.wait_for_function("el => el.value.startsWith('A fake endpoint')", arg=box.element_handle(), timeout=20_000)
    assert box.input_value() == FAKE_ANSWER.format(prompt=original)
    assert "OpenAI-compatible" in t2v.locator(".proposal-note").first.inner_text()
    assert prompt.input_value() == original
    ctx.close()


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_chinese_proposal_has_no_english_words(browser, server, locale):  # noqa: F811
    ctx, page, t2v = _open(browser, server, locale)
    prompt = t2v.locator(".prompt textarea")
    t2v.get_by_label("中文").check()  # the prompt language of the assistant
    prompt.fill("猫咪挥动爪子")
    proposal = _extend(page, t2v)
    assert "猫咪挥动爪子" in proposal and proposal.endswith("。")
    assert not re.search(r"[A-Za-z]", proposal.replace("3D", "")), proposal
    assert prompt.input_value() == "猫咪挥动爪子"
    if locale == "zh-CN":  # the new controls speak the UI language
        assert t2v.locator(".enhancer input").first.input_value() == "离线规则（无需模型）"
        assert t2v.locator("button.accept-proposal").inner_text().strip() == "采用"
        assert t2v.locator("button.discard-proposal").inner_text().strip() == "放弃"
        assert "建议" in t2v.locator(".proposal-note").first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "browser_extend_zh.png"), full_page=True)
    # the image-to-video tab: motion and camera, still all Chinese
    page.locator("button[role=tab]").nth(1).click()
    i2v = page.locator("#tab-i2v")
    i2v.get_by_label("中文").check()
    i2v.locator(".prompt textarea").fill("猫咪挥动爪子")
    proposal = _extend(page, i2v)
    assert proposal.endswith("固定镜头。") and "客厅" not in proposal
    assert not re.search(r"[A-Za-z]", proposal), proposal
    ctx.close()
