"""prompting: default negative prompts and example prompts (presets/*.json)."""

from __future__ import annotations

import pytest

import prompting
from prompting import PromptFields, build_prompt, parse_prompt

OFFICIAL_NEGATIVE_ZH = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


def test_negative_prompt_zh_is_the_official_text() -> None:
    assert prompting.negative_prompt() == OFFICIAL_NEGATIVE_ZH
    assert prompting.negative_prompt("zh") == OFFICIAL_NEGATIVE_ZH


def test_negative_prompt_en_renders_every_item() -> None:
    en = prompting.negative_prompt("en")
    items = en.split(", ")
    assert len(items) == len(OFFICIAL_NEGATIVE_ZH.split("，")) == 28
    assert items[0] == "garish colors" and items[-1] == "walking backwards"
    assert "JPEG compression artifacts" in items and "fused fingers" in items
    assert not any(ord(ch) > 127 for ch in en)


def test_stylized_negative_prompt_drops_the_artwork_items() -> None:
    zh = prompting.negative_prompt("zh", stylized=True).split("，")
    assert not {"风格", "作品", "画作", "画面"} & set(zh)
    assert len(zh) == 24 and "静止不动的画面" in zh  # a longer item that contains 画面 stays
    en = prompting.negative_prompt("en", stylized=True).split(", ")
    assert not {"style", "artwork", "painting", "picture"} & set(en) and len(en) == 24


def test_negative_prompt_rejects_other_languages() -> None:
    with pytest.raises(ValueError, match="lang must be one of 'en', 'zh'; got 'ko'"):
        prompting.negative_prompt("ko")


@pytest.mark.parametrize("task", prompting.TASKS)
def test_examples_are_consistent_with_the_builder(task: str) -> None:
    examples = prompting.example_prompts(task)
    assert len(examples) >= 5
    assert {e["lang"] for e in examples} == {"en", "zh"}
    for e in examples:
        assert {"title", "prompt", "lang", "mode", "image", "fields"} <= set(e)
        fields = PromptFields.from_dict(e["fields"])
        assert build_prompt(fields, mode=e["mode"], lang=e["lang"]) == e["prompt"], e["title"]
        # parsing the example refills the same vocabulary choices
        parsed = parse_prompt(e["prompt"], rest_field="motion" if e["mode"] == "i2v" else "subject")
        assert set(parsed.term_ids) == set(fields.term_ids)
        assert prompting.detect_language(e["prompt"]) == e["lang"]
        if task == "i2v-A14B":
            assert e["mode"] == "i2v" and e["image"] is True
        if task == "t2v-A14B":
            assert e["image"] is False


def test_examples_cover_every_formula_and_return_fresh_copies() -> None:
    modes = {e["mode"] for task in prompting.TASKS for e in prompting.example_prompts(task)}
    assert modes == set(prompting.MODES)
    first = prompting.example_prompts("t2v-A14B")
    first[0]["prompt"] = "changed"
    assert prompting.example_prompts("t2v")[0]["prompt"] != "changed"  # short task names work too


def test_example_prompts_rejects_unknown_tasks() -> None:
    with pytest.raises(ValueError, match="expected one of t2v-A14B, i2v-A14B, ti2v-5B"):
        prompting.example_prompts("s2v-14B")
