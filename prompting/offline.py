"""The deterministic offline enricher: turns a short idea into a prompt that follows the official formula.

No network, no model: keyword rules over the idea choose the official vocabulary terms and a few
fixed phrases, the same input always gives the same prompt.

* **Text-to-video** (advanced formula: subject + scene + motion + aesthetic control + stylization):
  the aesthetic terms first (light source, lighting, time of day, shot size, composition, lens, camera
  angle, colour tone; the official extender's defaults: daytime, a light source that suits indoor or
  outdoor, a medium shot, a centred composition), then the idea itself with a scene when it names
  none (chosen by what the subject is: a pet, a wild animal, a bird, a person, a vehicle, ...), a
  motion description (amplitude, speed and effect of the action, or a small plausible action when the
  idea has none), the motion of the background (leaves, snow, water, clouds...), and a camera move.
  A requested visual style comes first and gets no cinematic terms (they clash with illustrated looks).
  Groups the idea already mentions are left alone.
* **Image-to-video** (motion + camera movement: the image already fixes subject, scene and style):
  the idea, a motion description, a steady background, and a camera instruction (a fixed camera,
  or a tracking shot for a moving subject) when the idea has none. No scene, light or lens terms.

The output is written in **one language**: the idea's own, English or Chinese (Chinese output uses
the zh vocabulary and full-width punctuation). The enricher cannot translate, so an English idea asked
for in Chinese stays English (with a warning that says so); an idea in another language keeps its
text, and only the added wording is in the requested language (also with a warning).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .builder import build_prompt, parse_prompt
from .extension import DEFAULT_MAX_CHARS, DEFAULT_MAX_INPUT_CHARS, ExtensionResult, prepare_request, truncate_prompt
from .fields import PromptFields
from .language import LANGUAGE_NAMES, detect_language
from .vocabulary import CAMERA_GROUPS, FIXED_CAMERA, Vocabulary, load_vocabulary, normalize_text

__all__ = ["DEFAULT_MAX_TAGS", "OfflineExtender", "Plan", "plan"]

#: How many aesthetic terms the enricher adds at most (the camera move is not counted).
DEFAULT_MAX_TAGS = 8

_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


# ------------------------------------------------------------------------------------- cues
def _cue_re(en: Iterable[str], other: Iterable[str] = ()) -> re.Pattern[str]:
    words = "|".join(re.escape(w) for w in sorted(en, key=len, reverse=True))
    subs = "|".join(re.escape(w) for w in sorted(other, key=len, reverse=True))
    parts = [rf"(?<![\w-])(?:{words})(?![\w-])"] if words else []
    parts += [subs] if subs else []
    return re.compile("|".join(parts), re.I)


def _forms(*stems: str) -> list[str]:
    """English verb forms of each stem: wave -> wave, waves, waved, waving; run -> running..."""
    out: list[str] = []
    for w in stems:
        out += [w, w + "s", w + "es", w + "ed", w + "d", w + "ing"]
        if w.endswith("e"):
            out.append(w[:-1] + "ing")
        if w.endswith("y"):
            out += [w[:-1] + "ies", w[:-1] + "ied"]
        if len(w) <= 4 and w[-1] not in "aeiouwy" and w[-2] in "aeiou":
            out += [w + w[-1] + "ing", w + w[-1] + "ed"]
    return out


_NIGHT = _cue_re(
    ["night", "nighttime", "midnight", "moonlit", "moon", "starry", "stars", "nocturnal", "neon", "neon-lit"],
    ["夜", "晚上", "星空", "月光", "月亮", "霓虹", "밤", "야경", "한밤"],
)
_GOLDEN = _cue_re(
    ["sunset", "dusk", "evening", "twilight", "golden hour", "sundown"],
    ["日落", "黄昏", "傍晚", "夕阳", "노을", "석양", "해질"],
)
_MORNING = _cue_re(["sunrise", "dawn", "daybreak", "early morning"], ["日出", "黎明", "清晨", "拂晓", "일출", "새벽"])
_INDOOR = _cue_re(
    ["room", "rooms", "kitchen", "office", "bedroom", "indoors", "indoor", "inside", "studio", "cafe", "café",
     "restaurant", "library", "classroom", "hallway", "corridor", "apartment", "shop", "store", "museum",
     "attic", "garage", "living room", "bathroom", "warehouse", "subway car", "train carriage", "theater",
     "sofa", "couch", "bed", "desk", "windowsill", "fireplace"],
    ["室内", "房间", "屋里", "屋内", "厨房", "办公室", "卧室", "客厅", "咖啡馆", "酒吧", "餐厅", "图书馆", "教室",
     "走廊", "商店", "博物馆", "阁楼", "车库", "沙发", "床上", "书桌", "窗台", "壁炉",
     "실내", "부엌", "사무실", "카페", "교실", "도서관", "거실", "침실"],
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
_FIRE = _cue_re(["campfire", "bonfire", "candle", "candles", "candlelight", "fireplace", "torch", "fire"],
                ["篝火", "蜡烛", "烛光", "壁炉", "火把", "火堆"])
_NEON = _cue_re(["neon", "neon-lit", "cyberpunk", "city lights"], ["霓虹", "赛博"])
_OVERCAST = _cue_re(["rain", "rainy", "raining", "overcast", "cloudy", "fog", "foggy", "mist", "misty", "storm"],
                    ["雨", "阴天", "多云", "雾", "暴风"])
_COLD = _cue_re(["snow", "snowy", "winter", "ice", "icy", "frozen", "frost", "glacier", "blizzard", "rain", "rainy"],
                ["雪", "冬", "冰", "霜", "冰川", "雨"])
_SNOW = _cue_re(["snow", "snowy", "snowing", "snowflakes", "blizzard", "winter"], ["雪"])
_RAIN = _cue_re(["rain", "rainy", "raining", "drizzle", "storm"], ["雨"])
_WATER = _cue_re(["sea", "ocean", "lake", "river", "pond", "stream", "beach", "shore", "ocean waves", "water", "coast",
                  "waterfall", "pool", "harbor", "harbour"],
                 ["海", "湖", "河", "池塘", "溪", "沙滩", "岸边", "水面", "瀑布", "泳池", "港"])
_PLANTS = _cue_re(["forest", "woods", "tree", "trees", "grass", "meadow", "field", "fields", "garden", "park",
                   "jungle", "leaves", "bamboo", "flowers", "orchard", "prairie"],
                  ["森林", "树", "草", "花园", "公园", "丛林", "竹", "田野", "原野", "果园", "叶"])
_CITY = _cue_re(["city", "street", "streets", "town", "downtown", "alley", "road", "avenue", "square", "market"],
                ["城市", "街", "小镇", "巷", "马路", "广场", "集市"])
_SKY = _cue_re(["sky", "skies", "clouds", "cloud", "horizon", "mountain", "mountains", "valley", "canyon"],
               ["天空", "云", "地平线", "山", "峡谷"])
_VISTA = _cue_re(["mountain", "mountains", "valley", "canyon", "coastline", "skyline", "glacier", "volcano"],
                 ["山脉", "雪山", "山谷", "峡谷", "海岸线", "天际线", "冰川", "火山"])

# An English scene: a place preposition followed by a noun phrase.
_SCENE_PREP = re.compile(
    r"(?<![\w-])(?:in|on|at|under|through|across|along|over|inside|beside|near|by|into|onto|above|among|around|"
    r"beneath|within|against|underneath|amid|atop|behind|outside|from)\s+(?:the|a|an|its|his|her|their|some|"
    r"this|that|my|our)?\s*[a-z]", re.I)
_SCENE_ZH = re.compile(r"在|于|[里中上下旁边前后内外]$|房间|厨房|客厅|森林|雪地|草地|公园|花园|沙滩|海边|街|路|山|湖|河|海|"
                       r"天空|城市|屋顶|窗台|桌|床|田|原|室")

# Actions, by how they move (official motion wording: amplitude, speed, effect).
_MOTIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("dance", _cue_re(_forms("dance", "spin", "twirl", "pirouette", "waltz", "sway") + ["twirls", "spinning"],
                      ["跳舞", "舞", "旋转", "摇摆", "转圈"])),
    ("fast", _cue_re(_forms("run", "sprint", "gallop", "chase", "jump", "leap", "race", "fly", "dive", "dash",
                            "charge", "pounce", "surf", "skate", "ski", "skateboard", "drive", "ride", "rush",
                            "bounce", "hop", "kick", "fight", "attack")
                     + ["flew", "ran", "rode", "drove", "leapt", "dove"],
                     ["奔跑", "跑", "冲", "追", "跳", "飞", "疾驰", "飞驰", "滑雪", "冲浪", "滑板", "踢", "打斗", "扑",
                      "驾驶", "骑", "玩"])),
    ("walk", _cue_re(_forms("walk", "stroll", "wander", "march", "trot", "climb", "crawl", "stride", "step",
                            "hike", "roam", "pace", "limp", "tiptoe"),
                     ["走", "散步", "漫步", "行走", "爬", "攀", "踱步", "徘徊"])),
    ("glide", _cue_re(_forms("swim", "float", "drift", "glide", "soar", "hover", "flow", "sail", "fall", "rise",
                             "fall", "flutter", "ripple", "melt", "bloom", "grow", "unfold")
                      + ["swam", "fell", "rose", "grew"],
                      ["游动", "游泳", "游向", "漂", "飘", "滑翔", "翱翔", "盘旋", "流淌", "流动", "航行", "落下", "飘落", "坠落", "升起",
                       "融化", "绽放", "生长", "展开"])),
    ("rest", _cue_re(_forms("sleep", "nap", "doze", "rest", "sit", "lie", "lay", "relax", "curl up", "snooze",
                            "lounge", "bask", "perch", "kneel")
                     + ["slept", "sat", "lying", "lies"],
                     ["睡", "打盹", "休息", "躺", "坐", "趴", "蜷缩", "栖息", "跪"])),
    ("gesture", _cue_re(_forms("wave", "nod", "bow", "clap", "point", "reach", "raise", "lift", "blink", "smile",
                               "laugh", "wink", "turn", "look", "stretch", "yawn", "shake", "tilt", "paw", "touch",
                               "hold", "hug", "kiss", "sip", "drink", "eat", "chew", "lick", "sniff", "gaze", "stare",
                               "watch", "sing", "talk", "speak", "whisper", "cry", "frown", "shrug", "glance")
                        + ["held", "ate", "drank", "sang", "spoke"],
                        ["挥", "点头", "鞠躬", "鼓掌", "拍手", "指", "伸手", "抬", "举", "眨眼", "微笑", "笑", "转头",
                         "回头", "看", "望", "伸懒腰", "打哈欠", "摇头", "摸", "抱", "喝", "吃", "舔", "嗅", "凝视",
                         "唱", "说", "哭", "耸肩"])),
    ("work", _cue_re(_forms("cook", "chop", "cut", "stir", "pour", "type", "write", "paint", "draw", "knit", "sew",
                            "build", "repair", "fix", "play the", "strum", "pluck", "brush", "wash", "fold", "read",
                            "craft", "carve", "knead", "bake"),
                     ["做饭", "切", "搅拌", "倒", "打字", "写", "画", "编织", "缝", "修", "弹", "拉", "洗", "叠", "读",
                      "雕刻", "揉", "烤", "煮", "炒"])),
)
_ING = re.compile(r"(?<![\w-])[a-z]{3,}ing(?![\w-])", re.I)
_NOT_VERBS = frozenset("""thing something nothing anything everything morning evening ceiling building king ring
    wing spring string clothing lighting wedding pudding darling sibling duckling ending setting railing
    during icing awning dumpling sapling seedling earring viking lightning ceiling painting evening sling
    living dining""".split())
_ZH_VERB = re.compile(r"[走跑跳飞游舞挥摇转看吃喝坐站躺笑哭唱弹拉推飘吹爬追抱握拿举抬眨望盯奔冲滑划骑驾踢扔接"
                      r"拍摸闻舔咬叫喊说读写画煮炒洗晃动升降闪烁]")


# ------------------------------------------------------------------------------- subjects
@dataclass(frozen=True)
class _Kind:
    """A kind of subject: its keywords, and the phrases the enricher writes for it (en, zh)."""

    id: str
    en: tuple[str, ...]
    zh: tuple[str, ...]


_KINDS: tuple[_Kind, ...] = (
    _Kind("pet", ("cat", "cats", "kitten", "kittens", "kitty", "dog", "dogs", "puppy", "puppies", "rabbit", "bunny",
                  "hamster", "guinea pig", "corgi", "golden retriever", "husky", "shiba"),
          ("猫咪", "小猫", "猫", "小狗", "狗", "兔子", "小兔", "仓鼠", "柯基")),
    _Kind("bird", ("bird", "birds", "owl", "eagle", "hawk", "swan", "duck", "ducks", "crow", "sparrow", "parrot",
                   "butterfly", "butterflies", "bee", "dragonfly", "hummingbird", "pigeon", "seagull", "crane"),
          ("小鸟", "鸟", "猫头鹰", "老鹰", "鹰", "天鹅", "鸭子", "乌鸦", "麻雀", "鹦鹉", "蝴蝶", "蜜蜂", "蜻蜓", "鸽子",
           "海鸥", "仙鹤")),
    _Kind("fish", ("fish", "goldfish", "koi", "whale", "whales", "dolphin", "dolphins", "shark", "turtle",
                   "jellyfish", "octopus", "seal"),
          ("金鱼", "锦鲤", "鲸鱼", "鲸", "海豚", "鲨鱼", "海龟", "水母", "章鱼", "鱼")),
    _Kind("animal", ("fox", "foxes", "deer", "wolf", "wolves", "bear", "bears", "lion", "tiger", "horse", "horses",
                     "elephant", "giraffe", "zebra", "panda", "monkey", "squirrel", "leopard", "cheetah", "cow",
                     "sheep", "goat", "camel", "kangaroo", "dragon", "unicorn", "dinosaur", "animal"),
          ("狐狸", "鹿", "狼", "熊猫", "熊", "狮子", "老虎", "骏马", "马", "大象", "长颈鹿", "斑马", "猴子", "松鼠", "豹",
           "牛", "羊", "骆驼", "袋鼠", "龙", "独角兽", "恐龙", "动物")),
    _Kind("person", ("man", "men", "woman", "women", "girl", "girls", "boy", "boys", "child", "children", "kid",
                     "kids", "baby", "person", "people", "lady", "guy", "chef", "dancer", "astronaut", "soldier",
                     "knight", "samurai", "warrior", "farmer", "fisherman", "grandmother", "grandfather", "grandma",
                     "grandpa", "student", "teacher", "musician", "singer", "athlete", "runner", "skater", "surfer",
                     "couple", "family", "bride", "groom", "princess", "prince", "wizard", "witch", "detective",
                     "doctor", "nurse", "cowboy", "monk", "ninja", "robot", "old man", "old woman", "pianist",
                     "guitarist", "skier", "cyclist", "hiker", "climber", "worker", "boxer"),
          ("小女孩", "小男孩", "女孩", "男孩", "孩子", "小孩", "婴儿", "少女", "少年", "姑娘", "女人", "男人", "女子",
           "男子", "老人", "老奶奶", "老爷爷", "奶奶", "爷爷", "宇航员", "厨师", "舞者", "士兵", "骑士", "武士", "渔夫",
           "农民", "学生", "老师", "歌手", "运动员", "新娘", "公主", "王子", "巫师", "侦探", "医生", "牛仔", "和尚",
           "忍者", "机器人", "情侣", "一家人", "钢琴家", "滑雪者", "人")),
    _Kind("vehicle", ("car", "cars", "sports car", "truck", "bus", "train", "tram", "taxi", "bicycle", "bike",
                      "motorcycle", "jeep", "van", "tractor"),
          ("跑车", "汽车", "卡车", "公交车", "火车", "列车", "电车", "出租车", "自行车", "摩托车", "吉普车", "拖拉机", "车")),
    _Kind("boat", ("boat", "boats", "ship", "sailboat", "yacht", "canoe", "kayak", "ferry", "raft"),
          ("帆船", "小船", "轮船", "游艇", "独木舟", "渡船", "木筏", "船")),
    _Kind("aircraft", ("plane", "airplane", "jet", "helicopter", "hot air balloon", "balloon", "rocket", "spaceship",
                       "drone", "kite", "glider"),
          ("飞机", "直升机", "热气球", "气球", "火箭", "飞船", "风筝")),
    _Kind("plant", ("flower", "flowers", "rose", "roses", "tulip", "sunflower", "tree", "trees", "leaf", "leaves",
                    "grass", "dandelion", "cherry blossoms", "lotus", "bamboo", "plant"),
          ("向日葵", "郁金香", "玫瑰", "樱花", "荷花", "蒲公英", "竹子", "花朵", "鲜花", "花", "树", "叶子", "树叶", "小草",
           "草")),
    _Kind("landscape", ("mountain", "mountains", "valley", "waterfall", "ocean", "sea", "lake", "river", "forest",
                        "canyon", "desert", "beach", "coast", "coastline", "meadow", "field", "skyline", "city",
                        "landscape", "glacier", "volcano", "island", "sky", "clouds", "aurora", "galaxy", "street",
                        "village", "town", "castle", "temple", "bridge", "lighthouse"),
          ("雪山", "山谷", "瀑布", "大海", "海洋", "湖泊", "湖", "河流", "河", "森林", "峡谷", "沙漠", "海滩", "海岸", "草原",
           "田野", "城市", "天际线", "风景", "冰川", "火山", "岛", "天空", "云海", "极光", "星河", "街道", "村庄", "小镇",
           "城堡", "寺庙", "桥", "灯塔", "山", "海")),
    _Kind("object", ("cup", "mug", "teapot", "vase", "candle", "book", "watch", "bottle", "lamp", "clock", "bowl",
                     "apple", "cake", "coffee", "perfume", "chair", "guitar", "piano", "feather", "ring", "necklace",
                     "sneaker", "shoe", "bag", "phone", "toy", "glass", "sculpture", "statue", "gem", "crystal"),
          ("杯子", "咖啡", "茶壶", "茶杯", "花瓶", "蜡烛", "书", "手表", "瓶子", "台灯", "时钟", "碗", "苹果", "蛋糕",
           "香水", "椅子", "吉他", "钢琴", "羽毛", "戒指", "项链", "球鞋", "鞋", "包", "手机", "玩具", "玻璃杯", "雕塑",
           "雕像", "宝石", "水晶")),
)
_KIND_RES = {k.id: (_cue_re(k.en, k.zh)) for k in _KINDS}


def _find_kind(text: str) -> tuple[str, str]:
    """(kind id, the keyword as written) of the first subject keyword in the text, else ("", "")."""
    best: tuple[int, int, str, str] | None = None
    for order, kind in enumerate(_KINDS):
        m = _KIND_RES[kind.id].search(text)
        if m is None:
            continue
        # the earliest mention wins (the subject comes first); landscapes lose to any living subject
        key = (m.start() + (10_000 if kind.id == "landscape" else 0), order)
        if best is None or key < best[:2]:
            best = (*key, kind.id, m.group())
    return (best[2], best[3]) if best else ("", "")


# ------------------------------------------------------------------------------ phrases
# Scenes for an idea that names none, per subject kind and light ("day", "golden", "night").
_SCENES: Mapping[str, Mapping[str, tuple[str, str, str]]] = {  # kind -> light -> (en, zh, environment)
    "pet": {"day": ("in a cozy living room, soft daylight falling through a window", "背景是温馨的客厅，柔和的阳光从窗户洒进来", "indoor"),
            "golden": ("in a cozy living room, warm evening light falling through a window", "背景是温馨的客厅，傍晚温暖的光线从窗户洒进来", "indoor"),
            "night": ("in a cozy living room lit by a warm lamp", "背景是温馨的客厅，暖黄的台灯照亮四周", "indoor")},
    "bird": {"day": ("among green branches under an azure blue sky", "背景是青翠的枝叶和湛蓝色的天空", "plants"),
             "golden": ("among branches against a glowing sunset sky", "背景是枝叶和被晚霞染红的天空", "plants"),
             "night": ("among dark branches under the night sky", "背景是夜色中的枝叶", "plants")},
    "fish": {"day": ("in clear blue water, sunlight rippling through it", "背景是清澈的蓝色海水，阳光在水中荡漾", "water"),
             "golden": ("in clear water lit by warm evening light", "背景是被傍晚暖光照亮的清澈水面", "water"),
             "night": ("in dark, clear water", "背景是幽暗清澈的水中", "water")},
    "animal": {"day": ("in a natural meadow, trees softly blurred behind", "背景是自然的草地，远处的树林柔和虚化", "plants"),
               "golden": ("in a natural meadow glowing in the evening light", "背景是沐浴在傍晚光线中的草地", "plants"),
               "night": ("in a quiet meadow under the moon", "背景是月光下静谧的草地", "plants")},
    "person": {"day": ("in a quiet, uncluttered setting, the background softly blurred", "背景是安静整洁的环境，柔和虚化", "neutral"),
               "golden": ("in a quiet setting bathed in warm evening light", "背景是沐浴在傍晚暖光中的安静环境", "neutral"),
               "night": ("in a quiet setting lit by soft lamplight", "背景是柔和灯光照亮的安静环境", "neutral")},
    "vehicle": {"day": ("on an open road stretching into the distance", "背景是延伸向远方的开阔道路", "road"),
                "golden": ("on an open road stretching toward the setting sun", "背景是延伸向落日的开阔道路", "road"),
                "night": ("on an open road lit by streetlights", "背景是路灯照亮的开阔道路", "road")},
    "boat": {"day": ("on calm, open water", "背景是平静开阔的水面", "water"),
             "golden": ("on calm water reflecting the sunset", "背景是倒映着晚霞的平静水面", "water"),
             "night": ("on calm water under the night sky", "背景是夜空下平静的水面", "water")},
    "aircraft": {"day": ("high in an azure blue sky", "背景是湛蓝色的天空", "sky"),
                 "golden": ("high in a sky glowing with sunset colors", "背景是被晚霞染红的天空", "sky"),
                 "night": ("high in the night sky", "背景是夜空", "sky")},
    "plant": {"day": ("in a sunlit garden", "背景是阳光明媚的花园", "plants"),
              "golden": ("in a garden glowing in the evening light", "背景是沐浴在傍晚光线中的花园", "plants"),
              "night": ("in a quiet garden under the moon", "背景是月光下静谧的花园", "plants")},
    "object": {"day": ("on a clean, simple surface, the background softly blurred", "放在简洁干净的台面上，背景柔和虚化", "neutral"),
               "golden": ("on a clean surface in warm evening light", "放在傍晚暖光中的简洁台面上", "neutral"),
               "night": ("on a clean surface lit by a warm lamp", "放在暖色台灯照亮的简洁台面上", "neutral")},
}
_SCENE_DEFAULT = {"day": ("against a softly blurred background", "背景柔和虚化", "neutral"),
                  "golden": ("in warm evening light, the background softly blurred", "沐浴在傍晚的暖光中，背景柔和虚化", "neutral"),
                  "night": ("in the quiet of the night, the background softly blurred", "身处静谧的夜色中，背景柔和虚化", "neutral")}

# Motion descriptions: the official wording of amplitude, speed and effect.
_MOTION_TEXT: Mapping[str, tuple[str, str]] = {
    "gesture": ("The motion is gentle and unhurried, small in amplitude, rising slowly and easing back smoothly.",
                "动作轻柔舒缓，幅度较小，缓慢抬起后又平稳地回落，自然流畅。"),
    "fast": ("The motion is quick and powerful, large in amplitude, carried by natural momentum.",
             "动作迅速有力，幅度较大，带着自然的冲劲。"),
    "walk": ("The movement is slow and steady, each step calm, smooth and natural.",
             "动作缓慢而平稳，每一步都从容自然。"),
    "glide": ("The movement is slow and smooth, calm and flowing.", "动作缓慢平稳，舒展流畅。"),
    "dance": ("The movement is fluid and rhythmic, with wide, graceful turns at a lively pace.",
              "动作流畅而富有节奏，旋转舒展优雅，节奏轻快。"),
    "rest": ("The movement is minimal and calm: slow, even breathing with only slight shifts.",
             "动作细微平静，呼吸缓慢而均匀，只有轻微的起伏。"),
    "travel": ("The movement is smooth and steady, at an even speed.", "行驶平稳，速度均匀。"),
    "work": ("Each motion is steady and precise, at a natural, even pace.", "每个动作都平稳而细致，节奏自然均匀。"),
    "other": ("The movement is smooth and natural, at a steady, moderate pace.", "动作自然流畅，速度适中。"),
}
# A small plausible action for an idea without one (en: "{s}" is the subject keyword; plural-aware).
_IDLE: Mapping[str, tuple[str, str, str, str]] = {  # kind -> (en singular, en plural, zh, motion class)
    "pet": ("The {s} looks around slowly, ears twitching slightly, then settles down.",
            "The {s} look around slowly, ears twitching slightly, then settle down.", "{s}缓缓环顾四周，耳朵轻轻抖动，随后安静下来。", "gesture"),
    "bird": ("The {s} flutters its wings gently and turns its head slowly.",
             "The {s} flutter their wings gently and turn their heads slowly.", "{s}轻轻扇动翅膀，缓缓转过头。", "gesture"),
    "fish": ("The {s} glides slowly through the water, its fins rippling gently.",
             "The {s} glide slowly through the water, their fins rippling gently.", "{s}在水中缓缓游动，鳍轻轻摆动。", "glide"),
    "animal": ("The {s} raises its head slowly and looks around, breathing calmly.",
               "The {s} raise their heads slowly and look around, breathing calmly.", "{s}缓缓抬起头，环顾四周，呼吸平稳。", "gesture"),
    "person": ("The {s} turns slightly and looks ahead, breathing calmly, with small, natural movements.",
               "The {s} turn slightly and look ahead, breathing calmly, with small, natural movements.",
               "{s}微微转身，目视前方，呼吸平稳，动作细微自然。", "gesture"),
    "vehicle": ("The {s} moves steadily forward.", "The {s} move steadily forward.", "{s}平稳地向前行驶。", "walk"),
    "boat": ("The {s} drifts slowly forward, rocking gently on the water.",
             "The {s} drift slowly forward, rocking gently on the water.", "{s}缓缓向前漂行，在水面上轻轻摇晃。", "glide"),
    "aircraft": ("The {s} glides slowly across the sky.", "The {s} glide slowly across the sky.", "{s}在空中缓缓滑行。", "glide"),
    "plant": ("The {s} sways gently in a light breeze.", "The {s} sway gently in a light breeze.", "{s}在微风中轻轻摇曳。", "glide"),
    "object": ("The {s} turns slowly as light glides across its surface.",
               "The {s} turn slowly as light glides across their surfaces.", "{s}缓缓转动，光线在表面流转。", "glide"),
}
_IDLE_NONE = ("Everything in the frame moves slowly and subtly, with small, natural movements.",
              "画面中的元素缓慢而细微地运动，自然真实。")
# Motion of the background, per environment and light.
_BACKGROUND: Mapping[str, tuple[tuple[str, str], tuple[str, str]]] = {  # env -> ((en, zh) day, (en, zh) night)
    "snow": (("Snowflakes drift down slowly in the background.", "背景中雪花缓缓飘落。"),
             ("Snowflakes drift down slowly through the dark.", "雪花在夜色中缓缓飘落。")),
    "rain": (("Raindrops fall steadily, rippling the puddles.", "雨滴不断落下，在水洼中激起涟漪。"),
             ("Raindrops fall steadily, glinting in the light.", "雨滴不断落下，在灯光中闪闪发亮。")),
    "water": (("The water ripples and sparkles gently.", "水面泛起细微的波光。"),
              ("The water ripples softly in the dark.", "水面在夜色中轻轻荡漾。")),
    "city": (("Light and shadow shift slowly across the street.", "光影在街道上缓缓移动。"),
             ("Lights flicker softly in the distance.", "远处的灯光轻轻闪烁。")),
    "plants": (("A light breeze stirs the leaves and grass.", "微风轻轻吹动树叶和青草。"),
               ("A light breeze stirs the leaves in the dark.", "夜风轻轻吹动树叶。")),
    "indoor": (("Dust motes drift slowly in the light.", "微尘在光线中缓缓飘动。"),
               ("The warm lamplight flickers faintly.", "温暖的灯光微微摇曳。")),
    "sky": (("Clouds drift slowly across the sky.", "云朵在天空中缓缓飘动。"),
            ("Stars twinkle faintly in the sky.", "星星在夜空中微微闪烁。")),
    "road": (("The roadside scenery streams past.", "路边的景物向后掠过。"),
             ("The streetlights stream past one after another.", "路灯一盏盏向后掠过。")),
}
_STEADY = ("The background stays steady, with only slight, natural movement.", "背景保持稳定，只有轻微自然的晃动。")


# ------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Plan:
    """What the enricher decided for one idea (for tests and the UI; ``prompt`` is the result)."""

    prompt: str
    lang: str                 # the language the prompt is written in
    kind: str                 # "t2v" or "i2v"
    subject_kind: str         # "pet", "person", ..., or "" when unknown
    motion: str               # "gesture", "fast", ..., "idle" (the enricher added an action), "other"
    terms: tuple[str, ...]    # the vocabulary term ids written (aesthetics, style, camera)
    scene_added: bool


def _bare(text: str, keyword: str) -> bool:
    """Whether ``text`` is only ``keyword`` with an article or a count word ("the cat", "一只猫")."""
    rest = re.sub(r"(?i)^(?:the|a|an|one|two|three|some|my)\s+|^[一两三几]?[只个条头匹位架辆艘朵棵件杯]?", "",
                  text.strip(" .,，。"))
    return normalize_text(rest) == normalize_text(keyword)


def _light(text: str, aesthetics: Mapping[str, str]) -> str:
    tod = aesthetics.get("time_of_day")
    if tod == "night_time" or (tod is None and _NIGHT.search(text)):
        return "night"
    if tod in ("sunset_time", "dusk_time") or (tod is None and _GOLDEN.search(text)):
        return "golden"
    return "day"


def _mask(text: str) -> str:
    """``text`` without the words that look like actions but are not (飞机, 日落, "ski resort"...)."""
    vocab = load_vocabulary()
    for m in reversed(vocab.find_embedded(text)):
        text = text[:m.start] + " " + text[m.end:]
    for pattern in (*_KIND_RES.values(), _CAMERA, _NIGHT, _GOLDEN, _MORNING, _STYLE):
        text = pattern.sub(" ", text)
    return text


def _motion_class(text: str, lang: str) -> str:
    text = _mask(text)
    for name, pattern in _MOTIONS:
        if pattern.search(text):
            return name
    if lang == "zh":
        return "other" if _ZH_VERB.search(text) else "none"
    if lang != "en":
        return "other"  # another language: assume the idea says what happens
    words = re.findall(r"[A-Za-z']+", text)
    if any(w.lower() not in _NOT_VERBS for w in _ING.findall(text)):
        return "other"
    # "the chef chops onions": a word ending in -s right after a determiner + noun is likely a verb
    for i, w in enumerate(words[2:], start=2):
        if (w.lower().endswith("s") and not w.lower().endswith("ss") and w.lower() not in ("its", "his", "this", "is")
                and words[i - 2].lower() in ("the", "a", "an", "this", "that", "my", "his", "her", "our", "their")):
            return "other"
    if re.search(r"(?<![\w-])(?:is|are|was|were|has|have|does|do|gets|get|goes|go|makes|make)(?![\w-])", text, re.I):
        return "other"
    return "none"


def _has_scene(text: str, lang: str, subject_kind: str) -> bool:
    if subject_kind == "landscape" or _INDOOR.search(text) or _WATER.search(text) or _CITY.search(text):
        return True
    if lang == "zh":
        return _SCENE_ZH.search(text) is not None
    return _SCENE_PREP.search(text) is not None or _PLANTS.search(text) is not None or _SKY.search(text) is not None


def _environment(text: str, default: str) -> str:
    for env, pattern in (("snow", _SNOW), ("rain", _RAIN), ("indoor", _INDOOR), ("water", _WATER), ("city", _CITY),
                         ("plants", _PLANTS), ("sky", _SKY)):
        if pattern.search(text):
            return env
    return default


def _lenient_groups(vocab: Vocabulary, text: str) -> set[str]:
    """Groups any of whose spellings occur in ``text`` at all (single words included)."""
    norm = normalize_text(text)
    found = set()
    for term in vocab:
        for spelling in term.spellings:
            s = normalize_text(spelling)
            if _CJK_RE.search(s):
                hit = s in norm
            else:
                hit = re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", norm) is not None
            if hit:
                found.add(term.group)
                break
    return found


def _camera_mentioned(text: str) -> bool:
    vocab = load_vocabulary()
    camera_ids = {t.id for g in CAMERA_GROUPS for t in vocab.groups[g]}
    return _CAMERA.search(text) is not None or bool(vocab.mentions(text) & camera_ids)


def _aesthetics(text: str, light: str, subject_kind: str, motion: str, env: str, indoor: bool,
                camera_given: bool) -> list[tuple[str, str]]:
    """The aesthetic terms for an idea, most important first (the official defaults come first)."""
    landscape = subject_kind == "landscape"
    night, golden = light == "night", light == "golden"
    morning = _MORNING.search(text) is not None
    out: list[tuple[str, str]] = []
    out.append(("time_of_day", "night_time" if night else "sunset_time" if golden else
                "sunrise_time" if morning else "day_time"))
    if _FIRE.search(text):
        source = "firelight"
    elif _NEON.search(text):
        source = "mixed_lighting"
    elif night and env == "city":
        source = "artificial_lighting"
    elif night:
        source = "practical_lighting" if indoor else "moonlight"
    elif _OVERCAST.search(text):
        source = "overcast_lighting"
    else:
        source = "daylight"
    out.append(("light_source", source))
    close = (motion in ("gesture", "work") or subject_kind == "object") and not landscape
    wide = landscape or motion in ("fast", "dance") or subject_kind in ("vehicle", "boat", "aircraft")
    out.append(("shot_size", "wide_shot" if landscape else "medium_close_up_shot" if close else
                "medium_wide_shot" if wide else "medium_shot"))
    out.append(("composition", "balanced_composition" if landscape else "center_composition"))
    if golden:
        lighting = "edge_lighting"
    elif night and (env == "city" or _NEON.search(text)):
        lighting = "high_contrast"
    elif _OVERCAST.search(text):
        lighting = "low_contrast"
    else:
        lighting = "soft_lighting"
    out.append(("lighting", lighting))
    out.append(("lens", "wide_angle_lens" if landscape else "long_focus_lens" if close else "medium_focal_length"))
    if not camera_given:  # the official rule: no camera angle when the idea describes the camera
        out.append(("camera_angle", "aerial_shot" if landscape and _VISTA.search(text) else "eye_level_shot"))
    cold = night or _COLD.search(text) is not None or env in ("snow", "rain")
    out.append(("color_tone", "cool_colors" if cold else "warm_colors"))
    return out


def _camera_move(subject_kind: str, motion: str, *, i2v: bool) -> str:
    if motion in ("fast", "walk", "dance") or subject_kind in ("vehicle", "boat"):
        return "tracking_shot"
    if i2v:
        return FIXED_CAMERA
    if subject_kind == "landscape":
        return "camera_moves_right"
    if subject_kind == "object":
        return "orbiting_camera_movement"
    return "camera_pushes_in"


def _en_sentence(text: str) -> str:
    text = text.strip().rstrip(" ,;:")
    if not text:
        return ""
    if text[0].islower():
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _zh_sentence(text: str) -> str:
    text = text.strip().rstrip(" ,，、;；:：.")
    if not text:
        return ""
    return text if text[-1] in "。！？" else text + "。"


def _join(sentences: list[str], lang: str) -> str:
    return ("" if lang == "zh" else " ").join(s for s in sentences if s)


def _terms_text(ids: list[str], lang: str) -> str:
    """The vocabulary terms as the builder writes them (one sentence, conflicts resolved)."""
    vocab = load_vocabulary()
    style = next((i for i in ids if vocab.term(i).group == "style"), None)
    aesthetics = {vocab.term(i).group: i for i in ids if i != style and i != FIXED_CAMERA}
    fields = PromptFields(aesthetics=aesthetics, style=style, fixed_camera=FIXED_CAMERA in ids)
    return build_prompt(fields, mode="advanced", lang=lang)


def plan(prompt: str, *, kind: str = "t2v", lang: str = "en", max_tags: int = DEFAULT_MAX_TAGS) -> Plan:
    """Enrich ``prompt`` (already validated) for ``kind`` ("t2v" or "i2v"), writing added words in ``lang``."""
    vocab = load_vocabulary()
    text = " ".join(prompt.split())
    source = detect_language(text)
    out_lang = source if source in ("en", "zh") else lang
    word_lang = out_lang if out_lang in ("en", "zh") else "en"
    subject_kind, keyword = _find_kind(text)
    motion = _motion_class(text, source if source in ("en", "zh") else "other")
    camera_given = _camera_mentioned(text)
    light = _light(text, {})
    i = 0 if word_lang == "en" else 1
    sentences: list[str] = []
    terms: list[str] = []
    scene_added = False

    if kind == "i2v":
        # motion + camera movement: the image gives subject, scene and style; the text is kept whole
        fields = PromptFields(motion=text)
        sentences.append(_en_sentence(text) if word_lang == "en" else _zh_sentence(text))
    else:
        fields = parse_prompt(text)
        light = _light(text, fields.aesthetics)
        rest = fields.subject
        stylized = fields.style is not None or _STYLE.search(text) is not None
        present = set(fields.aesthetics) | _lenient_groups(vocab, text)
        indoor = _INDOOR.search(text) is not None
        scene = None
        if not _has_scene(rest, source, subject_kind) and source in ("en", "zh"):
            scene = _SCENES.get(subject_kind, _SCENE_DEFAULT)[light]
            scene_added = True
            indoor = indoor or scene[2] == "indoor"
        env = _environment(text + " " + (scene[2] if scene else ""), scene[2] if scene else "neutral")
        if scene and scene[2] in ("indoor", "water", "sky", "road", "plants"):
            env = scene[2] if env == "neutral" else env
        # the idea's own terms, in the output language, and those the enricher adds
        mentioned = vocab.mentions(rest)
        own = [fields.style] if fields.style else []
        own += [t for g, t in fields.aesthetics.items() if g not in CAMERA_GROUPS and t not in mentioned]
        added: list[str] = []
        if not stylized:
            for group, term_id in _aesthetics(text, light, subject_kind, motion, env, indoor, camera_given):
                if group not in present and len(added) < max_tags:
                    added.append(term_id)
        tag_ids = own + added
        if tag_ids:
            sentences.append(_terms_text(tag_ids, word_lang))
        terms += tag_ids
        if word_lang == "en":
            body = rest[0].upper() + rest[1:] if rest[:1].islower() else rest
            if scene:
                body = body.rstrip(" ,.;:") + " " + scene[0]
            sentences.append(_en_sentence(body))
        else:
            body = rest.strip(" ，,。.")
            if scene:
                body += "，" + scene[1]
            sentences.append(_zh_sentence(body))
        camera_given = camera_given or any(g in CAMERA_GROUPS for g in fields.aesthetics) or fields.fixed_camera

    # the motion description (an action when the idea has none), then the background
    if motion == "none" and source in ("en", "zh"):
        idle = _IDLE.get(subject_kind)
        if idle and keyword:
            plural = word_lang == "en" and keyword.lower().endswith("s") and not keyword.lower().endswith("ss")
            sentences.append((idle[1] if plural else idle[0]).format(s=keyword.lower()) if word_lang == "en"
                             else idle[2].format(s=keyword))
            if kind == "i2v" and _bare(text, keyword):  # "the cat" -> "The cat looks around slowly, ..."
                sentences.pop(0)
        elif subject_kind != "landscape":
            sentences.append(_IDLE_NONE[i])
        motion = "idle"
    elif subject_kind in ("vehicle", "boat", "aircraft") and motion in ("fast", "walk", "other"):
        sentences.append(_MOTION_TEXT["travel"][i])
    else:
        sentences.append(_MOTION_TEXT.get(motion, _MOTION_TEXT["other"])[i])
    if kind == "i2v":
        sentences.append(_STEADY[i])
    else:
        bg = _BACKGROUND.get(env)
        if bg is not None:
            sentences.append(bg[1 if light == "night" else 0][i])
        elif subject_kind == "landscape":
            sentences.append(_BACKGROUND["sky"][1 if light == "night" else 0][i])

    # the camera: the idea's own move, else one that suits the motion
    camera_ids = [t for g, t in fields.aesthetics.items() if g in CAMERA_GROUPS]
    camera_ids += [FIXED_CAMERA] if fields.fixed_camera else []
    if kind == "i2v":
        camera_ids = []  # the i2v text is kept whole, its camera words included
    if not camera_given:
        camera_ids.append(_camera_move(subject_kind, motion, i2v=kind == "i2v"))
    if camera_ids:
        sentences.append(_terms_text(camera_ids, word_lang))
        terms += camera_ids
    return Plan(_join(sentences, word_lang), word_lang, kind, subject_kind, motion, tuple(terms), scene_added)


class OfflineExtender:
    """Deterministic enricher (no network, no model). ``max_tags`` caps the aesthetic terms it adds."""

    name = "offline"

    def __init__(self, *, max_chars: int | None = None, max_tags: int = DEFAULT_MAX_TAGS,
                 max_input_chars: int = DEFAULT_MAX_INPUT_CHARS) -> None:
        if max_tags < 0:
            raise ValueError(f"max_tags must be 0 or more; got {max_tags}")
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"max_chars must be at least 1; got {max_chars}")
        self.max_chars = max_chars
        self.max_tags = max_tags
        self.max_input_chars = max_input_chars

    def plan(self, prompt: str, *, task: str = "t2v", lang: str = "en", has_image: bool = False) -> Plan:
        """What :meth:`extend` writes, with the choices behind it (uncapped)."""
        request = prepare_request(prompt, task=task, lang=lang, has_image=has_image, max_chars=self.max_chars,
                                  max_input_chars=self.max_input_chars)
        return plan(request.prompt, kind=request.kind, lang=lang, max_tags=self.max_tags)

    def extend(self, prompt: str, *, task: str = "t2v", lang: str = "en", has_image: bool = False) -> ExtensionResult:
        request = prepare_request(prompt, task=task, lang=lang, has_image=has_image, max_chars=self.max_chars,
                                  max_input_chars=self.max_input_chars)
        start = time.monotonic()
        p = plan(request.prompt, kind=request.kind, lang=lang, max_tags=self.max_tags)
        out = p.prompt or request.prompt
        cap = self.max_chars if self.max_chars is not None else DEFAULT_MAX_CHARS[(request.kind, p.lang)]
        capped = truncate_prompt(out, cap)
        warning = reason = None
        source = request.source_lang
        if source in ("en", "zh") and source != lang:
            warning = (f"the offline enricher does not translate: the prompt stays in {LANGUAGE_NAMES[source][0]}, "
                       f"not {LANGUAGE_NAMES[lang][0]}; choose an LLM enhancer to rewrite it in "
                       f"{LANGUAGE_NAMES[lang][0]}")
            reason = "untranslated"
        elif source not in (lang, "unknown"):
            src_name = LANGUAGE_NAMES.get(source, LANGUAGE_NAMES["other"])[0]
            warning = (f"the offline enricher does not translate: the description stays in {src_name} and only the "
                       f"added words are in {LANGUAGE_NAMES[lang][0]}; choose an LLM enhancer to rewrite it")
            reason = "untranslated"
        elif len(capped) < len(out):
            warning, reason = f"the prompt was cut to {cap} characters", "truncated"
        return ExtensionResult(capped, True, self.name, warning, reason, None, time.monotonic() - start)
