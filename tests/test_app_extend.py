"""The app's prompt enhancers: the extend_prompt endpoint's backend choice, the app flags, and the
tab's proposal handlers (Extend proposes, Accept replaces and keeps the old prompt for Undo)."""

from __future__ import annotations

import gradio as gr
import pytest

import prompting
from prompting import ExtensionResult


class _Echo:
    name = "openai"

    def extend(self, prompt, *, task="t2v", lang="en", has_image=False):
        return ExtensionResult(f"LLM says: {prompt}", True, self.name)


def _api():
    from playground.views.endpoints import make_extend_api

    return make_extend_api({"offline": prompting.make_extender("offline"), "openai": _Echo()})


def test_extend_prompt_backend_defaults_to_the_servers_default_and_can_be_chosen():
    extend = _api()
    default = extend("the cat waves its paw", "t2v-A14B", "en", False)
    assert default.startswith("Daylight") and "The cat waves its paw" in default
    assert extend("the cat waves its paw", "t2v-A14B", "en", False, "openai") == "LLM says: the cat waves its paw"
    assert extend("a fox", backend="offline").startswith("Daylight")
    with pytest.raises(gr.Error) as e:
        extend("a fox", "t2v-A14B", "en", False, "local")
    assert "backend: 'local' is not one of offline, openai" in e.value.message
    # the docstring (API page and MCP schema) lists this server's backends and the default
    assert 'backend: the prompt enhancer to use, one of "offline", "openai" on this server. Default "offline".' \
        in extend.__doc__


def test_extend_prompt_with_one_extender_still_works():
    from playground.views.endpoints import make_extend_api

    extend = make_extend_api(_Echo())
    assert extend("a fox") == "LLM says: a fox" and "one of \"openai\"" in extend.__doc__


def test_app_flags_offer_every_configured_enhancer(monkeypatch):
    import app

    for var in ("WAN_PROMPT_API_BASE", "WAN_PROMPT_API_KEY", "OPENAI_API_KEY", "DASHSCOPE_API_KEY",
                "WAN_PROMPT_MODEL", "WAN_PROMPT_LOCAL_MODEL"):
        monkeypatch.delenv(var, raising=False)
    assert list(app.make_extenders(app.parse_args([]))) == ["offline"]
    both = app.make_extenders(app.parse_args(["--extender-url", "http://127.0.0.1:9/v1", "--extender-model", "m"]))
    assert list(both) == ["offline", "openai"] and both["openai"].model == "m"
    first = app.make_extenders(app.parse_args(["--extender", "openai", "--extender-url", "http://h:1/v1",
                                               "--extender-model", "m"]))
    assert list(first) == ["openai", "offline"]
    with pytest.raises(ValueError, match="not configured"):
        app.make_extenders(app.parse_args(["--extender", "openai"]))


def test_accept_keeps_the_old_prompt_for_undo():
    from playground.views.task_tab import TaskView

    prompt, previous, undo, box = TaskView.accept_proposal("  a long proposal ", "short")
    assert (prompt, previous) == ("a long proposal", "short")
    assert undo.visible is True and box.visible is False
    restored, cleared, undo = TaskView.undo_accept(previous)
    assert restored == "short" and cleared is None and undo.visible is False
    skipped = TaskView.accept_proposal("  ", "short")
    assert skipped[0] == gr.skip() and skipped[3].visible is False
