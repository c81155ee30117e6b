"""prompting: PromptFields, the formula builder and the parser (examples + hypothesis properties)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prompting
from prompting import PromptFields, build_prompt, parse_prompt
from prompting.builder import MODE_GROUPS, MODE_TEXT_FIELDS

VOCAB = prompting.load_vocabulary()
AESTHETIC_GROUPS = [g for g in prompting.GROUPS if g != prompting.STYLE_GROUP]

# Free-text words that contain no vocabulary spelling (checked below), so the properties can tell
# the builder's terms from the user's text.
EN_WORDS = ["fox", "lantern", "river", "old", "sailor", "walks", "quietly", "across", "bridge", "red", "kite",
            "girl", "market", "crowded", "two", "dogs", "chase", "ball", "under", "tree", "paper", "boat"]
ZH_WORDS = ["小狐狸", "灯笼", "河边", "老水手", "慢慢走", "石桥", "红色", "风筝", "小女孩", "集市", "两只狗", "追逐", "纸船"]


def _text(words: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.just(""), st.lists(st.sampled_from(words), min_size=1, max_size=4).map(" ".join))


@st.composite
def prompt_fields(draw: st.DrawFn) -> PromptFields:
    words = draw(st.sampled_from([EN_WORDS, ZH_WORDS]))
    texts = {name: draw(_text(words)) for name in prompting.TEXT_FIELDS}
    groups = draw(st.lists(st.sampled_from(AESTHETIC_GROUPS), unique=True, max_size=len(AESTHETIC_GROUPS)))
    aesthetics = {g: draw(st.sampled_from([t.id for t in VOCAB.groups[g]])) for g in groups}
    style = draw(st.one_of(st.none(), st.sampled_from([t.id for t in VOCAB.groups["style"]])))
    return PromptFields(**texts, aesthetics=aesthetics, style=style, fixed_camera=draw(st.booleans()))


def _effective_terms(fields: PromptFields, mode: str) -> list[str]:
    """The term ids the builder must write: chosen, allowed in the mode, not lost to a conflict."""
    resolved, _ = prompting.resolve_conflicts(fields)
    ids = [t for g, t in resolved.aesthetics.items() if g in MODE_GROUPS[mode]]
    if resolved.style and prompting.STYLE_GROUP in MODE_GROUPS[mode]:
        ids.insert(0, resolved.style)
    if resolved.fixed_camera:
        ids.append(prompting.FIXED_CAMERA)
    return ids


def _has_mode_content(fields: PromptFields, mode: str) -> bool:
    return any(getattr(fields, n).strip() for n in MODE_TEXT_FIELDS[mode]) or bool(_effective_terms(fields, mode))


def _clauses(text: str) -> list[str]:
    return [c.strip().casefold() for c in re.split(r"[,，。]|\.(?=\s|$)", text) if c.strip()]


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_free_text_words_are_not_vocabulary() -> None:
    for w in EN_WORDS + ZH_WORDS:
        assert VOCAB.lookup(w) is None and not VOCAB.find_embedded(w), w


# ------------------------------------------------------------------------------ examples
FULL = PromptFields(
    subject="a young woman", subject_desc="wearing a red raincoat", scene="a narrow alley",
    scene_desc="neon signs reflected in puddles", motion="she walks toward the camera", motion_desc="slowly and steadily",
    aesthetics={"lighting": "soft_lighting", "time_of_day": "night_time", "shot_size": "medium_shot",
                "camera_movement": "camera_pushes_in", "color_tone": "warm_colors", "emotion": "happy"},
    style="cyberpunk",
)


def test_advanced_english_layout() -> None:
    assert build_prompt(FULL, mode="advanced", lang="en") == (
        "Cyberpunk, soft lighting, night time, medium shot, warm colors, happy. "
        "A young woman, wearing a red raincoat, a narrow alley, neon signs reflected in puddles. "
        "She walks toward the camera, slowly and steadily. Camera pushes in."
    )


def test_advanced_chinese_layout_uses_full_width_punctuation() -> None:
    f = PromptFields(subject="一只橘猫", subject_desc="戴着红围巾", scene="阁楼窗台", motion="伸爪拍雪花",
                     aesthetics={"shot_size": "close_up_shot", "time_of_day": "night_time",
                                 "camera_movement_advanced": "handheld_camera"}, style="watercolor_painting")
    assert build_prompt(f, mode="advanced", lang="zh") == "水彩画，夜晚，近景，一只橘猫，戴着红围巾，阁楼窗台，伸爪拍雪花。手持镜头。"


def test_basic_mode_is_one_sentence_of_subject_scene_motion() -> None:
    f = PromptFields(subject="two red pandas", scene="on a snowy branch", motion="wrestle playfully.",
                     subject_desc="ignored in basic", aesthetics={"shot_size": "wide_shot"}, style="cyberpunk")
    assert build_prompt(f, mode="basic", lang="en") == "Two red pandas, on a snowy branch, wrestle playfully."
    assert build_prompt(f, mode="basic", lang="zh") == "two red pandas，on a snowy branch，wrestle playfully。"
    assert build_prompt(PromptFields(aesthetics={"shot_size": "wide_shot"}), mode="basic") == ""
    assert build_prompt(PromptFields(subject="a cat", fixed_camera=True), mode="basic") == "A cat. Fixed camera."


def test_i2v_mode_writes_motion_and_camera_only() -> None:
    en = build_prompt(FULL, mode="i2v", lang="en")
    assert en == "Happy. She walks toward the camera, slowly and steadily. Camera pushes in."
    zh = build_prompt(FULL, mode="i2v", lang="zh")
    assert zh == "高兴，she walks toward the camera，slowly and steadily。镜头推进。"
    fixed = PromptFields(subject="ignored", motion="小狗摇着尾巴跑过来", fixed_camera=True)
    assert build_prompt(fixed, mode="i2v", lang="zh") == "小狗摇着尾巴跑过来。固定镜头。"


def test_style_goes_first() -> None:
    f = PromptFields(subject="a robot", aesthetics={"light_source": "daylight", "shot_size": "wide_shot"},
                     style="3d_cartoon_style")
    assert build_prompt(f, mode="advanced", lang="en").startswith("3D cartoon style, daylight, wide shot.")
    assert build_prompt(f, mode="advanced", lang="zh").startswith("3D卡通，日光，全景，")


def test_fixed_camera_beats_camera_moves_and_contradictions_are_resolved() -> None:
    f = PromptFields(subject="a cat", fixed_camera=True,
                     aesthetics={"camera_movement": "camera_pushes_in", "camera_movement_advanced": "tracking_shot",
                                 "time_of_day": "night_time", "light_source": "daylight"})
    conflicts = prompting.find_conflicts(f)
    assert {(c.kept, c.dropped) for c in conflicts} == {
        ("fixed_camera", "camera_pushes_in"), ("fixed_camera", "tracking_shot"), ("night_time", "daylight")}
    assert "left out" in conflicts[0].message("en") and "矛盾" in conflicts[0].message("zh")
    assert build_prompt(f, mode="advanced", lang="en") == "Night time. A cat. Fixed camera."
    bw = PromptFields(subject="a cat", style="black_and_white_animation", aesthetics={"color_tone": "warm_colors"})
    assert build_prompt(bw, mode="advanced", lang="zh") == "黑白动画，a cat。"


def test_terms_already_in_the_text_are_not_repeated() -> None:
    f = PromptFields(subject="a medium shot of a sailor", motion="the camera pushes in slowly",
                     aesthetics={"shot_size": "medium_shot", "camera_movement": "camera_pushes_in",
                                 "time_of_day": "dawn_time"})
    out = build_prompt(f, mode="advanced", lang="en")
    assert out == "Dawn time. A medium shot of a sailor. The camera pushes in slowly."
    # the same zh word for two terms is written once (shot size 广角 / lens written 广角镜头)
    g = PromptFields(subject="x", aesthetics={"shot_size": "wide_angle", "lens": "wide_angle_lens"})
    assert build_prompt(g, mode="advanced", lang="zh") == "广角，广角镜头，x。"
    dup = PromptFields(subject="a fox", subject_desc="A fox.", scene="a fox")
    assert build_prompt(dup, mode="advanced", lang="en") == "A fox."


def test_prompt_fields_normalisation_and_equality() -> None:
    a = PromptFields(subject="x", aesthetics={"shot_size": "wide_shot", "light_source": "", "camera_movement": "fixed_camera",
                                              "style": "pixel_style"})
    b = PromptFields(subject="x", aesthetics={"shot_size": "wide_shot"}, style="pixel_style", fixed_camera=True)
    assert a == b and hash(a) == hash(b)
    assert list(PromptFields(aesthetics={"emotion": "sad", "light_source": "firelight"}).aesthetics) == [
        "light_source", "emotion"]
    with pytest.raises(TypeError):
        a.aesthetics["shot_size"] = "medium_shot"  # type: ignore[index]
    assert PromptFields().is_empty() and not a.is_empty()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"aesthetics": {"lights": "daylight"}}, r"unknown group 'lights'; allowed: light_source, lighting"),
        ({"aesthetics": {"shot_size": "daylight"}}, r"aesthetics\['shot_size'\]: unknown term 'daylight'; allowed: extreme_close_up_shot"),
        ({"style": "medium_shot"}, r"style: unknown style 'medium_shot'; allowed: felt_style"),
        ({"style": "cyberpunk", "aesthetics": {"style": "pixel_style"}}, "disagree"),
        ({"subject": None}, r"PromptFields.subject must be a string"),
        ({"fixed_camera": "yes"}, r"fixed_camera must be a bool"),
        ({"aesthetics": ["shot_size"]}, r"aesthetics must be a mapping"),
    ],
)
def test_prompt_fields_validation(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        PromptFields(**kwargs)


def test_builder_argument_validation() -> None:
    with pytest.raises(ValueError, match="mode must be one of 'basic', 'advanced', 'i2v'; got 'pro'"):
        build_prompt(FULL, mode="pro")
    with pytest.raises(ValueError, match="lang must be one of 'en', 'zh'; got 'ko'"):
        build_prompt(FULL, lang="ko")
    with pytest.raises(ValueError, match="fields must be a PromptFields"):
        build_prompt({"subject": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rest_field must be one of subject"):
        parse_prompt("x", rest_field="title")


def test_to_dict_from_dict_is_json_safe() -> None:
    d = FULL.to_dict()
    assert PromptFields.from_dict(json.loads(json.dumps(d))) == FULL
    assert PromptFields.from_dict({"subject": None, "style": ""}) == PromptFields()
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'mode'; allowed: subject"):
        PromptFields.from_dict({**d, "mode": "advanced"})
    stale = {**d, "mode": "advanced", "aesthetics": {"shot_size": "gone_term", "nope": "x", "lighting": "hard_lighting"},
             "style": "retired_style", "subject": 3}
    lenient = PromptFields.from_dict(stale, strict=False)
    assert dict(lenient.aesthetics) == {"lighting": "hard_lighting"} and lenient.style is None and lenient.subject == "3"


def test_parse_reads_both_languages_and_official_spellings() -> None:
    f = parse_prompt("Rim light, cool tones, medium close-up, 黄昏, tilt-shift, clean single shot. A fox naps. 固定机位。")
    assert dict(f.aesthetics) == {"lighting": "edge_lighting", "time_of_day": "dusk_time",
                                  "shot_size": "medium_close_up_shot", "shot_type": "clean_single_shot",
                                  "color_tone": "cool_colors", "special_effect": "tilt_shift_photography"}
    assert f.fixed_camera and f.subject == "A fox naps"
    # one term per group: a second lighting term stays in the text
    g = parse_prompt("Rim light, low contrast, medium shot. A fox naps.")
    assert g.aesthetics["lighting"] == "edge_lighting" and g.subject == "low contrast. A fox naps"


def test_parse_keeps_prose_and_separators_tidy() -> None:
    f = parse_prompt("A cat, medium shot. It runs while the camera pushes in slowly, wide shot, Watercolor")
    assert f.subject == "A cat. It runs while the camera pushes in slowly, wide shot"  # 2nd shot size stays
    assert dict(f.aesthetics) == {"shot_size": "medium_shot", "camera_movement": "camera_pushes_in"}
    assert f.style == "watercolor_painting"
    assert parse_prompt("") == PromptFields()
    assert parse_prompt("Fixed camera.") == PromptFields(fixed_camera=True)
    assert parse_prompt("镜头推进，猫在跑", rest_field="motion") == PromptFields(
        motion="猫在跑", aesthetics={"camera_movement": "camera_pushes_in"})


def test_parse_then_build_normalises_a_hand_written_prompt() -> None:
    f = parse_prompt("a girl on a swing, 特写, rim light, sunset")
    assert build_prompt(f, mode="advanced", lang="en") == "Edge lighting, sunset time, extreme close-up shot. A girl on a swing."


# ------------------------------------------------------------------------------ properties
@PROPS
@given(fields=prompt_fields(), mode=st.sampled_from(prompting.MODES), lang=st.sampled_from(prompting.LANGS))
def test_property_output_is_nonempty_exactly_when_the_mode_has_content(fields: PromptFields, mode: str, lang: str) -> None:
    out = build_prompt(fields, mode=mode, lang=lang)
    assert bool(out) == _has_mode_content(fields, mode)
    assert out == out.strip() and "  " not in out
    if out:
        assert out.endswith("。" if lang == "zh" else ".")


@PROPS
@given(fields=prompt_fields(), mode=st.sampled_from(prompting.MODES), lang=st.sampled_from(prompting.LANGS))
def test_property_chosen_terms_appear_once_in_the_chosen_language(fields: PromptFields, mode: str, lang: str) -> None:
    out = build_prompt(fields, mode=mode, lang=lang)
    clauses = _clauses(out)
    other = "en" if lang == "zh" else "zh"
    expected = _effective_terms(fields, mode)
    for tid in expected:
        term = VOCAB.term(tid)
        assert clauses.count(term.label(lang).casefold()) == 1, (tid, out)
        if term.label(other).casefold() != term.label(lang).casefold():
            assert term.label(other).casefold() not in clauses, (tid, out)
    # nothing else from the vocabulary, and at most one term per group (no contradictions)
    written = [VOCAB.lookup(c) for c in clauses if VOCAB.lookup(c) is not None]
    assert sorted(t.id for t in written) == sorted(expected)
    groups = ["camera_movement" if t.id == prompting.FIXED_CAMERA else t.group for t in written]
    assert len(groups) == len(set(groups))
    assert not prompting.find_conflicts(prompting.resolve_conflicts(fields)[0])
    if expected and expected[0] == fields.style and mode == "advanced":
        assert out.casefold().startswith(VOCAB.label(fields.style, lang).casefold())


@PROPS
@given(fields=prompt_fields(), mode=st.sampled_from(prompting.MODES), lang=st.sampled_from(prompting.LANGS))
def test_property_parse_round_trip(fields: PromptFields, mode: str, lang: str) -> None:
    out = build_prompt(fields, mode=mode, lang=lang)
    parsed = parse_prompt(out, rest_field="motion" if mode == "i2v" else "subject")
    resolved, _ = prompting.resolve_conflicts(fields)
    expected_terms = set(_effective_terms(fields, mode))
    assert set(parsed.term_ids) == expected_terms
    assert parsed.fixed_camera == resolved.fixed_camera
    # the user's text is all in the rest field, and building again gives the same prompt
    rest = parsed.motion if mode == "i2v" else parsed.subject
    for name in MODE_TEXT_FIELDS[mode]:
        piece = " ".join(getattr(fields, name).split())
        assert piece.casefold() in rest.casefold()
    assert build_prompt(parsed, mode=mode, lang=lang) == out


@PROPS
@given(fields=prompt_fields())
def test_property_dict_round_trip(fields: PromptFields) -> None:
    assert PromptFields.from_dict(json.loads(json.dumps(fields.to_dict()))) == fields
