"""prompting: the OpenAI-compatible backend against a real HTTP server on 127.0.0.1.

The server (``http.server.ThreadingHTTPServer`` in a thread) implements ``POST /v1/chat/completions``;
``/slow/v1/...`` answers after a delay longer than the client's timeout and ``/malformed/v1/...``
answers with text that is not JSON. Replies on the normal path can be scripted per test.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import prompting
from prompting import make_extender

GOOD = "Soft lighting, medium shot, daylight. A red fox trots through fresh snow, its breath steaming in the cold air."
SLOW_DELAY_S = 3.0


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; str/bytes -> sent as is
    delay_s: float = 0.0


@dataclass
class ChatServer:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: deque[Reply] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def next_reply(self) -> Reply | None:
        with self.lock:
            return self.replies.popleft() if self.replies else None


def completion(content: Any, **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message},
                     "finish_reason": "stop"}],
    }


def _make_handler(state: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: Any) -> None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            elif isinstance(body, str):
                data = body.encode("utf-8")
            else:
                data = body or b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                body = None
            state.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
            if not self.path.endswith("/v1/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            if self.path.startswith("/slow/"):
                time.sleep(SLOW_DELAY_S)
                self._send(200, completion(GOOD))
                return
            if self.path.startswith("/malformed/"):
                self._send(200, "<html>Bad gateway, but with status 200</html>")
                return
            reply = state.next_reply()
            if reply is None:  # default: a good answer that quotes the user's prompt
                user = body["messages"][-1]["content"] if body else ""
                reply = Reply(body=completion(f"Soft lighting, medium shot. {user}, trotting through fresh snow."))
            if reply.delay_s:
                time.sleep(reply.delay_s)
            self._send(reply.status, reply.body)

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # the slow path writes after the client timed out and left: that broken pipe is expected
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server() -> Iterator[ChatServer]:
    state = ChatServer(base_url="")
    httpd = QuietServer(("127.0.0.1", 0), _make_handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def chat(server: ChatServer) -> ChatServer:
    server.requests.clear()
    server.replies.clear()
    return server


@pytest.fixture()
def api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WAN_PROMPT_API_BASE", "WAN_PROMPT_API_KEY", "WAN_PROMPT_MODEL", "OPENAI_API_KEY", "DASHSCOPE_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def test_request_carries_model_system_prompt_and_key_from_the_environment(
    chat: ChatServer, api_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAN_PROMPT_API_BASE", chat.base_url + "/v1")
    monkeypatch.setenv("WAN_PROMPT_API_KEY", "sk-test-123")
    monkeypatch.setenv("WAN_PROMPT_MODEL", "qwen2.5:7b-instruct")
    ext = make_extender("openai", timeout=5)
    result = ext.extend("a red fox", task="t2v-A14B", lang="en")

    assert result.ok and result.backend == "openai" and result.warning is None
    assert result.prompt == "Soft lighting, medium shot. a red fox, trotting through fresh snow."
    (req,) = chat.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test-123"
    assert req["headers"]["Content-Type"] == "application/json"
    body = req["body"]
    assert body["model"] == "qwen2.5:7b-instruct" and body["stream"] is False
    assert body["max_tokens"] == 512 and body["temperature"] == 0.7 and "seed" not in body
    assert body["messages"] == [
        {"role": "system", "content": prompting.system_prompt("t2v", "en")},
        {"role": "user", "content": "a red fox"},
    ]


def test_i2v_chinese_request_uses_our_i2v_system_prompt_and_asks_for_a_translation(chat: ChatServer, api_env: None) -> None:
    chat.script(Reply(body=completion("女孩缓缓转过头，对着镜头微笑，发丝被风轻轻吹起。镜头推进。")))
    ext = make_extender("openai", base_url=chat.base_url + "/v1", model="m", api_key=None, seed=7, timeout=5)
    result = ext.extend("소녀가 고개를 돌려 웃는다", task="ti2v-5B", lang="zh", has_image=True)
    assert result.ok and result.prompt == "女孩缓缓转过头，对着镜头微笑，发丝被风轻轻吹起。镜头推进。"
    body = chat.requests[0]["body"]
    assert body["messages"][0]["content"] == prompting.system_prompt("i2v", "zh", source_lang="ko")
    assert "韩文" in body["messages"][0]["content"] and body["seed"] == 7
    assert "Authorization" not in chat.requests[0]["headers"]  # no key: no header


def test_reasoning_labels_and_quotes_are_stripped(chat: ChatServer, api_env: None) -> None:
    chat.script(Reply(body=completion(f"<think>\nThe user wants a fox.\n</think>\n\nPrompt: \"{GOOD}\"")))
    result = make_extender("openai", base_url=chat.base_url + "/v1", model="m", timeout=5).extend("a fox")
    assert result.ok and result.prompt == GOOD and result.raw.startswith("<think>")


def test_content_parts_are_joined(chat: ChatServer, api_env: None) -> None:
    chat.script(Reply(body=completion([{"type": "text", "text": GOOD[:40]}, {"type": "text", "text": GOOD[40:]}])))
    result = make_extender("openai", base_url=chat.base_url + "/v1", model="m", timeout=5).extend("a fox")
    assert result.ok and result.prompt == GOOD


def test_long_answers_are_capped(chat: ChatServer, api_env: None) -> None:
    chat.script(Reply(body=completion(GOOD + " " + "The snow keeps falling. " * 80)))
    result = make_extender("openai", base_url=chat.base_url + "/v1", model="m", timeout=5, max_chars=200).extend("a fox")
    assert result.ok and len(result.prompt) <= 200 and result.prompt.startswith(GOOD)
    assert result.reason == "truncated" and "200 characters" in result.warning


def test_timeout_gives_the_fallback(chat: ChatServer, api_env: None) -> None:
    ext = make_extender("openai", base_url=chat.base_url + "/slow/v1", model="m", timeout=0.3, retries=0)
    start = time.monotonic()
    result = ext.extend("a fox in the snow")
    assert time.monotonic() - start < SLOW_DELAY_S - 1
    assert not result.ok and result.prompt == "a fox in the snow" and result.reason == "timeout"
    assert "within 0.3 s" in result.warning and "original prompt was kept" in result.warning


def test_malformed_response_gives_the_fallback(chat: ChatServer, api_env: None) -> None:
    result = make_extender("openai", base_url=chat.base_url + "/malformed/v1", model="m", timeout=5).extend("a fox")
    assert not result.ok and result.prompt == "a fox" and result.reason == "malformed"
    assert "not JSON" in result.warning and "Bad gateway" in result.warning


@pytest.mark.parametrize(
    ("reply", "reason", "needle"),
    [
        (Reply(body={"object": "list", "data": []}), "malformed", "no choices[0].message"),
        (Reply(body={"choices": []}), "malformed", "no choices[0].message"),
        (Reply(body=["not", "an", "object"]), "malformed", "not a JSON object"),
        (Reply(body=completion(42)), "malformed", "content is int"),
        (Reply(body=completion("")), "empty", "empty answer"),
        (Reply(body=completion(None)), "empty", "empty answer"),
        (Reply(body=completion(None, refusal="I can't help with that.")), "refusal", "declined"),
        (Reply(body=completion("I'm sorry, I cannot rewrite this prompt.")), "refusal", "declined"),
        (Reply(body=completion("Fox.")), "too_short", "too short"),
        (Reply(body=completion("一只红狐狸在新雪上小跑，呼出的白气在冷空气中飘散。")), "wrong_language", "not English"),
        (Reply(status=401, body={"error": {"message": "Incorrect API key provided"}}), "http_error",
         "HTTP 401 from http://127.0.0.1"),
        (Reply(status=200, body={"error": {"message": "model 'm' not found"}}), "http_error", "model 'm' not found"),
        (Reply(status=503, body="overloaded"), "http_error", "HTTP 503"),
    ],
)
def test_bad_answers_give_the_fallback(chat: ChatServer, api_env: None, reply: Reply, reason: str, needle: str) -> None:
    chat.script(reply)
    ext = make_extender("openai", base_url=chat.base_url + "/v1", model="m", timeout=5, retries=0)
    result = ext.extend("a fox in the snow", lang="en")
    assert not result.ok and result.prompt == "a fox in the snow" and result.backend == "openai"
    assert result.reason == reason and needle in result.warning, result.warning


def test_server_errors_are_retried(chat: ChatServer, api_env: None) -> None:
    chat.script(Reply(status=503, body={"error": {"message": "busy"}}), Reply(body=completion(GOOD)))
    result = make_extender("openai", base_url=chat.base_url + "/v1", model="m", timeout=5, retries=1).extend("a fox")
    assert result.ok and result.prompt == GOOD and len(chat.requests) == 2


def test_unreachable_server_gives_the_fallback(api_env: None) -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = make_extender("openai", base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2).extend("a fox")
    assert not result.ok and result.reason == "connection" and "cannot reach" in result.warning


def test_wrong_path_is_an_http_error(chat: ChatServer, api_env: None) -> None:
    result = make_extender("openai", base_url=chat.base_url + "/api", model="m", timeout=5).extend("a fox")
    assert not result.ok and result.reason == "http_error" and "HTTP 404" in result.warning
