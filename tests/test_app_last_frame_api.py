"""First-last frame video through the API: ``generate_i2v(..., last_image=...)`` against the real app
(``python app.py --demo``, driven by gradio_client). The endpoint runs the same runner as the I2V tab's
Generate button: the last frame is checked like the first image, recorded in the settings, kept as
``<id>.last.png`` next to the result (what a permalink restores; the browser side of that restore is
tests/test_browser_timeline.py), and its problems are named "Last frame".
"""

from __future__ import annotations

import pytest
from test_app import (
    API,
    ID_RE,
    ROOT,
    app_error,
    generate,
    launch_app,
    mp4_info,
    settings_of,
    stop_app,
)

pytestmark = pytest.mark.slow

LAST_IMAGE = ROOT / "assets" / "samples" / "cat_portrait.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("last_frame_api")
    s = launch_app(base / "outputs", base / "app.log")
    yield s
    stop_app(s)
    assert "generation failed" not in s.log_text(), s.log_text()[-4000:]


def test_last_image_is_the_last_parameter_of_generate_i2v(server):
    api = server.client().view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = [p["parameter_name"] for p in api[API["i2v-A14B"]]["parameters"]]
    # appended: a positional caller of the earlier parameters still lines up
    assert params[-4:] == ["image", "loras", "preset", "last_image"] and "cache" in params, params
    last = api[API["i2v-A14B"]]["parameters"][-1]
    assert last["parameter_has_default"] and last["parameter_default"] is None, last
    for task in ("t2v-A14B", "ti2v-5B"):  # only I2V-A14B has a last-frame path
        assert "last_image" not in [p["parameter_name"] for p in api[API[task]]["parameters"]]


def test_generate_i2v_with_a_last_frame_keeps_it_and_the_permalink_restores_it(server):
    from gradio_client import handle_file
    from PIL import Image

    c = server.client()
    video, seed, status, link = generate(c, "i2v-A14B", prompt="the sun sets behind the lake", seed=7,
                                         last_image=handle_file(str(LAST_IMAGE)))
    gen_id = ID_RE.search(link).group(1)
    assert seed == 7 and gen_id in status and mp4_info(video)["frames"] == 9
    settings = settings_of(server, gen_id)
    # the settings name both images' files (never a server path), the first one by its stored copy
    assert settings["last_image"] == LAST_IMAGE.name and settings["image_file"] == f"{gen_id}.input.png", settings
    kept = server.outputs / f"{gen_id}.last.png"
    assert kept.is_file()
    with Image.open(kept) as im, Image.open(LAST_IMAGE) as src:
        assert im.size == src.size and im.convert("RGB").tobytes() == src.convert("RGB").tobytes()
    # the permalink's id restores the result with its last frame (settings here; the slot in the browser test)
    got_video, got_settings, got_link = c.predict(gen_id, api_name="/get_result")
    assert got_link == link and got_settings["last_image"] == LAST_IMAGE.name
    assert mp4_info(got_video)["frames"] == 9
    embedded = c.predict(handle_file(str(server.outputs / f"{gen_id}.mp4")), api_name="/settings_from_video")
    assert embedded["id"] == gen_id and embedded["last_image"] == LAST_IMAGE.name

    # without a last frame: nothing kept, nothing recorded (the endpoint's earlier contract)
    _, _, _, link2 = generate(c, "i2v-A14B", prompt="the sun sets behind the lake")
    gen2 = ID_RE.search(link2).group(1)
    assert settings_of(server, gen2)["last_image"] is None
    assert not (server.outputs / f"{gen2}.last.png").exists()


def test_a_last_frame_that_cannot_be_used_is_named(server, tmp_path):
    from gradio_client import handle_file

    c = server.client()
    before = len(list(server.outputs.glob("*.json")))
    last = handle_file(str(LAST_IMAGE))
    msg = app_error(generate, c, "i2v-A14B", image=None, last_image=last)
    assert "Last frame: is the last frame of a first-last frame video: give image" in msg, msg
    not_image = tmp_path / "last.png"
    not_image.write_text("definitely not a PNG")
    msg = app_error(generate, c, "i2v-A14B", last_image=handle_file(str(not_image)))
    assert "Last frame: 'last.png' is not an image" in msg, msg
    msg = app_error(generate, c, "i2v-A14B", frame_num=1, last_image=last)
    assert "Last frame: needs frame_num" in msg and "got 1" in msg, msg  # (toasts are HTML-escaped)
    assert len(list(server.outputs.glob("*.json"))) == before  # nothing was run for the refused calls
    video, *_ = generate(c, "i2v-A14B")  # still serving
    assert mp4_info(video)["frames"] == 9
    assert "Traceback" not in server.log_text()
