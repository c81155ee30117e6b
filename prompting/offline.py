"""The deterministic offline enricher: adds sensible vocabulary defaults, needs no model.

It follows the official extender's defaults: daytime unless the prompt says otherwise, a light source
that suits indoor or outdoor, a medium shot, a centered composition; no cinematic terms at all when a
visual style is requested (they clash with illustrated looks); image-to-video prompts get only a
camera instruction (a fixed camera) when they have none. Groups the prompt already mentions are left
alone, terms it names are rewritten in the output language and a style is moved to the front. It
cannot translate: free text stays in its language (with a warning when that differs from the target).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import replace

from .builder import build_prompt, parse_prompt
from .extension import DEFAULT_MAX_INPUT_CHARS, ExtensionResult, prepare_request, truncate_prompt
from .fields import PromptFields
from .language import LANGUAGE_NAMES, detect_language
from .vocabulary import CAMERA_GROUPS, Vocabulary, load_vocabulary, normalize_text

__all__ = ["OfflineExtender"]


def _cue_re(en: Iterable[str], other: Iterable[str]) -> re.Pattern[str]:
    words = "|".join(re.escape(w) for w in en)
    subs = "|".join(re.escape(w) for w in other)
    return re.compile(rf"(?<![\w-])(?:{words})(?![\w-])|{subs}", re.I)


_NIGHT = _cue_re(
    ["night", "nighttime", "midnight", "moonlit", "moon", "starry", "stars", "nocturnal"],
    ["夜", "晚上", "星空", "月光", "月亮", "밤", "야경", "한밤"],
)
_GOLDEN = _cue_re(
    ["sunset", "dusk", "evening", "twilight", "golden hour", "sundown"],
    ["日落", "黄昏", "傍晚", "夕阳", "노을", "석양", "해질"],
)
_MORNING = _cue_re(["sunrise", "dawn", "daybreak", "early morning"], ["日出", "黎明", "清晨", "拂晓", "일출", "새벽"])
_INDOOR = _cue_re(
    ["room", "rooms", "kitchen", "office", "bedroom", "indoors", "indoor", "inside", "studio", "cafe", "café",
     "restaurant", "library", "classroom", "hallway", "corridor", "apartment", "shop", "store", "museum",
     "attic", "garage", "living room", "bathroom", "warehouse", "subway car", "train carriage", "theater"],
    ["室内", "房间", "屋里", "屋内", "厨房", "办公室", "卧室", "客厅", "咖啡馆", "酒吧", "餐厅", "图书馆", "教室",
     "走廊", "商店", "博物馆", "阁楼", "车库", "실내", "부엌", "사무실", "카페", "교실", "도서관", "거실", "침실"],
)
_STYLE = _cue_re(
    ["anime", "cartoon", "illustration", "illustrated", "watercolor", "watercolour", "oil painting", "pixel",
     "claymation", "clay", "felt", "3d render", "cel-shaded", "cel shaded", "comic", "manga", "sketch",
     "line art", "style", "stylized", "painting", "drawing", "animation", "animated", "low poly", "voxel"],
    ["动漫", "二次元", "卡通", "插画", "水彩", "油画", "像素", "黏土", "粘土", "毛毡", "漫画", "素描", "风格", "画风",
     "动画", "애니", "만화", "일러스트", "수채화", "유화", "픽셀", "스타일", "카툰"],
)
_CAMERA = _cue_re(
    ["camera", "pan", "pans", "panning", "tilt", "tilts", "zoom", "zooms", "dolly", "tracking", "orbit", "orbits",
     "push in", "pushes in", "pull back", "pulls back", "crane", "fpv", "drone", "handheld", "follow shot"],
    ["镜头", "运镜", "机位", "推进", "拉远", "跟拍", "环绕", "摇镜", "카메라", "줌", "패닝"],
)


def _lenient_groups(vocab: Vocabulary, text: str) -> set[str]:
    """Groups any of whose spellings occur in ``text`` at all (single words included)."""
    norm = normalize_text(text)
    found = set()
    for term in vocab:
        for spelling in term.spellings:
            s = normalize_text(spelling)
            if re.search(r"[\u4e00-\u9fff]", s):
                hit = s in norm
            else:
                hit = re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", norm) is not None
            if hit:
                found.add(term.group)
                break
    return found


class OfflineExtender:
    """Deterministic enricher (no network, no model). ``max_tags`` caps the terms it adds."""

    name = "offline"

    def __init__(self, *, max_chars: int | None = None, max_tags: int = 4,
                 max_input_chars: int = DEFAULT_MAX_INPUT_CHARS) -> None:
        if max_tags < 0:
            raise ValueError(f"max_tags must be 0 or more; got {max_tags}")
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"max_chars must be at least 1; got {max_chars}")
        self.max_chars = max_chars
        self.max_tags = max_tags
        self.max_input_chars = max_input_chars

    def extend(self, prompt: str, *, task: str = "t2v", lang: str = "en", has_image: bool = False) -> ExtensionResult:
        request = prepare_request(prompt, task=task, lang=lang, has_image=has_image, max_chars=self.max_chars,
                                  max_input_chars=self.max_input_chars)
        start = time.monotonic()
        text = request.prompt
        if request.kind == "i2v":
            fields = self._i2v_fields(text)
            out = build_prompt(fields, mode="i2v", lang=lang)
        else:
            fields = self._t2v_fields(text)
            out = build_prompt(fields, mode="advanced", lang=lang)
        out = out or text
        capped = truncate_prompt(out, request.max_chars)
        warning = reason = None
        rest = fields.motion if request.kind == "i2v" else fields.subject
        source = detect_language(rest) if rest.strip() else "unknown"
        if source not in (lang, "unknown"):
            src_name = LANGUAGE_NAMES.get(source, LANGUAGE_NAMES["other"])[0]
            warning = (f"the offline enricher does not translate: the description stays in {src_name} and only the "
                       f"added terms are in {LANGUAGE_NAMES[lang][0]}; use an LLM backend to rewrite it")
            reason = "untranslated"
        elif len(capped) < len(out):
            warning, reason = f"the prompt was cut to {request.max_chars} characters", "truncated"
        return ExtensionResult(capped, True, self.name, warning, reason, None, time.monotonic() - start)

    def _i2v_fields(self, text: str) -> PromptFields:
        # The text is kept whole (it describes motion); only a camera instruction is added.
        fields = PromptFields(motion=text)
        if not _CAMERA.search(text) and not load_vocabulary().mentions(text) & _camera_terms():
            fields = replace(fields, fixed_camera=True)
        return fields

    def _t2v_fields(self, text: str) -> PromptFields:
        vocab = load_vocabulary()
        fields = parse_prompt(text)
        if fields.style is not None or _STYLE.search(text):
            return fields  # stylized: keep the style first and add no photographic terms
        present = set(fields.aesthetics) | _lenient_groups(vocab, text)
        night = "night_time" in fields.aesthetics.values() or _NIGHT.search(text) is not None
        golden = _GOLDEN.search(text) is not None
        morning = _MORNING.search(text) is not None
        indoor = _INDOOR.search(text) is not None

        additions: list[tuple[str, str]] = []
        if "time_of_day" not in present:  # the cue's term, else the official default (daytime)
            time_term = "night_time" if night else "sunset_time" if golden else "sunrise_time" if morning else "day_time"
            additions.append(("time_of_day", time_term))
        if "light_source" not in present:
            if indoor:
                additions.append(("light_source", "practical_lighting"))
            elif night:
                additions.append(("light_source", "moonlight"))
            else:
                additions.append(("light_source", "daylight"))
        if "shot_size" not in present:
            additions.append(("shot_size", "medium_shot"))
        if "composition" not in present:
            additions.append(("composition", "center_composition"))
        aesthetics = dict(fields.aesthetics)
        for group, term_id in additions[: self.max_tags]:
            aesthetics[group] = term_id
        return replace(fields, aesthetics=aesthetics)


def _camera_terms() -> set[str]:
    vocab = load_vocabulary()
    return {t.id for g in CAMERA_GROUPS for t in vocab.groups[g]}

