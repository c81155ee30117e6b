"""The continue/timeline API of the real app (``python app.py --demo``) through gradio_client.

Every clip is a real generation with the tiny demo weights; exports are real mp4s whose frames the
bundled ffmpeg counts. A restart of the server keeps the timelines.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
from test_app import SMALL, app_error, generate, launch_app, settings_of, stop_app

from wan.video import read_video_metadata, save_video

pytestmark = pytest.mark.slow

ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("timeline-app")
    srv = launch_app(base / "outputs", base / "app.log")
    yield srv
    stop_app(srv)
    assert "generation failed" not in srv.log_text(), srv.log_text()[-4000:]


def ffmpeg_frames(path: str | Path) -> int:
    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-f",
                           "null", "-"], capture_output=True, text=True, timeout=120, check=True)
    return int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1])


def continue_clip(client, result_id: str = "", **over):
    args = {"result_id": result_id, "prompt": "", "overlap": 1, "color_match": 0.5, "seed": 7,
            "randomize_seed": False, "task": "", "frame_num": None, "sampling_steps": 3, "timeline_id": "",
            "video": None, **over}
    return client.predict(**args, api_name="/continue_clip")


def test_continue_export_and_survive_a_restart(server, tmp_path):
    c = server.client()
    _, _, _, link = generate(c, "t2v-A14B", prompt="a red fox in the snow", fps=12)
    first = link.rsplit("=", 1)[1]
    # continue the result by id: the parent's frames, fps and prompt; recorded parent, overlap, colour match
    video, seed, status, link2, second = continue_clip(c, first, overlap=2, prompt="the fox jumps")
    assert ID.match(second) and seed == 7 and second in status and link2.endswith(f"?gen={second}")
    s = settings_of(server, second)
    assert (s["task"], s["parent"], s["overlap"], s["color_match"]) == ("i2v-A14B", first, 2, 0.5)
    assert s["video"] == {**settings_of(server, first)["video"]} and s["prompt"] == "the fox jumps"
    assert (server.outputs / f"{second}.input.png").is_file()  # the parent's last frame, kept as the input
    # continue an uploaded download of the new clip: one of ours, so recorded under its id; defaults inherited
    from gradio_client import handle_file

    _, _, _, _, third = continue_clip(c, video=handle_file(str(server.outputs / f"{second}.mp4")), color_match=0)
    t = settings_of(server, third)
    assert (t["parent"], t["overlap"], t["color_match"], t["prompt"]) == (second, 1, 0.0, "the fox jumps")
    # a timeline of the three clips, through the API, exported as one mp4
    tl = c.predict(f"{first}, {second}", "fox story", api_name="/create_timeline")
    assert [x["overlap"] for x in tl["clips"]] == [0, 2] and tl["permalink"].endswith(f"?timeline={tl['id']}")
    tl = c.predict(tl["id"], third, -1, api_name="/timeline_add")
    assert [x["result_id"] for x in tl["clips"]] == [first, second, third]
    frames = [settings_of(server, g)["video"]["frames"] for g in (first, second, third)]
    expected = sum(frames) - 2 - 1
    assert tl["frames"] == expected
    out, text = c.predict(tl["id"], api_name="/export_timeline")
    assert ffmpeg_frames(out) == expected and f"{expected} frames" in text
    meta = read_video_metadata(out)["comment"]
    assert meta["fps"] == 12 and [x["settings"]["id"] for x in meta["clips"]] == [first, second, third]
    assert [x["settings"]["prompt"] for x in meta["clips"]] == ["a red fox in the snow", "the fox jumps", "the fox jumps"]
    # continue straight into the timeline
    *_, fourth = continue_clip(c, third, timeline_id=tl["id"], task="ti2v-5B", prompt="night falls")
    assert settings_of(server, fourth)["task"] == "ti2v-5B" and settings_of(server, fourth)["fps"] == 12
    # the timeline survives a restart of the server
    stop_app(server)
    again = launch_app(server.outputs, server.log.with_name("app2.log"))
    server.proc, server.url, server.log = again.proc, again.url, again.log  # the fixture stops this one
    c2 = again.client()
    info = c2.predict(tl["id"], api_name="/timeline_info")
    assert [x["result_id"] for x in info["clips"]] == [first, second, third, fourth]
    out2, _ = c2.predict(tl["id"], api_name="/export_timeline")
    assert ffmpeg_frames(out2) == expected + settings_of(again, fourth)["video"]["frames"] - 1


def test_bad_input_gets_a_clear_error(server, tmp_path):
    from gradio_client import handle_file

    c = server.client()
    assert "No result with id 20200101-000000-abcdef" in app_error(continue_clip, c, "20200101-000000-abcdef")
    assert "neither a result id" in app_error(continue_clip, c, "not-an-id")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    msg = app_error(continue_clip, c, video=handle_file(str(text)))
    assert "cannot read" in msg and "notes" in msg
    empty = c.predict("", "", api_name="/create_timeline")
    assert empty["clips"] == [] and empty["frames"] == 0
    assert "has no clips" in app_error(c.predict, empty["id"], api_name="/export_timeline")
    assert "No timeline with id 20200101-000000-abcdef" in app_error(c.predict, "20200101-000000-abcdef",
                                                                     api_name="/export_timeline")
    assert "not a valid timeline id" in app_error(c.predict, "../x", api_name="/timeline_info")
    assert "20200101-000000-abcdef" in app_error(c.predict, "20200101-000000-abcdef", "", api_name="/create_timeline")
    # t2v cannot continue; a foreign mp4 (no settings) continues with i2v-A14B at its own fps
    _, _, _, link = generate(c, "t2v-A14B", prompt="a boat")
    gen = link.rsplit("=", 1)[1]
    assert "cannot continue a video" in app_error(continue_clip, c, gen, task="t2v-A14B")
    foreign = save_video(torch.rand(3, 5, 96, 128) * 2 - 1, tmp_path / "phone.mp4", fps=20)
    *_, child = continue_clip(c, video=handle_file(str(foreign)))
    s = settings_of(server, child)
    assert (s["task"], s["parent"], s["fps"], s["video"]["width"]) == ("i2v-A14B", "phone.mp4", 20, 128)
    # nothing half-written is listed: every listed clip has its json and mp4
    listed = json.loads(json.dumps(c.predict(empty["id"], api_name="/timeline_info")))
    assert listed["id"] == empty["id"]


def test_mcp_tools_continue_and_export(tmp_path):
    """The endpoints as MCP tools: listed with their docstrings; continue a result, then export a timeline."""
    from test_app_mcp import MCP_PATH, mcp_session, texts

    srv = launch_app(tmp_path / "outputs", tmp_path / "app.log", "--mcp")
    try:
        c = srv.client()
        _, _, _, link = generate(c, "ti2v-5B", prompt="a paper boat on a pond")
        first = link.rsplit("=", 1)[1]

        async def listing(session):
            return (await session.list_tools()).tools

        tools = {t.name: t for t in mcp_session(srv.url + MCP_PATH, listing)}
        assert {"continue_clip", "export_timeline", "timeline_info", "create_timeline", "timeline_add"} <= set(tools)
        cont = tools["continue_clip"]
        assert cont.description.startswith("Continue a video from its last frame")
        props = cont.inputSchema["properties"]
        for name in ("result_id", "prompt", "overlap", "color_match", "seed", "task", "timeline_id", "video"):
            assert len(props[name].get("description", "")) > 15, (name, props[name])
        assert "owner" not in props
        assert tools["export_timeline"].description.startswith("Export a timeline as one mp4")

        async def run(session):  # without a progress token Gradio answers one text: the outputs' repr
            made = await session.call_tool("continue_clip", {"result_id": first, "prompt": "it drifts away",
                                                             "seed": 5, "randomize_seed": False,
                                                             "sampling_steps": 2})
            new_id = re.findall(r"'(\d{8}-\d{6}-[0-9a-f]{6})'", texts(made)[0])[-1]
            tl = await session.call_tool("create_timeline", {"result_ids": f"{first} {new_id}"})
            tid = re.search(r"'id': '([0-9a-f-]+)'", texts(tl)[0]).group(1)
            exported = await session.call_tool("export_timeline", {"timeline_id": tid})
            return new_id, texts(exported)[0]

        new_id, exported = mcp_session(srv.url + MCP_PATH, run)
        s = settings_of(srv, new_id)
        assert (s["task"], s["parent"], s["seed"]) == ("ti2v-5B", first, 5)
        frames = settings_of(srv, first)["video"]["frames"] + s["video"]["frames"] - 1
        url = re.search(r"'url': '([^']+\.mp4)'", exported).group(1)
        assert url.startswith(srv.url) and f"{frames} frames" in exported
        import urllib.request

        out = tmp_path / "export.mp4"
        with urllib.request.urlopen(url, timeout=30) as r:
            out.write_bytes(r.read())
        assert ffmpeg_frames(out) == frames
    finally:
        stop_app(srv)
