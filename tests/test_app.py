"""End-to-end tests of the Gradio app: the real server (`python app.py --demo`) driven by gradio_client.

The server runs in a subprocess on 127.0.0.1 with tiny random weights (``--demo``), so every
generation is real (text encoder, DiT experts, VAE, mp4 via ffmpeg) and takes a second or two on CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_IMAGE = ROOT / "assets" / "samples" / "sunset_lake.png"
ID_RE = re.compile(r"\?gen=(\d{8}-\d{6}-[0-9a-f]{6})$")
SMALL = {"size": "128*96", "frame_num": 9, "sampling_steps": 3, "seed": 1234, "randomize_seed": False}
API = {"t2v-A14B": "/generate_t2v", "i2v-A14B": "/generate_i2v", "ti2v-5B": "/generate_ti2v"}
FPS = {"t2v-A14B": 16, "i2v-A14B": 16, "ti2v-5B": 24}

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------ server fixture
@dataclass
class AppServer:
    url: str
    outputs: Path
    proc: subprocess.Popen
    log: Path

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(outputs: Path, log: Path, *extra: str, timeout: float = 180.0, demo: bool = True,
               env_extra: dict[str, str] | None = None) -> AppServer:
    """Start ``python app.py --demo`` (or without ``--demo``) on a free port and wait until it answers HTTP."""
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SPACES_ZERO_GPU", None)
    env.update(env_extra or {})
    cmd = [sys.executable, str(ROOT / "app.py"), *(["--demo"] if demo else []), "--host", "127.0.0.1",
           "--port", str(port), "--outputs", str(outputs), *extra]
    fh = log.open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as r:
                if r.status == 200:
                    return AppServer(url, outputs, proc, log)
        except OSError:
            time.sleep(0.5)
    stop_app(AppServer(url, outputs, proc, log))
    raise RuntimeError(f"app.py did not answer within {timeout}s:\n{log.read_text()[-4000:]}")


def stop_app(server: AppServer) -> None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("app")
    server = launch_app(base / "outputs", base / "app.log")
    yield server
    stop_app(server)
    assert "generation failed" not in server.log_text(), server.log_text()[-4000:]


# ------------------------------------------------------------------------------- helpers
def mp4_info(path: str | Path) -> dict:
    """Frame count, fps and size read with ffmpeg (independent of the app's own reader)."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    n = sum(1 for _ in gen)
    return {"frames": n, "fps": meta["fps"], "size": tuple(meta["size"])}


def expected_i2v_size(image: Path, area: int) -> tuple[int, int]:
    """The official I2V-A14B output size for an image and a requested area (stride 8, patch 2)."""
    import math

    from PIL import Image

    with Image.open(image) as im:
        w, h = im.size
    aspect = h / w
    lat_h = round(math.sqrt(area * aspect) // 8 // 2 * 2)
    lat_w = round(math.sqrt(area / aspect) // 8 // 2 * 2)
    return lat_w * 8, lat_h * 8


def generate_args(task: str, **over) -> dict:
    args = {"prompt": "a red fox runs through a snowy forest at dawn", **SMALL, **over}
    if task == "i2v-A14B" and "image" not in args:
        from gradio_client import handle_file

        args["image"] = handle_file(str(SAMPLE_IMAGE))
    return args


def generate(client, task: str, **over):
    return client.predict(api_name=API[task], **generate_args(task, **over))


def job_updates(job) -> list:
    """Every update the server sent for a finished job, in the order sent: gradio_client's own update
    stream (``async for update in job``, what Gradio's MCP server reads too), read once the job is
    done, so nothing is polled and nothing is missed. Status updates carry ``code``, ``rank`` and
    ``progress_data``; the last update is the final output."""
    import asyncio

    job.result()  # done (or raises)

    async def collect() -> list:
        return [u async for u in job]

    return asyncio.run(collect())


STEP_RE = re.compile(r"^step (\d+)/(\d+) · ([^·]+[^· ])( · ETA \d+s)?$")  # the expert or model, then the ETA


def step_units(updates: list) -> list:
    """The denoising-step progress units among ``updates``, in order."""
    return [unit for u in updates if u.type == "status" for unit in (u.progress_data or [])
            if unit.desc and unit.desc.startswith("step ")]


def check_step_progress(updates: list, total: int) -> list:
    """Each step update is well formed (``step k/total · <expert>[ · ETA Ns]``, its progress index
    the step it names), steps only move forward, the expert phase never goes back from low- to
    high-noise, and the job ends with its final output after the steps. Returns the step units."""
    from gradio_client.utils import Status

    units = step_units(updates)
    for unit in units:
        m = STEP_RE.match(unit.desc)
        assert m, unit.desc
        assert (int(m.group(1)), int(m.group(2))) == (unit.index, unit.length) and unit.length == total, unit
    steps = [unit.index for unit in units]
    assert steps == sorted(set(steps)) and all(1 <= k <= total for k in steps), steps
    phases = ["low" if "low-noise" in unit.desc else "high" for unit in units if "noise expert" in unit.desc]
    assert phases == sorted(phases), phases  # "high" < "low": never back to the high-noise expert
    codes = [u.code if u.type == "status" else "output" for u in updates]
    assert Status.PROCESSING in codes and codes[-2:] == [Status.FINISHED, "output"], codes
    first_step = next((i for i, u in enumerate(updates) if step_units([u])), None)
    if first_step is not None:  # steps are reported after processing starts, before it finishes
        assert codes.index(Status.PROCESSING) < first_step < codes.index(Status.FINISHED), codes
    final = updates[-1]
    assert final.type == "output" and final.final and final.success, final
    return units


def settings_of(server: AppServer, gen_id: str) -> dict:
    return json.loads((server.outputs / f"{gen_id}.json").read_text())


def app_error(fn, *args, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        fn(*args, **kwargs)
    return str(e.value)


# --------------------------------------------------------------------------------- tests
def test_named_api_endpoints(app_server):
    api = app_server.client().view_api(return_format="dict", print_info=False)
    named = api["named_endpoints"]
    for name in [*API.values(), "/get_result", "/settings_from_video", "/extend_prompt"]:
        assert name in named, sorted(named)
    params = [p["parameter_name"] for p in named["/generate_t2v"]["parameters"]]
    assert {"prompt", "size", "frame_num", "seed", "guide_scale_high", "guide_scale_low"} <= set(params)
    assert "image" in [p["parameter_name"] for p in named["/generate_i2v"]["parameters"]]
    assert "guide_scale" in [p["parameter_name"] for p in named["/generate_ti2v"]["parameters"]]


def test_used_seed_hidden_until_a_result_and_estimate_localized(app_server):
    # gr.Number shows an empty value as 0 in the browser, so the "Used seed" box starts hidden
    with urllib.request.urlopen(app_server.url + "config", timeout=10) as r:
        config = json.loads(r.read())
    seeds = [c["props"] for c in config["components"] if "used-seed" in (c["props"].get("elem_classes") or [])]
    assert len(seeds) == 3 and all(p["visible"] is False and p.get("value") is None for p in seeds), seeds
    # the info line under Generate follows the request's language (en / ko / zh)
    import app

    assert app._estimate_text("t2v-A14B", "128*96", 9, 16, 4, demo=True) == "9 frames @ 16 fps = 0.6 s of video"
    assert app._estimate_text("t2v-A14B", "128*96", 9, 16, 4, demo=True, lang="ko") == "9프레임 @ 16 fps = 영상 0.6초"
    zh = app._estimate_text("t2v-A14B", "832*480", 81, 16, 40, demo=False, lang="zh")
    assert zh.startswith("81 帧 @ 16 fps = 5.1 秒视频 · 预计 GPU 时间 ≈ ") and zh.endswith("秒（H100 级，bf16）"), zh
    assert app._estimate_text("t2v-A14B", "not a size", 81, 16, 40, demo=False, lang="ko") == ""


@pytest.mark.parametrize("task", list(API))
def test_generate_each_tab(app_server, task):
    job = app_server.client().submit(api_name=API[task], **generate_args(task, fps=FPS[task]))
    video, used_seed, status, link = job.result()
    # what happened on the way: queued, processing, step progress k/3 in order, then the output
    check_step_progress(job_updates(job), total=SMALL["sampling_steps"])
    assert used_seed == 1234
    gen_id = ID_RE.search(link).group(1)
    assert link.startswith(app_server.url)
    # I2V-A14B keeps the image's aspect ratio: the size sets the area (official arithmetic)
    size = expected_i2v_size(SAMPLE_IMAGE, 128 * 96) if task == "i2v-A14B" else (128, 96)
    info = mp4_info(video)
    assert info == {"frames": 9, "fps": FPS[task], "size": size}, info
    stored = app_server.outputs / f"{gen_id}.mp4"
    assert stored.is_file() and mp4_info(stored) == info
    s = settings_of(app_server, gen_id)
    assert s["task"] == task and s["seed"] == 1234 and s["demo"] is True
    assert (s["size"], s["frame_num"], s["sampling_steps"], s["fps"]) == ("128*96", 9, 3, FPS[task])
    assert s["video"] == {"width": size[0], "height": size[1], "frames": 9, "fps": FPS[task]}
    if task == "i2v-A14B":
        assert s["image_file"] == f"{gen_id}.input.png" and (app_server.outputs / s["image_file"]).is_file()
    assert gen_id in status and "seed 1234" in status


def test_randomized_seed_is_reported_and_stored(app_server):
    _, used_seed, _, link = generate(app_server.client(), "ti2v-5B", randomize_seed=True, seed=5)
    assert isinstance(used_seed, (int, float)) and used_seed != 5
    assert settings_of(app_server, ID_RE.search(link).group(1))["seed"] == int(used_seed)


def test_ti2v_with_image_and_moe_guidance_stored(app_server):
    from gradio_client import handle_file

    c = app_server.client()
    # an optional image: the size sets the area, the image's aspect ratio sets the shape
    video, _, _, link = generate(c, "ti2v-5B", image=handle_file(str(SAMPLE_IMAGE)), guide_scale=6.5, size="128*128")
    s = settings_of(app_server, ID_RE.search(link).group(1))
    assert s["guide_scale"] == {"dense": 6.5} and s["image_file"] and s["size"] == "128*128"
    w, h = mp4_info(video)["size"]
    assert w > h and w * h <= 128 * 128 and w % 32 == h % 32 == 0 and s["video"]["width"] == w
    # a size outside the presets (the any-size path of --demo), text only
    video, _, _, link = generate(c, "ti2v-5B", size="160*64")
    assert mp4_info(video)["size"] == (160, 64)
    _, _, _, link = generate(c, "t2v-A14B", guide_scale_high=4.5, guide_scale_low=2.5)
    assert settings_of(app_server, ID_RE.search(link).group(1))["guide_scale"] == {"high_noise": 4.5, "low_noise": 2.5}


def test_permalink_id_restores_via_api_and_video_metadata(app_server):
    from gradio_client import handle_file

    c = app_server.client()
    video, _, _, link = generate(c, "t2v-A14B", prompt="a lighthouse in a storm", seed=99)
    gen_id = ID_RE.search(link).group(1)
    got_video, settings, got_link = c.predict(gen_id, api_name="/get_result")
    assert got_link == link and settings["prompt"] == "a lighthouse in a storm" and settings["seed"] == 99
    assert mp4_info(got_video)["frames"] == 9
    embedded = c.predict(handle_file(str(app_server.outputs / f"{gen_id}.mp4")), api_name="/settings_from_video")
    assert embedded["id"] == gen_id and embedded["prompt"] == "a lighthouse in a storm"
    assert embedded["task"] == "t2v-A14B" and embedded["seed"] == 99


def test_bad_input_gets_a_clear_message_and_the_app_keeps_serving(app_server, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    c = app_server.client()
    msg = app_error(generate, c, "t2v-A14B", prompt="   ")
    assert "Prompt: is empty" in msg
    msg = app_error(generate, c, "ti2v-5B", size="1000*1000")
    assert "Resolution" in msg and "multiples of 32" in msg
    msg = app_error(generate, c, "ti2v-5B", size="1280*704")
    assert "Resolution" in msg and "demo mode" in msg  # official size, but the demo runs on the CPU
    msg = app_error(generate, c, "ti2v-5B", size="huge")
    assert "Resolution" in msg and "W*H" in msg
    msg = app_error(generate, c, "t2v-A14B", frame_num=10)
    assert "Frames: must be" in msg and "4n+1" in msg
    msg = app_error(generate, c, "i2v-A14B", image=None)
    assert "Image:" in msg and "upload one" in msg
    not_image = tmp_path / "notes.png"
    not_image.write_text("definitely not a PNG")
    msg = app_error(generate, c, "i2v-A14B", image=handle_file(str(not_image)))
    assert "mage" in msg and ("not an image" in msg or "cannot" in msg.lower()), msg
    huge = tmp_path / "huge.png"
    Image.new("1", (9000, 6000)).save(huge)
    msg = app_error(generate, c, "i2v-A14B", image=handle_file(str(huge)))
    assert "too large" in msg
    msg = app_error(c.predict, "../../etc/passwd", api_name="/get_result")
    assert "not a valid result id" in msg
    msg = app_error(c.predict, "20200101-000000-abcdef", api_name="/get_result")
    assert "No result with id 20200101-000000-abcdef" in msg
    plain = tmp_path / "plain.mp4"
    _write_plain_mp4(plain)
    msg = app_error(c.predict, handle_file(str(plain)), api_name="/settings_from_video")
    assert "no Wan Playground settings" in msg
    # still serving
    video, *_ = generate(c, "ti2v-5B")
    assert mp4_info(video)["frames"] == 9


def _write_plain_mp4(path: Path) -> None:
    import imageio_ffmpeg
    import numpy as np

    w = imageio_ffmpeg.write_frames(str(path), (64, 64), fps=8, macro_block_size=16)
    w.send(None)
    for i in range(5):
        w.send(np.full((64, 64, 3), i * 40, dtype=np.uint8).tobytes())
    w.close()


def test_progress_reports_steps_with_expert_phase(app_server):
    c = app_server.client()
    job = c.submit(api_name=API["t2v-A14B"], prompt="a paper boat on a river",
                   **{**SMALL, "sampling_steps": 16})
    updates = job_updates(job)
    steps = [u.desc for u in check_step_progress(updates, total=16)]
    assert steps, [u.progress_data for u in updates if u.type == "status"]
    assert all(re.match(r"step \d+/16 · (high|low)-noise expert", d) for d in steps), steps
    assert any("ETA" in d for d in steps), steps


def test_four_concurrent_clients_all_saved(app_server):
    before = {p.stem for p in app_server.outputs.glob("*.json")}
    results: dict[int, tuple] = {}
    updates: dict[int, list] = {}
    errors: list[BaseException] = []
    clients = [app_server.client() for _ in range(4)]
    start = threading.Barrier(4)

    def run(i: int) -> None:
        try:
            start.wait(timeout=60)  # all four join the queue together
            job = clients[i].submit(api_name=API["ti2v-5B"], prompt=f"concurrent client {i}",
                                    **{**SMALL, "seed": 100 + i})
            results[i] = job.result()
            updates[i] = job_updates(job)
        except BaseException as e:  # collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=240)
    assert not errors, errors
    assert len(results) == 4
    ids = {ID_RE.search(r[3]).group(1) for r in results.values()}
    assert len(ids) == 4
    after = {p.stem for p in app_server.outputs.glob("*.json")}
    assert ids <= after - before
    assert {settings_of(app_server, i)["prompt"] for i in ids} == {f"concurrent client {i}" for i in range(4)}
    assert {settings_of(app_server, i)["seed"] for i in ids} == {100, 101, 102, 103}
    # each job's own stream: queued, processing, its steps in order, then its output
    for i in range(4):
        check_step_progress(updates[i], total=SMALL["sampling_steps"])
    # with one GPU slot, jobs that joined together waited in line: the queue positions the server
    # sent them (every estimation message, not a polled sample) reach 1 and beyond
    ranks = [u.rank for i in range(4) for u in updates[i] if u.type == "status" and u.rank is not None]
    assert max(ranks, default=0) >= 1, ranks


def test_cancel_stops_the_run_and_saves_nothing(app_server):
    c = app_server.client()
    before = {p.stem for p in app_server.outputs.glob("*.json")}
    job = c.submit(api_name=API["t2v-A14B"], prompt="a very long run", **{**SMALL, "sampling_steps": 100, "frame_num": 33})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = job.status()
        if any(u.desc and u.desc.startswith("step ") for u in (st.progress_data or [])):
            break
        time.sleep(0.02)
    job.cancel()
    time.sleep(3)
    assert {p.stem for p in app_server.outputs.glob("*.json")} == before
    # the server is free again: a new job runs to completion
    video, *_ = generate(c, "ti2v-5B")
    assert mp4_info(video)["frames"] == 9
    assert "generation failed" not in app_server.log_text()


def test_history_survives_a_restart(app_server, tmp_path):
    _, _, _, link = generate(app_server.client(), "ti2v-5B", prompt="remember me", seed=7)
    gen_id = ID_RE.search(link).group(1)
    second = launch_app(app_server.outputs, tmp_path / "second.log")  # a new process on the same folder
    try:
        video, settings, new_link = second.client().predict(gen_id, api_name="/get_result")
        assert settings["prompt"] == "remember me" and settings["seed"] == 7
        assert new_link == f"{second.url}?gen={gen_id}"
        assert mp4_info(video)["frames"] == 9
    finally:
        stop_app(second)


def test_extend_prompt_api(app_server):
    out = app_server.client().predict("a cat", "t2v-A14B", "en", False, api_name="/extend_prompt")
    assert isinstance(out, str) and "cat" in out.lower() and len(out) > len("a cat")


def test_missing_weights_give_a_clear_message(tmp_path):
    """Without --demo and without weights (offline, empty cache) the app starts and explains what to do."""
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "WAN_CKPT_DIR": ""}
    server = launch_app(tmp_path / "outputs", tmp_path / "real.log", "--ckpt-dir", str(tmp_path / "ckpts"),
                        demo=False, env_extra=env)
    try:
        c = server.client()
        msg = app_error(generate, c, "t2v-A14B", size="832*480")
        assert "t2v-A14B weights were not found" in msg and "HF_HUB_OFFLINE" in msg, msg
        assert "models_t5_umt5-xxl-enc-bf16.pth" in msg and "Wan2.1_VAE.pth" in msg and "high_noise_model" in msg
        assert "hf download Wan-AI/Wan2.2-T2V-A14B" in msg and "--demo" in msg
        msg = app_error(generate, c, "ti2v-5B", size="128*96")  # real mode: the official sizes only
        assert "128*96 is not supported by ti2v-5B" in msg and "1280*704" in msg
        assert app_error(generate, c, "ti2v-5B", size="1280*704").count("ti2v-5B weights were not found") == 1
    finally:
        stop_app(server)
    assert "generation failed" not in server.log_text(), server.log_text()[-4000:]  # an expected error, not a bug


# ------------------------------------------------------------------------------ hardening
def _call_raw(server: AppServer, api: str, body: str) -> str:
    """POST a raw JSON body (NaN allowed) to /gradio_api/call/<api> and return the event stream text."""
    req = urllib.request.Request(server.url + f"gradio_api/call/{api}", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        event_id = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(server.url + f"gradio_api/call/{api}/{event_id}", timeout=60) as r:
        return r.read().decode()


def test_api_type_errors_name_the_field(app_server):
    tracebacks = app_server.log_text().count("Traceback")
    c = app_server.client()
    msg = app_error(generate, c, "t2v-A14B", sampling_steps="abc")
    assert "Steps: 'abc' is not a number" in msg and "1 to 100" in msg, msg
    msg = app_error(generate, c, "ti2v-5B", seed="abc")
    assert "Seed: 'abc' is not a number" in msg, msg
    msg = app_error(c.predict, 123, "t2v-A14B", "en", False, api_name="/extend_prompt")
    assert "prompt: must be text" in msg, msg
    args = [generate_args("t2v-A14B")[k] for k in ("prompt",)] + ["", "128*96", 9, 16, float("nan")]
    # json writes NaN as NaN; a raw positional call sends every parameter, the optional attention/loras/preset/cache too
    body = json.dumps({"data": args + [12.0, "unipc", 4.0, 3.0, 1, False, None, None, None, None]})
    stream = _call_raw(app_server, "generate_t2v", body)
    assert "event: error" in stream and "Steps: nan is not a finite number" in stream, stream
    time.sleep(0.5)
    log = app_server.log_text()
    assert log.count("Traceback") == tracebacks, log[-3000:]  # ordinary input errors: one line, no traceback
    assert "invalid input: Seed: 'abc' is not a number" in log


def test_one_session_cannot_fill_the_queue(app_server):
    from gradio_client.exceptions import AppError

    greedy, other = app_server.client(), app_server.client()
    jobs = [greedy.submit(api_name=API["t2v-A14B"], **generate_args("t2v-A14B", sampling_steps=30)) for _ in range(5)]
    outcomes = []
    for job in jobs:
        try:
            job.result()
            outcomes.append("ok")
        except (AppError, Exception) as e:  # the refusal is a validation error raised by gradio_client
            outcomes.append(str(e))
    refused = [o for o in outcomes if "already have 2 generation jobs" in o]
    assert len(refused) >= 2 and outcomes.count("ok") >= 2, outcomes
    video, *_ = generate(other, "ti2v-5B")  # another client is served
    assert mp4_info(video)["frames"] == 9


def test_public_server_hides_paths_others_results_and_downloads(tmp_path):
    from gradio_client import handle_file

    server = launch_app(tmp_path / "outputs", tmp_path / "public.log", env_extra={"SPACE_ID": "someone/wan"})
    try:
        with urllib.request.urlopen(server.url + "config", timeout=10) as r:
            config = r.read().decode()
        for path in (str(tmp_path), str(ROOT), "site-packages"):
            assert path not in config, path
        buttons = [c["props"] for c in json.loads(config)["components"] if "btn.download" in json.dumps(c["props"])]
        assert buttons and not any(p["visible"] for p in buttons)
        c = server.client()
        _, _, _, link = generate(c, "ti2v-5B", prompt="mine only")
        gen_id = ID_RE.search(link).group(1)
        listing = _call_raw(server, "list_history", json.dumps({"data": []}))
        assert "event: complete" in listing and gen_id not in listing, listing  # no browser token: nothing listed
        _, settings, _ = server.client().predict(gen_id, api_name="/get_result")  # the permalink still works
        assert settings["prompt"] == "mine only"
        import httpx  # raw upload: gradio_client refuses an over-size file before sending it

        r = httpx.post(server.url + "gradio_api/upload", files={"files": ("big.mp4", b"\0" * (26 * 1024 * 1024))},
                       timeout=60)
        assert r.status_code == 413, (r.status_code, r.text[:200])
        # an accepted upload is deleted once used
        stored = server.outputs / f"{gen_id}.mp4"
        r = httpx.post(server.url + "gradio_api/upload", files={"files": ("v.mp4", stored.read_bytes())}, timeout=60)
        (uploaded,) = r.json()
        assert Path(uploaded).is_file()
        assert c.predict(handle_file(uploaded), api_name="/settings_from_video")["id"] == gen_id
        assert not Path(uploaded).exists()
    finally:
        stop_app(server)
