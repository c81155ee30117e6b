"""prompting: extension plumbing (answer cleanup, language, system prompts, fallbacks), the offline
enricher and make_extender. The HTTP and local-LLM backends have their own test files."""

from __future__ import annotations

import re

import pytest

import prompting
from prompting import ExtensionResult, PromptExtender, clean_answer, detect_language, make_extender
from prompting.extension import (
    BackendTimeout,
    ExtensionRequest,
    LLMExtender,
    MalformedResponse,
    prepare_request,
    truncate_prompt,
)
from prompting.local_llm import LocalLLMExtender, resolve_local_model
from prompting.openai_compat import DASHSCOPE_BASE_URL, OLLAMA_BASE_URL, OPENAI_BASE_URL, OpenAICompatibleExtender


# ------------------------------------------------------------------------------ answer cleanup
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<think>the user wants a fox</think>\n\nA fox runs.", "A fox runs."),
        ("<THINK>\nplan\n</THINK>A fox runs.", "A fox runs."),
        ("reasoning that lost its opening tag</think>A fox runs.", "A fox runs."),
        ("A fox runs.<think>unfinished", "A fox runs."),
        ('Prompt: "A fox runs."', "A fox runs."),
        ("**Rewritten prompt:** “A fox runs.”", "A fox runs."),
        ("Here is the enhanced prompt:\n\nA fox runs.", "A fox runs."),
        ("## Extended prompt\nA fox runs.", "A fox runs."),
        ("```text\nA fox runs.\n```", "A fox runs."),
        ("改写后的提示词：一只狐狸在雪地里奔跑。", "一只狐狸在雪地里奔跑。"),
        ("「一只狐狸\n在雪地里奔跑。」", "一只狐狸在雪地里奔跑。"),
        ("A fox runs.\n\nIt leaps over a log.", "A fox runs. It leaps over a log."),
        ('"A fox" and "a hare" run.', '"A fox" and "a hare" run.'),  # inner quotes: keep them
        ("Prompt engineering is not a label here.", "Prompt engineering is not a label here."),
        ("<think>only thinking</think>", ""),
        ("   ", ""),
    ],
)
def test_clean_answer(raw: str, clean: str) -> None:
    assert clean_answer(raw) == clean


def test_truncate_prefers_sentence_then_word_boundaries() -> None:
    text = "A fox runs through the snow. It leaps over a fallen log and lands softly."
    assert truncate_prompt(text, 200) == text
    assert truncate_prompt(text, 50) == "A fox runs through the snow."
    assert truncate_prompt("one two three four five six", 15) == "one two three"
    assert truncate_prompt("一只狐狸在雪地里奔跑。它跳过一根倒下的木头，轻轻落地。", 16) == "一只狐狸在雪地里奔跑。"
    assert len(truncate_prompt("x" * 100, 10)) == 10


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("a red fox in the snow", "en"),
        ("一只狐狸在雪地里奔跑", "zh"),
        ("눈 속을 달리는 붉은 여우", "ko"),
        ("雪の中を走る狐", "ja"),
        ("лиса бежит по снегу", "other"),
        ("1234 !!", "unknown"),
        ("A fox runs, 特写", "en"),  # a few Chinese terms inside English prose
        ("特写，中景，a fox", "zh"),
        ("한밤의 city street 고양이", "ko"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


# ------------------------------------------------------------------------------ system prompts
@pytest.mark.parametrize("kind", ["t2v", "i2v"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_system_prompts_are_ours_in_the_target_language(kind: str, lang: str) -> None:
    text = prompting.system_prompt(kind, lang)
    assert detect_language(text) == lang
    vocab = prompting.load_vocabulary()
    if kind == "t2v":
        # the cinematic vocabulary is listed in the output language
        for tid in ("day_time", "medium_shot", "center_composition", "edge_lighting", "warm_colors"):
            assert vocab.label(tid, lang) in text
        assert vocab.label("edge_lighting", "zh" if lang == "en" else "en") not in text
    else:
        for tid in ("camera_pushes_in", "orbiting_camera_movement", "fixed_camera"):
            assert vocab.label(tid, lang) in text
    # our own content rule, not the official platform-moderation rules
    assert ("nudity" in text) if lang == "en" else ("裸露" in text)
    assert "bikini" not in text.lower() and "比基尼" not in text and "同性" not in text


def test_system_prompt_tells_the_model_to_translate() -> None:
    ko = prompting.system_prompt("t2v", "en", source_lang="ko")
    assert "written in Korean" in ko and "English only" in ko
    assert "韩文" in prompting.system_prompt("i2v", "zh", source_lang="ko")
    assert "英文" in prompting.system_prompt("t2v", "zh", source_lang="en")
    assert prompting.system_prompt("t2v", "en", source_lang="en") == prompting.system_prompt("t2v", "en")
    with pytest.raises(ValueError, match="kind must be one of 't2v', 'i2v'"):
        prompting.system_prompt("s2v", "en")


@pytest.mark.parametrize(
    ("task", "has_image", "kind"),
    [("t2v-A14B", False, "t2v"), ("t2v", True, "t2v"), ("i2v-A14B", True, "i2v"), ("i2v", False, "i2v"),
     ("ti2v-5B", False, "t2v"), ("ti2v-5B", True, "i2v")],
)
def test_extension_kind(task: str, has_image: bool, kind: str) -> None:
    assert prompting.extension_kind(task, has_image) == kind
    req = prepare_request("a fox", task=task, lang="zh", has_image=has_image)
    assert req.kind == kind and req.system == prompting.system_prompt(kind, "zh", source_lang="en")
    assert req.messages[1] == {"role": "user", "content": "a fox"}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": None}, "prompt must be a string"),
        ({"lang": "ko"}, "lang must be one of 'en', 'zh'"),
        ({"task": "s2v-14B"}, "expected one of t2v-A14B"),
        ({"prompt": "x" * 5000}, "prompt is too long to extend: 5000 characters, at most 4000"),
    ],
)
def test_invalid_input_raises_value_error(kwargs: dict, needle: str) -> None:
    args = {"prompt": "a fox", "task": "t2v", "lang": "en", "has_image": False, **kwargs}
    with pytest.raises(ValueError, match=needle):
        prepare_request(**args)
    prompt = args.pop("prompt")
    with pytest.raises(ValueError, match=needle):
        make_extender("offline").extend(prompt, **args)


# ------------------------------------------------------------------------------ LLM fallbacks
class ScriptedExtender(LLMExtender):
    """An LLM backend whose answer (or exception) is scripted; records the requests it saw."""

    name = "scripted"

    def __init__(self, answer: object, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.answer = answer
        self.requests: list[ExtensionRequest] = []

    def _complete(self, request: ExtensionRequest) -> str:
        self.requests.append(request)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[return-value]


GOOD_EN = "Soft lighting, medium shot. A red fox trots through fresh snow, its breath steaming in the cold air."


@pytest.mark.parametrize(
    ("answer", "reason", "needle"),
    [
        (BackendTimeout("no answer within 2 s"), "timeout", "no answer within 2 s"),
        (MalformedResponse("the response is not JSON"), "malformed", "not JSON"),
        (RuntimeError("CUDA out of memory"), "error", "RuntimeError: CUDA out of memory"),
        ("", "empty", "empty answer"),
        ("<think>I should write something</think>", "empty", "empty answer"),
        ("I'm sorry, but I can't help with that request.", "refusal", "declined"),
        ("抱歉，我无法完成这个请求。", "refusal", "declined"),
        ("A fox.", "too_short", "too short (6 < 20 characters)"),
        ("一只红狐狸踏着新雪小跑，呼出的白气在冷空气中飘散。", "wrong_language", "in Chinese, not English"),
        (None, "malformed", "returned NoneType"),
    ],
)
def test_failures_fall_back_to_the_original_prompt(answer: object, reason: str, needle: str) -> None:
    ext = ScriptedExtender(answer)
    result = ext.extend("  a fox in the snow ", task="t2v-A14B", lang="en")
    assert result == ExtensionResult(prompt="a fox in the snow", ok=False, backend="scripted",
                                     warning=result.warning, reason=reason, raw=result.raw)
    assert needle in result.warning and result.warning.endswith("the original prompt was kept")


def test_a_good_answer_is_cleaned_and_capped() -> None:
    ok = ScriptedExtender(f'Prompt: "{GOOD_EN}"').extend("a fox", lang="en")
    assert ok.ok and ok.prompt == GOOD_EN and ok.warning is None and ok.backend == "scripted"
    capped = ScriptedExtender(GOOD_EN, max_chars=40).extend("a fox", lang="en")
    assert capped.ok and capped.prompt == "Soft lighting, medium shot." and capped.reason == "truncated"
    assert "cut to 40 characters" in capped.warning
    zh = ScriptedExtender("柔光，中景，一只红狐狸在雪地里小跑。").extend("눈 속의 여우", lang="zh")
    assert zh.ok and zh.prompt == "柔光，中景，一只红狐狸在雪地里小跑。"
    loose = ScriptedExtender("A fox.", min_chars=0).extend("a fox", lang="en")
    assert loose.ok and loose.prompt == "A fox."


def test_korean_input_asks_for_a_translation() -> None:
    ext = ScriptedExtender(GOOD_EN)
    ext.extend("눈 속을 달리는 붉은 여우", task="t2v", lang="en")
    system = ext.requests[0].system
    assert "written in Korean" in system and ext.requests[0].source_lang == "ko"


def test_extenders_satisfy_the_protocol() -> None:
    assert isinstance(make_extender(), PromptExtender)
    assert isinstance(make_extender("local", model="/nonexistent"), PromptExtender)
    assert isinstance(make_extender("openai", base_url="http://127.0.0.1:9/v1", model="m"), PromptExtender)


# ------------------------------------------------------------------------------ offline enricher
# (more in tests/test_prompting_offline.py: the formula's parts, one language, image-to-video focus)
@pytest.mark.parametrize(
    ("prompt", "task", "lang", "has_image", "expected"),
    [
        ("a red fox trotting through a snowy forest", "t2v-A14B", "en", False,
         "Daylight, soft lighting, day time, medium shot, center composition, medium focal length, eye-level shot, "
         "cool colors. A red fox trotting through a snowy forest. The movement is slow and steady, each step calm, "
         "smooth and natural. Snowflakes drift down slowly in the background. Tracking shot."),
        ("a cat napping in a cozy kitchen, close-up", "t2v", "en", False,
         "Daylight, soft lighting, day time, close-up shot, center composition, medium focal length, eye-level shot, "
         "warm colors. A cat napping in a cozy kitchen. The movement is minimal and calm: slow, even breathing with "
         "only slight shifts. Dust motes drift slowly in the light. Camera pushes in."),
        # an English idea stays English (with a warning) even when Chinese was asked for: no mixing
        ("an owl on a branch under a starry sky", "t2v", "zh", False,
         "Moonlight, soft lighting, night time, medium shot, center composition, medium focal length, eye-level "
         "shot, cool colors. An owl on a branch under a starry sky. The owl flutters its wings gently and turns its "
         "head slowly. Stars twinkle faintly in the sky. Camera pushes in."),
        ("一只狐狸在雪地里奔跑，特写", "t2v", "zh", False,
         "日光，柔光，白天，特写，中心构图，中焦距，平视，冷色调。一只狐狸在雪地里奔跑。动作迅速有力，幅度较大，带着自然的冲劲。"
         "背景中雪花缓缓飘落。跟随镜头。"),
        ("a fox at sunset, wide shot", "t2v", "en", False,
         "Daylight, edge lighting, wide shot, center composition, medium focal length, eye-level shot, warm colors. "
         "A fox at sunset. The fox raises its head slowly and looks around, breathing calmly. Camera pushes in."),
        ("watercolor, a paper boat drifting on a pond", "ti2v-5B", "en", False,
         "Watercolor painting. A paper boat drifting on a pond. The movement is slow and smooth, calm and flowing. "
         "The water ripples and sparkles gently. Tracking shot."),
        ("anime girl waving on a rooftop", "t2v", "en", False,
         "Anime girl waving on a rooftop. The motion is gentle and unhurried, small in amplitude, rising slowly and "
         "easing back smoothly. Camera pushes in."),
        ("the girl waves", "i2v-A14B", "en", True,
         "The girl waves. The motion is gentle and unhurried, small in amplitude, rising slowly and easing back "
         "smoothly. The background stays steady, with only slight, natural movement. Fixed camera."),
        ("小女孩挥手", "ti2v-5B", "zh", True,
         "小女孩挥手。动作轻柔舒缓，幅度较小，缓慢抬起后又平稳地回落，自然流畅。背景保持稳定，只有轻微自然的晃动。固定镜头。"),
        ("the girl waves as the camera pans left", "i2v", "en", True,
         "The girl waves as the camera pans left. The motion is gentle and unhurried, small in amplitude, rising "
         "slowly and easing back smoothly. The background stays steady, with only slight, natural movement."),
    ],
)
def test_offline_enricher(prompt: str, task: str, lang: str, has_image: bool, expected: str) -> None:
    ext = make_extender("offline")
    result = ext.extend(prompt, task=task, lang=lang, has_image=has_image)
    assert result.ok and result.backend == "offline"
    assert result.prompt == expected
    assert ext.extend(prompt, task=task, lang=lang, has_image=has_image) == result  # deterministic


def test_offline_enricher_warns_that_it_cannot_translate() -> None:
    result = make_extender("offline").extend("밤에 도시를 걷는 고양이", task="t2v", lang="en")
    assert result.ok and result.reason == "untranslated" and "Korean" in result.warning
    assert result.prompt.startswith("Moonlight, soft lighting, night time, medium shot, center composition")
    assert "밤에 도시를 걷는 고양이." in result.prompt
    english = make_extender("offline").extend("a fox", lang="zh")
    assert english.reason == "untranslated" and "stays in English" in english.warning
    assert not re.search(r"[\u4e00-\u9fff]", english.prompt)
    same = make_extender("offline").extend("a fox", lang="en")
    assert same.warning is None


def test_offline_enricher_options() -> None:
    two = make_extender("offline", max_tags=2).extend("a fox in a field", lang="en")
    assert two.prompt == ("Daylight, day time. A fox in a field. The fox raises its head slowly and looks around, "
                          "breathing calmly. A light breeze stirs the leaves and grass. Camera pushes in.")
    none = make_extender("offline", max_tags=0).extend("a fox in a field", lang="en")
    assert none.prompt.startswith("A fox in a field. ")
    capped = make_extender("offline", max_chars=30).extend("a fox in a field", lang="en")
    assert capped.prompt == "Daylight, soft lighting, day" and capped.reason == "truncated"
    with pytest.raises(ValueError, match="max_tags must be 0 or more"):
        make_extender("offline", max_tags=-1)


# ------------------------------------------------------------------------------ make_extender
def test_make_extender_rejects_unknown_kinds_and_options() -> None:
    with pytest.raises(ValueError, match="kind must be one of 'offline', 'openai', 'local'; got 'dashscope'"):
        make_extender("dashscope")
    with pytest.raises(ValueError, match="unknown option\\(s\\) for the 'offline' extender: model; allowed: max_chars"):
        make_extender("offline", model="qwen")


def test_openai_configuration_from_the_environment() -> None:
    env = {"WAN_PROMPT_API_BASE": "http://10.0.0.5:8000/v1/", "WAN_PROMPT_API_KEY": "sk-wan", "WAN_PROMPT_MODEL": "qwen2.5"}
    ext = make_extender("openai", env=env)
    assert isinstance(ext, OpenAICompatibleExtender)
    assert ext.url == "http://10.0.0.5:8000/v1/chat/completions" and ext.model == "qwen2.5"
    assert "sk-wan" not in repr(ext) and "key=set" in repr(ext)
    # options override the environment
    over = make_extender("openai", env=env, base_url="http://h:1/v1/chat/completions", model="m", api_key="k2")
    assert over.url == "http://h:1/v1/chat/completions" and over.model == "m" and over._api_key == "k2"
    # the key decides the default endpoint
    dash = make_extender("openai", env={"DASHSCOPE_API_KEY": "d"})
    assert dash.url == DASHSCOPE_BASE_URL + "/chat/completions" and dash.model == "qwen-plus"
    oai = make_extender("openai", env={"OPENAI_API_KEY": "o", "WAN_PROMPT_MODEL": "gpt"})
    assert oai.url == OPENAI_BASE_URL + "/chat/completions" and oai._api_key == "o"
    local = make_extender("openai", env={"WAN_PROMPT_MODEL": "qwen2.5:7b-instruct"})
    assert local.url == OLLAMA_BASE_URL + "/chat/completions" and local._api_key is None


def test_openai_configuration_errors() -> None:
    with pytest.raises(ValueError, match="model is required for the openai extender"):
        make_extender("openai", env={})
    with pytest.raises(ValueError, match="base_url must be an http\\(s\\) URL"):
        make_extender("openai", env={}, base_url="ftp://x", model="m")
    with pytest.raises(ValueError, match="timeout must be positive"):
        make_extender("openai", env={}, model="m", timeout=0)


def test_local_configuration_is_lazy() -> None:
    ext = make_extender("local", model="qwen2.5_7B")
    assert isinstance(ext, LocalLLMExtender) and not ext.loaded
    assert ext.model_id == "Qwen/Qwen2.5-7B-Instruct"
    assert resolve_local_model("Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert resolve_local_model("/models/my-qwen") == "/models/my-qwen"
    with pytest.raises(ValueError, match="dtype must be one of auto, float32"):
        make_extender("local", dtype="int4")
