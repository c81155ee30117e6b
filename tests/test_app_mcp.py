"""The app as an MCP server: the real ``python app.py --demo --mcp`` driven by the real ``mcp`` client.

Gradio 6 serves MCP over streamable HTTP at ``/gradio_api/mcp/`` (it prints the URL at launch). The
tools are the app's named API endpoints; their descriptions and argument docs come from the
endpoint functions' docstrings (``Args:`` / ``Returns:``), so they are checked here as an MCP client
sees them. One real tool call runs the offline prompt extender, one a tiny demo generation.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request

import pytest
from test_app import ID_RE, launch_app, mp4_info, settings_of, stop_app

pytestmark = pytest.mark.slow

MCP_PATH = "gradio_api/mcp/"
TOOLS = {"generate_t2v", "generate_i2v", "generate_ti2v", "get_result", "settings_from_video", "extend_prompt"}


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory):
    try:
        import mcp  # noqa: F401
    except ImportError as e:
        pytest.fail(f"the mcp client library is missing ({e}): pip install -r requirements.txt", pytrace=False)
    base = tmp_path_factory.mktemp("mcp")
    server = launch_app(base / "outputs", base / "app.log", "--mcp")
    yield server
    stop_app(server)
    assert "generation failed" not in server.log_text(), server.log_text()[-4000:]


def mcp_session(url: str, body):
    """Run ``await body(session)`` in an initialised MCP client session over streamable HTTP."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def run():
        async with streamablehttp_client(url, timeout=30, sse_read_timeout=120) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)

    return asyncio.run(run())


def texts(result) -> list[str]:
    assert not result.isError, [getattr(c, "text", c) for c in result.content]
    return [c.text for c in result.content if c.type == "text"]


# --------------------------------------------------------------------------------- tests
def test_launch_prints_the_mcp_url(mcp_server):
    url = mcp_server.url + MCP_PATH
    deadline = time.monotonic() + 10
    while url not in mcp_server.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"Streamable HTTP URL: {url}" in mcp_server.log_text(), mcp_server.log_text()[-2000:]
    # the state input of the generate tools is expected: the app silences Gradio's warning about it
    assert "gr.State input" not in mcp_server.log_text()
    with urllib.request.urlopen(mcp_server.url + "gradio_api/mcp/schema", timeout=10) as r:
        schema = json.loads(r.read())
    endpoints = {t["name"]: t["meta"]["endpoint_name"] for t in schema}
    assert {name: endpoints.get(name) for name in TOOLS} == {name: name for name in TOOLS}, endpoints


def test_tools_are_listed_with_docstring_descriptions(mcp_server):
    async def body(session):
        return (await session.list_tools()).tools

    tools = {t.name: t for t in mcp_session(mcp_server.url + MCP_PATH, body)}
    assert TOOLS <= set(tools), sorted(tools)
    assert "list_history" not in tools  # undocumented endpoint: not a tool

    t2v = tools["generate_t2v"]
    assert t2v.description.startswith("Generate a video with Wan 2.2 t2v-A14B: text-to-video")
    assert "Returns: the mp4, the seed actually used" in t2v.description
    props = t2v.inputSchema["properties"]
    assert t2v.inputSchema["required"] == ["prompt"]
    assert {"prompt", "negative_prompt", "size", "frame_num", "fps", "sampling_steps", "shift", "sample_solver",
            "guide_scale_high", "guide_scale_low", "seed", "randomize_seed", "attention", "loras", "preset", "cache"} == set(props)
    assert "prompt_fields" not in props  # the assistant's gr.State is not a tool argument
    for name, prop in props.items():  # every argument is documented from the docstring's Args section
        assert len(prop.get("description", "")) > 15, (name, prop)
    assert "4n+1" in props["frame_num"]["description"]
    assert props["size"]["enum"] == ["128*96", "96*128", "128*128", "64*64"]  # the demo presets
    assert "'W*H'" in props["size"]["description"] and "128*96" in props["size"]["description"]
    assert "high-noise expert" in props["guide_scale_high"]["description"]

    i2v = tools["generate_i2v"].inputSchema["properties"]
    assert "required" in i2v["image"]["description"] and "first frame" in i2v["image"]["description"]
    # first-last frame: the optional last_image, documented (and only on I2V-A14B)
    assert set(i2v) == set(props) | {"image", "last_image"}, sorted(i2v)
    assert i2v["last_image"]["description"].startswith("optional last frame (PNG, JPEG or WebP, at most 25 MB)")
    assert "first-last frame" in i2v["last_image"]["description"] and "needs image" in i2v["last_image"]["description"]
    assert "last_image" not in (tools["generate_i2v"].inputSchema.get("required") or [])
    ti2v = tools["generate_ti2v"].inputSchema["properties"]
    assert "guide_scale" in ti2v and "guide_scale_high" not in ti2v
    assert ti2v["image"]["description"].startswith("optional first frame")
    assert "last_image" not in ti2v

    get_result = tools["get_result"]
    assert get_result.description.startswith("Get a video this server generated earlier, by its id.")
    assert "?gen=" in get_result.inputSchema["properties"]["gen_id"]["description"]
    assert tools["settings_from_video"].inputSchema["properties"]["path"]["description"].startswith("an mp4")

    ext = tools["extend_prompt"]
    assert ext.description.startswith("Extend a short video prompt into a detailed one")
    ext_props = ext.inputSchema["properties"]
    assert set(ext_props) == {"prompt", "task", "lang", "has_image", "backend"}
    assert '"offline"' in ext_props["backend"]["description"]
    assert "t2v-A14B" in ext_props["task"]["description"] and '"zh"' in ext_props["lang"]["description"]


def test_extend_prompt_tool(mcp_server):
    async def body(session):
        ok = await session.call_tool("extend_prompt", {"prompt": "a red fox in the snow", "task": "t2v-A14B",
                                                       "lang": "en", "has_image": False})
        bad = await session.call_tool("extend_prompt", {"prompt": "a cat", "task": "t2v-1.3B"})
        return ok, bad

    ok, bad = mcp_session(mcp_server.url + MCP_PATH, body)
    (extended,) = texts(ok)
    assert "red fox" in extended.lower() and len(extended) > len("a red fox in the snow") + 40, extended
    assert bad.isError
    message = " ".join(getattr(c, "text", "") for c in bad.content)
    assert "t2v-1.3B" in message and "t2v-A14B" in message, message


def test_generate_t2v_tool_with_progress_then_get_result(mcp_server):
    args = {"prompt": "a red fox runs through a snowy forest at dawn", "size": "64*64", "frame_num": 5,
            "sampling_steps": 2, "seed": 77, "randomize_seed": False}
    notes: list[tuple[float, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        notes.append((value, message or ""))

    async def body(session):
        return await session.call_tool("generate_t2v", args, progress_callback=on_progress)

    gen = mcp_session(mcp_server.url + MCP_PATH, body)
    # with a progress token Gradio streams the job: one content block per output, progress as notifications
    video_url, seed, status, link = texts(gen)
    progress = [m for _, m in notes]
    assert any("Step" in m for m in progress), progress
    # what happened, in order: one notification per job update, processing before the denoising steps,
    # the steps (Gradio's "Step k of 2" of our "step k/2 · <expert>" progress) moving forward only
    assert [v for v, _ in notes] == sorted({v for v, _ in notes}), notes
    steps = [re.search(r"Progress step (\d)/2 · [^:]+: Step (\d) of 2$", m) for m in progress]
    step_idx = [i for i, m in enumerate(steps) if m]
    assert step_idx and all(m.group(1) == m.group(2) for m in steps if m), progress
    assert [int(steps[i].group(1)) for i in step_idx] == sorted({int(steps[i].group(1)) for i in step_idx}), progress
    assert "Processing" in progress[: step_idx[0]], progress
    gen_id = ID_RE.search(link).group(1)
    assert float(seed) == 77 and gen_id in status and "seed 77" in status
    assert link.startswith(mcp_server.url) and video_url.startswith(mcp_server.url) and video_url.endswith(".mp4")
    with urllib.request.urlopen(video_url, timeout=10) as r:  # the URL the tool returned serves the mp4
        assert r.status == 200 and b"ftyp" in r.read(64)
    stored = mcp_server.outputs / f"{gen_id}.mp4"
    assert mp4_info(stored) == {"frames": 5, "fps": 16, "size": (64, 64)}
    s = settings_of(mcp_server, gen_id)
    assert (s["task"], s["seed"], s["size"], s["sampling_steps"]) == ("t2v-A14B", 77, "64*64", 2)
    assert s["prompt"] == args["prompt"]

    # get_result (not queued, so no progress token needed): the mp4, its settings as JSON, the permalink
    async def get(session):
        return await session.call_tool("get_result", {"gen_id": gen_id})

    got_video, got_settings, got_link = texts(mcp_session(mcp_server.url + MCP_PATH, get))
    assert got_video.endswith(f"{gen_id}.mp4") and got_link == link
    # Gradio 6.31 writes a gr.JSON output as the repr of its pydantic root model: "root={'task': ...}"
    assert f"'id': '{gen_id}'" in got_settings and "'seed': 77" in got_settings, got_settings


def test_generate_tool_without_progress_token(mcp_server):
    """Most MCP clients send no progress token; Gradio 6.31 then returns all outputs as one text block
    (a Python repr of the output list). It still carries the video URL, the seed and the permalink."""
    async def body(session):
        return await session.call_tool("generate_ti2v", {"prompt": "a glass whale swims over a city", "size": "64*64",
                                                         "frame_num": 5, "sampling_steps": 2, "seed": 5,
                                                         "randomize_seed": False})

    (text,) = texts(mcp_session(mcp_server.url + MCP_PATH, body))
    link = re.search(r"http://127\.0\.0\.1:\d+/\?gen=\d{8}-\d{6}-[0-9a-f]{6}", text)
    assert link and link.group(0).startswith(mcp_server.url), text
    gen_id = ID_RE.search(link.group(0)).group(1)
    assert f"{gen_id}.mp4" in text and "seed 5" in text, text
    assert settings_of(mcp_server, gen_id)["task"] == "ti2v-5B"


def test_generate_i2v_tool_with_a_last_frame(mcp_server):
    """First-last frame over MCP: image and last_image as base64 data URLs (what MCP clients send); the result
    records the last frame and keeps it next to the video (<id>.last.png), like the I2V tab's."""
    import base64
    from pathlib import Path

    samples = Path(__file__).resolve().parents[1] / "assets" / "samples"

    def data_url(name: str) -> str:
        return "data:image/png;base64," + base64.b64encode((samples / name).read_bytes()).decode("ascii")

    async def body(session):
        return await session.call_tool("generate_i2v", {"prompt": "the lake turns into a cat", "size": "64*64",
                                                        "frame_num": 5, "sampling_steps": 2, "seed": 3,
                                                        "randomize_seed": False, "image": data_url("sunset_lake.png"),
                                                        "last_image": data_url("cat_portrait.png")})

    (text,) = texts(mcp_session(mcp_server.url + MCP_PATH, body))
    gen_id = ID_RE.search(re.search(r"\?gen=\d{8}-\d{6}-[0-9a-f]{6}", text).group(0)).group(1)
    s = settings_of(mcp_server, gen_id)
    assert s["task"] == "i2v-A14B" and s["last_image"] and s["image_file"] == f"{gen_id}.input.png", s
    assert (mcp_server.outputs / f"{gen_id}.last.png").is_file()
    assert mp4_info(mcp_server.outputs / f"{gen_id}.mp4")["frames"] == 5
