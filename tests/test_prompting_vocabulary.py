"""prompting: the vocabulary data (presets/vocabulary.json); import hygiene is in test_import.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import prompting
from prompting.vocabulary import PRESETS_DIR, Vocabulary, normalize_text

# Official zh terms per group (Alibaba prompt dictionary + the Wan 2.2 extender lists), checked
# against presets/vocabulary.json so a data edit cannot silently lose one.
OFFICIAL_ZH = {
    "light_source": ["日光", "人工光", "月光", "实用光", "火光", "荧光", "阴天光", "混合光", "晴天光"],
    "lighting": ["柔光", "硬光", "顶光", "侧光", "背光", "底光", "边缘光", "剪影", "低对比度", "高对比度"],
    "time_of_day": ["白天", "夜晚", "黄昏", "日落", "黎明", "日出"],
    "shot_size": ["特写", "近景", "中近景", "中景", "中全景", "全景", "极端全景", "广角"],
    "composition": ["中心构图", "平衡构图", "右侧重构图", "左侧重构图", "对称构图", "短边构图"],
    "lens": ["中焦距", "长焦", "望远", "超广角-鱼眼"],
    "camera_angle": ["过肩镜头角度拍摄", "高角度拍摄", "低角度拍摄", "倾斜角度拍摄", "航拍", "俯视角度拍摄", "平视"],
    "shot_type": ["干净的单人镜头", "双人镜头", "三人镜头", "群像镜头", "定场镜头"],
    "camera_movement": ["镜头推进", "镜头拉远", "镜头向右移动", "镜头向左移动", "镜头上摇", "镜头下摇", "固定镜头"],
    "camera_movement_advanced": ["手持镜头", "复合运镜", "跟随镜头", "环绕运镜"],
    "color_tone": ["暖色调", "冷色调", "高饱和度", "低饱和度", "混合色调"],
    "style": ["毛毡风格", "3D卡通", "像素风格", "木偶动画", "3D游戏", "黏土风格", "二次元", "水彩画", "黑白动画",
              "油画风格", "赛博朋克", "勾线插画", "废土风格"],
    "special_effect": ["移轴摄影", "延时拍摄"],
    "motion_type": ["街舞", "跑步", "滑滑板", "踢足球", "网球", "乒乓球", "滑雪", "篮球", "橄榄球", "顶碗舞", "侧手翻"],
    "emotion": ["愤怒", "恐惧", "高兴", "悲伤", "惊讶"],
}


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return prompting.load_vocabulary()


def test_groups_match_the_data_file_and_the_official_dictionary(vocab: Vocabulary) -> None:
    data = json.loads((PRESETS_DIR / "vocabulary.json").read_text(encoding="utf-8"))
    assert tuple(g["id"] for g in data["groups"]) == prompting.GROUPS
    assert set(OFFICIAL_ZH) == set(prompting.GROUPS)
    for group, zh_terms in OFFICIAL_ZH.items():
        labels = [t.zh for t in vocab.groups[group]]
        for zh in zh_terms:
            assert zh in labels, f"{group}: official term {zh} missing"
        assert all(t.group == group and t.en and t.zh for t in vocab.groups[group])
    # the official zh lens term 广角 is written 广角镜头, apart from the shot-size 广角, and still parses
    assert vocab.term("wide_angle_lens").zh == "广角镜头"
    assert vocab.lookup("广角").id == "wide_angle"
    assert sum(len(ts) for ts in vocab.groups.values()) == 103


def test_group_ids_do_not_collide_with_text_field_names() -> None:
    # forms keep text fields and one dropdown per group in one namespace; only "style" is shared on
    # purpose (PromptFields accepts aesthetics["style"] as the style)
    assert set(prompting.GROUPS) & {*prompting.TEXT_FIELDS, "aesthetics", "fixed_camera"} == set()
    assert prompting.STYLE_GROUP == "style" and "motion_type" in prompting.GROUPS


def test_preferred_english_terms_are_the_official_extender_ones(vocab: Vocabulary) -> None:
    assert vocab.term("edge_lighting").en == "Edge lighting"
    assert vocab.lookup("rim light").id == "edge_lighting"  # Alibaba's English spelling parses
    assert vocab.term("extreme_close_up_shot").zh == "特写"
    assert vocab.term("close_up_shot").zh == "近景"
    assert vocab.term("day_time").en == "Day time"
    assert vocab.term(prompting.FIXED_CAMERA).zh == "固定镜头"
    assert vocab.lookup("固定机位").id == prompting.FIXED_CAMERA


def test_term_ids_and_spellings_are_unique(vocab: Vocabulary) -> None:
    ids = [t.id for t in vocab]
    assert len(ids) == len(set(ids))
    seen: dict[str, str] = {}
    for t in vocab:
        for s in t.spellings:
            key = normalize_text(s)
            assert seen.setdefault(key, t.id) == t.id, f"{s!r} used by {seen[key]} and {t.id}"


def test_labels_and_choices(vocab: Vocabulary) -> None:
    assert vocab.group_label("shot_size", "en") == "Shot size"
    assert vocab.group_label("shot_size", "zh") == "景别"
    choices = vocab.choices("time_of_day", "zh")
    assert choices[0] == ("白天", "day_time")
    assert [tid for _, tid in choices] == [tid for _, tid in vocab.choices("time_of_day", "en")]
    assert vocab.term("medium_shot").label("zh") == "中景"
    assert "medium_shot" in vocab and "no_such_term" not in vocab
    # Korean display labels, keyed by id in presets/vocabulary.json like en / zh
    assert vocab.group_label("shot_size", "ko") == "샷 크기"
    assert vocab.term("medium_shot").label("ko") == vocab.label("medium_shot", "ko") == "미디엄 샷"
    assert vocab.choices("time_of_day", "ko")[0] == ("낮", "day_time")
    assert [tid for _, tid in vocab.choices("time_of_day", "ko")] == [tid for _, tid in choices]


def test_every_group_and_term_has_a_korean_label_that_is_display_only(vocab: Vocabulary) -> None:
    hangul = re.compile(r"[\uac00-\ud7a3]")
    for group in prompting.GROUPS:
        assert hangul.search(vocab.group_label(group, "ko")), group
    for term in vocab:
        assert hangul.search(term.ko), (term.id, term.ko)
        assert term.ko not in term.spellings  # never parsed as the term...
        assert vocab.lookup(term.ko) is None
    # ...and never written: prompts are built in the official languages only
    with pytest.raises(ValueError, match="'en', 'zh'"):
        prompting.build_prompt(prompting.PromptFields(subject="a cat"), mode="basic", lang="ko")


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda v: v.term("no_such_term"), "no_such_term"),
        (lambda v: v.group_label("lights", "en"), "light_source"),
        (lambda v: v.choices("shot_size", "fr"), "'en', 'ko', 'zh'"),
        (lambda v: v.group_label("shot_size", "ja"), "'en', 'ko', 'zh'"),
        (lambda v: v.term("medium_shot").label("fr"), "'en', 'ko', 'zh'"),
    ],
)
def test_lookup_errors_name_the_allowed_values(vocab: Vocabulary, call, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        call(vocab)


def test_embedded_matching_prefers_the_longest_distinctive_spelling(vocab: Vocabulary) -> None:
    found = vocab.find_embedded("An extreme close-up of her eyes while the camera pushes in, 极端全景")
    assert [m.term.id for m in found] == ["extreme_close_up_shot", "camera_pushes_in", "extreme_wide_shot"]
    # single words and two-character Chinese words are not read inside prose
    assert vocab.find_embedded("a happy dog runs by day, 白天的街道") == []
    # hyphen-joined words are whole words: "wide-angle lens" is not "wide-angle"
    assert [m.term.id for m in vocab.find_embedded("shot on a wide-angle lens")] == ["wide_angle_lens"]


def test_malformed_vocabulary_files_are_rejected(tmp_path: Path) -> None:
    data = json.loads((PRESETS_DIR / "vocabulary.json").read_text(encoding="utf-8"))
    dup = json.loads(json.dumps(data))
    dup["groups"][0]["terms"][1]["aliases_en"] = ["Moonlight"]  # a spelling of another term
    with pytest.raises(ValueError, match="used by both"):
        Vocabulary.from_json(dup)
    missing = json.loads(json.dumps(data))
    missing["groups"] = missing["groups"][:-1]
    with pytest.raises(ValueError, match="missing groups emotion"):
        Vocabulary.from_json(missing)
    bad_rule = json.loads(json.dumps(data))
    bad_rule["conflicts"].append({"keep": "day_time", "drop": ["sunshine"]})
    with pytest.raises(ValueError, match="unknown term 'sunshine'"):
        Vocabulary.from_json(bad_rule)
    no_ko = json.loads(json.dumps(data))
    del no_ko["groups"][0]["terms"][0]["ko"]
    with pytest.raises(ValueError, match="term 'daylight' has no 'ko' label"):
        Vocabulary.from_json(no_ko)
    no_ko_group = json.loads(json.dumps(data))
    no_ko_group["groups"][1]["ko"] = " "
    with pytest.raises(ValueError, match="group 'lighting' has no 'ko' label"):
        Vocabulary.from_json(no_ko_group)
    with pytest.raises(FileNotFoundError, match="vocabulary file not found"):
        prompting.load_vocabulary(tmp_path / "nope.json")
