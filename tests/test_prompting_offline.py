"""prompting: the offline enricher writes a prompt worth using (the official formula, one language) and
``available_extenders`` says which enhancers a server can offer."""

from __future__ import annotations

import re

import pytest

import prompting
from prompting import ExtenderConfig, available_extenders, load_vocabulary, make_extender, make_extenders
from prompting.offline import OfflineExtender, plan

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
ZH_PUNCT = set("，。、；：！？")
ALLOWED_MODEL_WORDS = {"3D"}  # vocabulary terms written with Latin letters in Chinese ("3D卡通")
MOTION_EN = ("motion is", "movement is", "slowly", "gently", "smooth")
MOTION_ZH = ("动作", "缓缓", "缓慢", "轻柔")


def _terms_in(text: str, lang: str) -> set[str]:
    """Vocabulary term ids whose label (in ``lang``) the text contains."""
    vocab = load_vocabulary()
    found = set()
    for term in vocab:
        label = term.label(lang)
        if (label in text) if lang == "zh" else re.search(rf"(?<![\w-]){re.escape(label)}(?![\w-])", text, re.I):
            found.add(term.id)
    return found


def _aesthetic_terms(ids: set[str]) -> set[str]:
    vocab = load_vocabulary()
    aesthetic = {"light_source", "lighting", "time_of_day", "shot_size", "composition", "lens", "camera_angle",
                 "shot_type", "color_tone", "camera_movement", "camera_movement_advanced"}
    return {i for i in ids if vocab.term(i).group in aesthetic}


def test_english_idea_gets_subject_scene_motion_and_aesthetics() -> None:
    result = make_extender("offline").extend("the cat waves its paw", task="t2v-A14B", lang="en")
    text = result.prompt
    assert result.ok and result.warning is None, result
    assert "The cat waves its paw" in text  # the subject and its action, as written
    assert "living room" in text  # a scene the idea did not name, chosen for a pet
    assert "gentle and unhurried" in text and "small in amplitude" in text  # amplitude and speed of the motion
    assert any(w in text for w in MOTION_EN)
    assert len(_aesthetic_terms(_terms_in(text, "en"))) >= 3, text
    assert {"day_time", "daylight", "center_composition", "camera_pushes_in"} <= _terms_in(text, "en")
    assert not CJK.search(text), text
    assert len(text) > 3 * len("the cat waves its paw")
    # the old weak output is gone
    assert text != "The cat waves its paw. Fixed camera."


def test_chinese_idea_is_written_entirely_in_chinese() -> None:
    result = make_extender("offline").extend("猫咪挥动爪子", task="t2v-A14B", lang="zh")
    text = result.prompt
    assert result.ok and result.warning is None, result
    assert text.startswith("日光，柔光，白天，") and "猫咪挥动爪子" in text
    latin = set(re.findall(r"[A-Za-z0-9]+", text))
    assert latin <= ALLOWED_MODEL_WORDS, latin
    assert ZH_PUNCT & set(text) and not set(",.;:!?") & set(text), text  # full-width punctuation only
    assert any(w in text for w in MOTION_ZH)
    assert len(_aesthetic_terms(_terms_in(text, "zh"))) >= 3, text
    assert text.endswith("镜头推进。")


def test_chinese_is_kept_even_when_english_is_requested_and_vice_versa() -> None:
    ext = make_extender("offline")
    zh = ext.extend("猫咪挥动爪子", task="t2v-A14B", lang="en")
    assert zh.ok and zh.reason == "untranslated" and "stays in Chinese" in zh.warning
    assert not re.search(r"[A-Za-z]", zh.prompt.replace("3D", ""))
    en = ext.extend("the cat waves its paw", task="t2v-A14B", lang="zh")
    assert en.ok and en.reason == "untranslated" and not CJK.search(en.prompt)


def test_chinese_stylized_idea_keeps_model_words_only() -> None:
    text = make_extender("offline").extend("3D卡通，小狗在草地上奔跑", task="t2v-A14B", lang="zh").prompt
    assert text.startswith("3D卡通。") and "日光" not in text  # style first, no cinematic terms
    assert set(re.findall(r"[A-Za-z0-9]+", text)) <= ALLOWED_MODEL_WORDS


@pytest.mark.parametrize(("prompt", "lang"), [("the cat waves its paw", "en"), ("猫咪挥动爪子", "zh"),
                                              ("a red fox", "en"), ("城市夜景", "zh")])
@pytest.mark.parametrize("task", ["t2v-A14B", "i2v-A14B", "ti2v-5B"])
def test_deterministic(prompt: str, lang: str, task: str) -> None:
    has_image = task == "i2v-A14B"
    first = make_extender("offline").extend(prompt, task=task, lang=lang, has_image=has_image)
    again = OfflineExtender().extend(prompt, task=task, lang=lang, has_image=has_image)
    assert first == again and first.prompt == again.prompt


@pytest.mark.parametrize(("prompt", "lang", "camera"), [("the cat waves its paw", "en", "Fixed camera."),
                                                         ("猫咪挥动爪子", "zh", "固定镜头。")])
def test_an_image_moves_the_focus_to_motion_and_camera(prompt: str, lang: str, camera: str) -> None:
    ext = make_extender("offline")
    t2v = ext.extend(prompt, task="ti2v-5B", lang=lang, has_image=False).prompt
    i2v = ext.extend(prompt, task="ti2v-5B", lang=lang, has_image=True).prompt
    assert i2v != t2v and len(i2v) < len(t2v)
    assert i2v.endswith(camera)
    assert any(w in i2v for w in (MOTION_EN if lang == "en" else MOTION_ZH))
    # the image fixes subject, scene, light and style: no scene or light terms, no invented scene
    vocab = load_vocabulary()
    groups = {vocab.term(i).group for i in _terms_in(i2v, lang)}
    assert not groups & {"light_source", "lighting", "time_of_day", "shot_size", "composition", "lens", "color_tone"}
    assert "living room" not in i2v and "客厅" not in i2v
    assert "living room" in t2v or "客厅" in t2v


def test_image_to_video_keeps_the_ideas_camera_and_follows_a_moving_subject() -> None:
    ext = make_extender("offline")
    own = ext.extend("the girl waves as the camera pans left", task="i2v-A14B", lang="en", has_image=True).prompt
    assert "Fixed camera" not in own and "pans left" in own
    running = ext.extend("a dog runs toward the camera", task="i2v-A14B", lang="en", has_image=True).prompt
    assert "Fixed camera" not in running  # the idea names the camera
    runs = ext.extend("a dog runs across the yard", task="i2v-A14B", lang="en", has_image=True).prompt
    assert runs.endswith("Tracking shot.") and "quick and powerful" in runs
    idle = ext.extend("the cat", task="i2v-A14B", lang="en", has_image=True).prompt
    assert idle.startswith("The cat looks around slowly")  # an action for an idea without one


@pytest.mark.parametrize(
    ("prompt", "expect"),
    [
        # "at night" / "at sunset" already name the time of day: not repeated, but the light follows it
        ("a red fox trotting through a snowy forest at night", {"moonlight", "cool_colors", "tracking_shot"}),
        ("a couple dancing by a campfire on the beach at sunset", {"firelight", "edge_lighting", "tracking_shot"}),
        ("a young woman walks through a neon-lit street in the rain", {"mixed_lighting", "night_time", "tracking_shot"}),
        ("snow-capped mountains at sunrise", {"wide_shot", "balanced_composition", "wide_angle_lens", "aerial_shot"}),
        ("a cup of coffee", {"medium_close_up_shot", "orbiting_camera_movement"}),
        ("an old man reading by the fireplace at night", {"firelight", "medium_close_up_shot"}),
    ],
)
def test_terms_fit_the_idea(prompt: str, expect: set[str]) -> None:
    p = plan(prompt, kind="t2v", lang="en")
    assert expect <= set(p.terms), (p.terms, p.prompt)
    assert set(p.terms) <= _terms_in(p.prompt, "en"), p.prompt
    if "night" in prompt:
        assert not {"day_time", "daylight"} & set(p.terms)


def test_terms_the_idea_names_are_not_repeated_or_contradicted() -> None:
    text = make_extender("offline").extend("a fox at night, wide shot, camera pushes in", lang="en").prompt
    assert text.lower().count("wide shot") == 1 and text.lower().count("night") == 1, text
    assert "Daylight" not in text and "Camera pushes in." in text and "Tracking shot" not in text
    assert "Eye-level shot" not in text  # no camera angle when the idea describes the camera


def test_landscape_gets_background_motion_not_a_subject() -> None:
    text = make_extender("offline").extend("城市夜景", lang="zh").prompt
    assert text == "人工光，高对比度，夜晚，全景，平衡构图，广角镜头，平视，冷色调。城市夜景。远处的灯光轻轻闪烁。镜头向右移动。"


# ------------------------------------------------------------------------------ available_extenders
def test_only_offline_without_configuration() -> None:
    infos = available_extenders(env={})
    assert [i.kind for i in infos] == ["offline", "openai", "local"]
    assert [i.ready for i in infos] == [True, False, False]
    assert infos[0].default and "no model" in infos[0].label
    assert "--extender-url" in infos[1].detail and "--extender-model" in infos[2].detail
    built = make_extenders(env={})
    assert list(built) == ["offline"] and built["offline"].name == "offline"


def test_openai_endpoint_from_flags_and_environment() -> None:
    config = ExtenderConfig.from_flags("openai", "qwen2.5:7b", "http://127.0.0.1:11434/v1")
    infos = {i.kind: i for i in available_extenders(config, env={})}
    assert infos["openai"].ready and infos["openai"].default
    assert infos["openai"].detail == "qwen2.5:7b at 127.0.0.1:11434"
    built = make_extenders(config, env={})
    assert list(built) == ["openai", "offline"]  # default first
    # a DashScope key in the environment configures the endpoint (qwen-plus) next to a local default
    config = ExtenderConfig.from_flags("local", "qwen2.5-3b")
    infos = {i.kind: i for i in available_extenders(config, env={"DASHSCOPE_API_KEY": "sk-x"})}
    assert infos["openai"].ready and "qwen-plus at dashscope.aliyuncs.com" == infos["openai"].detail
    assert "sk-x" not in repr(infos)  # the key is never shown
    # a URL without a model is not usable: it says why
    infos = {i.kind: i for i in available_extenders(ExtenderConfig(openai={"base_url": "http://h:1/v1"}), env={})}
    assert not infos["openai"].ready and "model is required" in infos["openai"].detail


def test_local_model_from_flags_or_environment() -> None:
    pytest.importorskip("transformers")
    config = ExtenderConfig.from_flags("local", "qwen2.5-0.5b")
    infos = {i.kind: i for i in available_extenders(config, env={})}
    assert infos["local"].ready and infos["local"].detail.startswith("Qwen/Qwen2.5-0.5B-Instruct")
    infos = {i.kind: i for i in available_extenders(env={"WAN_PROMPT_LOCAL_MODEL": "/models/qwen"})}
    assert infos["local"].ready and not infos["local"].default
    built = make_extenders(env={"WAN_PROMPT_LOCAL_MODEL": "/models/qwen"})
    assert list(built) == ["offline", "local"] and built["local"].model_id == "/models/qwen"
    assert not built["local"].loaded  # nothing is loaded until the first extend


def test_flags_route_the_model_and_an_unconfigured_default_is_an_error() -> None:
    assert ExtenderConfig.from_flags("offline", "m", "http://h/v1").openai == {"base_url": "http://h/v1", "model": "m"}
    assert ExtenderConfig.from_flags("offline", "m").local == {"model": "m"}
    assert ExtenderConfig.from_flags("local", "m", "http://h/v1").local == {"model": "m"}
    with pytest.raises(ValueError, match="kind must be one of"):
        ExtenderConfig.from_flags("dashscope")
    with pytest.raises(ValueError, match="'openai' prompt enhancer is not configured"):
        make_extenders(ExtenderConfig(default="openai"), env={})
    assert prompting.EXTENDER_KINDS == ("offline", "openai", "local")
