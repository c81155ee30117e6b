"""Step cache: skip DiT forwards whose output the last computed one predicts (MagCache, EasyCache).

One request setting, ``GenerationRequest.cache``: ``None`` (off, the default) or a ``StepCache``
naming a method and its parameters. Text forms (forms, links, the CLI): ``"off"``, a preset name
(``"magcache"``, ``"easycache"``: the published settings for the task), ``"METHOD:THRESHOLD"``,
``"METHOD:threshold=0.1,max_skips=3"`` or a JSON object ``{"method": ..., "threshold": ...}``.

What a skipped forward returns (both methods). The pipeline calls the DiT once per step and CFG
branch (cond, uncond): ``v = model(x, t, context)``, ``x`` the latents given to the model (the noise
channels; I2V's ``y`` is concatenated inside the model). A computed forward stores the residual
``r = v - x`` (float32) for its branch and expert; a skipped one returns ``x + r`` with the current
``x``. This is EasyCache's published definition (``output - input`` of the whole model). MagCache's
published code caches the residual of the 40 transformer blocks in token space and still runs the
patch embedding and the output head; here the head is skipped too (about 0.1 % of a forward's work),
which keeps the cache outside the model (the DiT, its offload, fp8 and LoRA paths are unchanged).

Decisions (``StepCacheRun.decide``), with ``N`` steps and the run's expert of each step known up front:

* MagCache (Ma et al. 2025, ``MagCache4Wan2.2``): calibrated magnitude ratios ``gamma`` of the
  residual between consecutive steps, per task, interleaved cond/uncond, ``[1, 1]`` prepended for
  step 0; another step count resamples each stream by nearest neighbour (the published
  ``nearest_interp``). Forward ``c = 2 * step + branch`` (cond 0, uncond 1) outside the retention
  zone: ``ratio *= gamma[c]; skips += 1; err += |1 - ratio|``; reuse when ``err < threshold`` and
  ``skips <= max_skips``, else compute and reset ``(ratio, skips, err) = (1, 0, 0)``. Retention
  zones, in forwards, with ``split`` = the steps before the switch to the low-noise expert:
  T2V-A14B ``c < int(2 split r)`` or ``2 split <= c <= 2 (N - split) r + 2 split``; I2V-A14B
  ``c < int(2 split + 2 (N - split) r)`` (the high-noise expert never skips); TI2V-5B
  ``c < int(2 N r)``. As published, the accumulators run on across the expert switch (the retention
  zone computes the first low-noise steps); the residual is kept per expert, so a branch without a
  residual of the current expert always computes. MagCache's decisions depend only on the schedule
  (``plan_decisions`` gives them without a model).
* EasyCache (Zhou et al. 2025, ``EasyCache4Wan2.2``), per branch: at a computed step the
  transformation rate ``k = mean|v - v_c| / mean|x - x_c|`` (``_c``: the branch's previous computed
  step); at a later step ``acc += k * mean|x - x_prev| / mean|v_c|`` (``x_prev``: the input of the
  branch's previous step); reuse while ``acc < threshold``, else compute and ``acc = 0``. Steps
  before ``round(start N)``, from ``round(end N)`` on, and the last step always compute (``acc = 0``).
  The branch state starts afresh at an expert switch (a residual is never reused across experts).
  The reference lets the cond branch decide for both; here each branch decides on its own state.

A run with fewer than ``MIN_STEPS`` steps (Lightning: 4 to 8) never skips: the published methods
target 40-50-step schedules, and a few-step schedule has no redundant step. A threshold of 0 never
skips. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from .errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "BRANCHES",
    "MAG_RATIOS",
    "METHODS",
    "MIN_STEPS",
    "PRESETS",
    "StepCache",
    "StepCacheRun",
    "cache_text",
    "magcache_ratios",
    "nearest_interp",
    "parse_cache",
    "plan_decisions",
    "preset",
]

METHODS: Final[tuple[str, ...]] = ("magcache", "easycache")
PRESETS: Final[tuple[str, ...]] = ("off", *METHODS)  # the named settings of forms and links
BRANCHES: Final[tuple[str, ...]] = ("cond", "uncond")
MIN_STEPS: Final[int] = 10  # a run with fewer steps is never cached (Lightning: nothing to skip)

# MagCache's calibrated residual magnitude ratios (MagCache4Wan2.2/magcache_generate.py; Wan2GP uses the
# same arrays): cond, uncond interleaved per step from step 1 ([1, 1] for step 0 is prepended by
# magcache_ratios). T2V-A14B: 40 steps, shift 12, boundary 0.875; I2V-A14B: 40 steps, shift 5,
# boundary 0.9; TI2V-5B: 50 steps (text-only and with an image).
MAG_RATIOS: Final[dict[str, tuple[float, ...]]] = {
    "t2v-A14B": (
        1.00124, 1.00155, 0.99822, 0.99851, 0.99696, 0.99687, 0.99703, 0.99732, 0.9966, 0.99679, 0.99602, 0.99658,
        0.99578, 0.99664, 0.99484, 0.9949, 0.99633, 0.996, 0.99659, 0.99683, 0.99534, 0.99549, 0.99584, 0.99577,
        0.99681, 0.99694, 0.99563, 0.99554, 0.9944, 0.99473, 0.99594, 0.9964, 0.99466, 0.99461, 0.99453, 0.99481,
        0.99389, 0.99365, 0.99391, 0.99406, 0.99354, 0.99361, 0.99283, 0.99278, 0.99268, 0.99263, 0.99057, 0.99091,
        0.99125, 0.99126, 0.65523, 0.65252, 0.98808, 0.98852, 0.98765, 0.98736, 0.9851, 0.98535, 0.98311, 0.98339,
        0.9805, 0.9806, 0.97776, 0.97771, 0.97278, 0.97286, 0.96731, 0.96728, 0.95857, 0.95855, 0.94385, 0.94385,
        0.92118, 0.921, 0.88108, 0.88076, 0.80263, 0.80181,
    ),
    "i2v-A14B": (
        0.99191, 0.99144, 0.99356, 0.99337, 0.99326, 0.99285, 0.99251, 0.99264, 0.99393, 0.99366, 0.9943, 0.9943,
        0.99276, 0.99288, 0.99389, 0.99393, 0.99274, 0.99289, 0.99316, 0.9931, 0.99379, 0.99377, 0.99268, 0.99271,
        0.99222, 0.99227, 0.99175, 0.9916, 0.91076, 0.91046, 0.98931, 0.98933, 0.99087, 0.99088, 0.98852, 0.98855,
        0.98895, 0.98896, 0.98806, 0.98808, 0.9871, 0.98711, 0.98613, 0.98618, 0.98434, 0.98435, 0.983, 0.98307,
        0.98185, 0.98187, 0.98131, 0.98131, 0.9783, 0.97835, 0.97619, 0.9762, 0.97264, 0.9727, 0.97088, 0.97098,
        0.96568, 0.9658, 0.96045, 0.96055, 0.95322, 0.95335, 0.94579, 0.94594, 0.93297, 0.93311, 0.91699, 0.9172,
        0.89174, 0.89202, 0.8541, 0.85446, 0.79823, 0.79902,
    ),
    "ti2v-5B": (
        0.99505, 0.99389, 0.99441, 0.9957, 0.99558, 0.99551, 0.99499, 0.9945, 0.99534, 0.99548, 0.99468, 0.9946,
        0.99463, 0.99458, 0.9946, 0.99453, 0.99408, 0.99404, 0.9945, 0.99441, 0.99409, 0.99398, 0.99403, 0.99397,
        0.99382, 0.99377, 0.99349, 0.99343, 0.99377, 0.99378, 0.9933, 0.99328, 0.99303, 0.99301, 0.99217, 0.99216,
        0.992, 0.99201, 0.99201, 0.99202, 0.99133, 0.99132, 0.99112, 0.9911, 0.99155, 0.99155, 0.98958, 0.98957,
        0.98959, 0.98958, 0.98838, 0.98835, 0.98826, 0.98825, 0.9883, 0.98828, 0.98711, 0.98709, 0.98562, 0.98561,
        0.98511, 0.9851, 0.98414, 0.98412, 0.98284, 0.98282, 0.98104, 0.98101, 0.97981, 0.97979, 0.97849, 0.97849,
        0.97557, 0.97554, 0.97398, 0.97395, 0.97171, 0.97166, 0.96917, 0.96913, 0.96511, 0.96507, 0.96263, 0.96257,
        0.95839, 0.95835, 0.95483, 0.95475, 0.94942, 0.94936, 0.9468, 0.94678, 0.94583, 0.94594, 0.94843, 0.94872,
        0.96949, 0.97015,
    ),
    "ti2v-5B-i2v": (
        0.99512, 0.99559, 0.99559, 0.99561, 0.99595, 0.99577, 0.99512, 0.99512, 0.99546, 0.99534, 0.99543, 0.99531,
        0.99496, 0.99491, 0.99504, 0.99499, 0.99444, 0.99449, 0.99481, 0.99481, 0.99435, 0.99435, 0.9943, 0.99431,
        0.99411, 0.99406, 0.99373, 0.99376, 0.99413, 0.99405, 0.99363, 0.99359, 0.99335, 0.99331, 0.99244, 0.99243,
        0.99229, 0.99229, 0.99239, 0.99236, 0.99163, 0.9916, 0.99149, 0.99151, 0.99191, 0.99192, 0.9898, 0.98981,
        0.9899, 0.98987, 0.98849, 0.98849, 0.98846, 0.98846, 0.98861, 0.98861, 0.9874, 0.98738, 0.98588, 0.98589,
        0.98539, 0.98534, 0.98444, 0.98439, 0.9831, 0.98309, 0.98119, 0.98118, 0.98001, 0.98, 0.97862, 0.97859,
        0.97555, 0.97558, 0.97392, 0.97388, 0.97152, 0.97145, 0.96871, 0.9687, 0.96435, 0.96434, 0.96129, 0.96127,
        0.95639, 0.95638, 0.95176, 0.95175, 0.94446, 0.94452, 0.93972, 0.93974, 0.93575, 0.9359, 0.93537, 0.93552,
        0.96655, 0.96616,
    ),
}  # fmt: skip

# Accepted ranges of the parameters (MagCache's published thresholds: 0.06-0.24; ComfyUI's EasyCache node: 0-3).
_LIMITS: Final[dict[str, tuple[float, float]]] = {
    "threshold": (0.0, 3.0), "max_skips": (0, 20), "retention": (0.0, 1.0), "start": (0.0, 1.0), "end": (0.0, 1.0),
}
_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "magcache": ("threshold", "max_skips", "retention"),
    "easycache": ("threshold", "start", "end"),
}


@dataclass(frozen=True)
class StepCache:
    """A step-cache setting. ``threshold`` (both; 0 never skips); MagCache: ``max_skips`` (K, the most
    consecutive reused forwards of a branch) and ``retention`` (the fraction of each expert's first
    forwards always computed, see the module docstring); EasyCache: ``start`` / ``end`` (fractions of
    the steps: caching acts on steps ``round(start N) <= i < round(end N)``, never the last)."""

    method: str
    threshold: float
    max_skips: int = 2
    retention: float = 0.2
    start: float = 0.0
    end: float = 1.0

    def params(self) -> dict[str, Any]:
        """The method's own parameters (what ``to_json`` and ``text`` write)."""
        return {name: getattr(self, name) for name in _PARAMS[self.method]}

    def to_json(self) -> dict[str, Any]:
        """``{"method": ..., <the method's parameters>}`` (settings JSON; ``parse_cache`` reads it back)."""
        return {"method": self.method, **self.params()}

    def text(self) -> str:
        """``"magcache:threshold=0.06,max_skips=2,retention=0.4"`` (``parse_cache`` reads it back)."""
        return f"{self.method}:" + ",".join(f"{k}={v:g}" for k, v in self.params().items())


# Published settings per task (MagCache4Wan2.2 README; EasyCache4Wan2.2 easycache_generate.py defaults).
_PUBLISHED: Final[dict[str, dict[str, StepCache]]] = {
    "magcache": {
        "t2v-A14B": StepCache("magcache", 0.06, max_skips=2, retention=0.4),  # E006K2R04, 27m09s -> 18m10s (L20, 480p)
        "i2v-A14B": StepCache("magcache", 0.06, max_skips=2, retention=0.1),  # E006K2R01, 26m43s -> ~20m (L20, 480p)
        "ti2v-5B": StepCache("magcache", 0.06, max_skips=2, retention=0.2),   # E006K2R02, 10m39s -> 5m24s (L20, 720p)
    },
    "easycache": {  # thresh (T2V-A14B: thresh_t2v), ret_steps 7 of the official 40 / 50 steps, last step computed
        "t2v-A14B": StepCache("easycache", 0.06, start=0.175),  # 5729 s -> 2603 s (H20, 720p)
        "i2v-A14B": StepCache("easycache", 0.06, start=0.175),  # not published for I2V-A14B: the T2V-A14B setting
        "ti2v-5B": StepCache("easycache", 0.05, start=0.14),    # 578 s -> 255 s (T2V), 560 s -> 224 s (I2V) (H20, 720p)
    },
}


def preset(name: str, task: str) -> StepCache | None:
    """The named setting for ``task``: ``"off"`` -> None, ``"magcache"``/``"easycache"`` -> the published one."""
    if name == "off":
        return None
    try:
        return _PUBLISHED[name][task]
    except KeyError:
        raise InputError("cache", f"unknown step-cache preset {name!r}; use one of {', '.join(PRESETS)}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_FORMS = ("off, magcache, easycache, METHOD:THRESHOLD, METHOD:name=value,... "
          '(magcache: threshold, max_skips, retention; easycache: threshold, start, end) or a JSON object')


def _number(name: str, raw: Any) -> float:
    if isinstance(raw, bool) or raw is None:
        raise InputError("cache", f"{name} must be a number; got {_short(raw)}")
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise InputError("cache", f"{name} must be a number; got {_short(raw)}") from None
    lo, hi = _LIMITS[name]
    if not math.isfinite(value) or not lo <= value <= hi:
        raise InputError("cache", f"{name} must be from {lo:g} to {hi:g}; got {_short(raw)}")
    if name == "max_skips":
        if value != int(value):
            raise InputError("cache", f"max_skips must be a whole number; got {_short(raw)}")
        return int(value)
    return value


def _from_mapping(task: str, raw: Mapping[str, Any]) -> StepCache:
    method = raw.get("method")
    if method not in METHODS:
        raise InputError("cache", f"method must be one of {', '.join(METHODS)}; got {_short(method)}")
    unknown = sorted(str(k) for k in raw if k != "method" and k not in _PARAMS[method])
    if unknown:
        raise InputError("cache", f"{method} takes {', '.join(_PARAMS[method])}; got {', '.join(unknown)}")
    base = _PUBLISHED[method].get(task) or next(iter(_PUBLISHED[method].values()))
    values = {k: _number(k, v) for k, v in raw.items() if k != "method"}
    config = replace(base, **values)
    if config.start > config.end:
        raise InputError("cache", f"start ({config.start:g}) must not be after end ({config.end:g})")
    return config


def _from_text(task: str, text: str) -> StepCache | None:
    text = text.strip()
    if len(text) > 200:
        raise InputError("cache", f"must be {_FORMS}; got a {len(text)}-character text")
    low = text.lower()
    if low in ("", "off", "none", "null"):
        return None
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError:
            raise InputError("cache", f"is not valid JSON: {_short(text)}") from None
        return parse_cache(task, raw)
    method, _, rest = low.partition(":")
    method = method.strip()
    if method not in METHODS:
        raise InputError("cache", f"must be {_FORMS}; got {_short(text)}")
    if not rest.strip():
        return preset(method, task)
    values: dict[str, Any] = {"method": method}
    for part in rest.split(","):
        name, eq, value = part.partition("=")
        if not eq:  # METHOD:THRESHOLD
            name, value = "threshold", name
        values[name.strip()] = value
    return _from_mapping(task, values)


def parse_cache(task: str, value: Any) -> StepCache | None:
    """A request's ``cache`` value -> ``StepCache`` or None (off); ``InputError("cache")`` naming the forms.

    ``value``: None, a ``StepCache``, a mapping ``{"method": ..., <parameters>}`` (parameters not given
    come from the task's published setting), or text: ``"off"``, ``"magcache"``, ``"easycache"``,
    ``"magcache:0.1"``, ``"easycache:threshold=0.1,start=0.2"``, or that mapping as JSON.
    """
    if value is None:
        return None
    if isinstance(value, StepCache):
        return _from_mapping(task, {"method": value.method, **{k: getattr(value, k) for k in _PARAMS.get(value.method, ())}})
    if isinstance(value, Mapping):
        return _from_mapping(task, value)
    if isinstance(value, str):
        return _from_text(task, value)
    raise InputError("cache", f"must be {_FORMS}; got {type(value).__name__}")


def cache_text(task: str, value: StepCache | None) -> str:
    """How forms and links write a setting: the preset name when it is the task's preset, else ``text()``."""
    if value is None:
        return "off"
    if _PUBLISHED[value.method].get(task) == value:
        return value.method
    return value.text()


# ------------------------------------------------------------------------------- MagCache tables


def nearest_interp(values: Sequence[float], length: int) -> list[float]:
    """``values`` resampled to ``length`` by nearest neighbour, as the published ``nearest_interp``
    (index ``round(i * (n - 1) / (length - 1))``, round half to even; one value: the last)."""
    if length == 1:
        return [values[-1]]
    scale = (len(values) - 1) / (length - 1)
    return [values[round(i * scale)] for i in range(length)]


def _ratio_table(task: str, has_image: bool) -> str:
    return "ti2v-5B-i2v" if task == "ti2v-5B" and has_image else task


def magcache_ratios(task: str, steps: int, *, has_image: bool = False) -> list[float]:
    """The ``2 * steps`` ratios (cond, uncond per step, ``[1, 1]`` for step 0) for a ``steps``-step run."""
    table = [1.0, 1.0, *MAG_RATIOS[_ratio_table(task, has_image)]]
    if len(table) == 2 * steps:
        return table
    cond, uncond = nearest_interp(table[0::2], steps), nearest_interp(table[1::2], steps)
    return [r for pair in zip(cond, uncond, strict=True) for r in pair]


def _mode(task: str) -> str:
    return {"t2v-A14B": "t2v", "i2v-A14B": "i2v"}.get(task, "single")


# ---------------------------------------------------------------------------------- run state


class _MagState:
    """MagCache's accumulators of one branch (they run on across the expert switch, as published)."""

    def __init__(self) -> None:
        self.ratio, self.skips, self.err = 1.0, 0, 0.0


class _EasyState:
    """EasyCache's state of one branch within one expert (``_c``: at the last computed step)."""

    def __init__(self) -> None:
        self.x_prev: Tensor | None = None   # input of the branch's previous step
        self.x_c: Tensor | None = None
        self.v_c: Tensor | None = None
        self.k: float | None = None
        self.acc = 0.0


def _mean_abs(t: Tensor) -> float:
    return float(t.abs().mean())


class StepCacheRun:
    """The step cache of one run: ``decide`` before a branch's forward, ``reuse`` or ``record`` after.

    ``experts``: the expert of each step (its length is the step count). ``log[step][branch]`` is
    ``"run"`` or ``"reused"`` for every forward decided so far. Without tensors (``x=None``) the
    MagCache decisions still work (``plan_decisions``).
    """

    def __init__(self, config: StepCache, *, task: str, experts: Sequence[str], has_image: bool = False) -> None:
        self.config = config
        self.task = task
        self.experts = tuple(experts)
        self.steps = len(self.experts)
        self.active = self.steps >= MIN_STEPS and config.threshold > 0
        self.log: list[dict[str, str]] = [{} for _ in range(self.steps)]
        self._residual: dict[tuple[str, str], Tensor | None] = {}  # (expert, branch) -> r (None: planning)
        if config.method == "magcache":
            self._ratios = magcache_ratios(task, self.steps, has_image=has_image)
            self._split = next((i for i, e in enumerate(self.experts) if e == "low_noise"), self.steps)
            self._mode = _mode(task)
            self._mag = {b: _MagState() for b in BRANCHES}
        else:
            n = self.steps
            self._first = math.floor(config.start * n + 0.5)
            self._last = min(math.floor(config.end * n + 0.5), n - 1)
            self._easy: dict[tuple[str, str], _EasyState] = {}

    # -- decisions
    def decide(self, step: int, branch: str, x: Tensor | None = None) -> bool:
        """True: reuse the cached residual for this forward (call ``reuse``); False: run the model
        (then call ``record``). Call once per forward, steps in order."""
        if branch not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}; got {branch!r}")
        if not self.active:
            reuse = False
        elif self.config.method == "magcache":
            reuse = self._mag_decide(step, branch)
        else:
            reuse = self._easy_decide(step, branch, x)
        self.log[step][branch] = "reused" if reuse else "run"
        return reuse

    def _retained(self, c: int) -> bool:
        n2, s2, r = 2 * self.steps, 2 * self._split, self.config.retention
        if self._mode == "i2v":
            return c < int(s2 + (n2 - s2) * r)
        if self._mode == "t2v":
            return c < int(s2 * r) or s2 <= c <= (n2 - s2) * r + s2
        return c < int(n2 * r)

    def _mag_decide(self, step: int, branch: str) -> bool:
        c = 2 * step + BRANCHES.index(branch)
        if self._retained(c):
            return False
        s, cfg = self._mag[branch], self.config
        s.ratio *= self._ratios[c]
        s.skips += 1
        s.err += abs(1.0 - s.ratio)
        if s.err < cfg.threshold and s.skips <= cfg.max_skips and (self.experts[step], branch) in self._residual:
            return True
        s.ratio, s.skips, s.err = 1.0, 0, 0.0
        return False

    def _easy_decide(self, step: int, branch: str, x: Tensor | None) -> bool:
        if x is None:
            raise ValueError("EasyCache decides on the latents: pass x")
        key = (self.experts[step], branch)
        s = self._easy.setdefault(key, _EasyState())
        reuse = False
        if step < self._first or step >= self._last:
            s.acc = 0.0
        elif s.x_prev is not None and s.v_c is not None and s.k is not None and key in self._residual:
            s.acc += s.k * _mean_abs(x - s.x_prev) / max(_mean_abs(s.v_c), 1e-12)
            if s.acc < self.config.threshold:
                reuse = True
            else:
                s.acc = 0.0
        s.x_prev = x.float().clone()
        return reuse

    # -- results
    def reuse(self, step: int, branch: str, x: Tensor) -> Tensor:
        """The skipped forward's output: ``x + r`` (float32) with the branch's residual of this expert."""
        r = self._residual[(self.experts[step], branch)]
        assert r is not None  # noqa: S101 - decide() returns True only when a residual is stored
        return x.float() + r

    def record(self, step: int, branch: str, x: Tensor | None, out: Tensor | None) -> None:
        """After a computed forward: store ``r = out - x`` (and EasyCache's rate ``k``)."""
        key = (self.experts[step], branch)
        if x is None or out is None:  # planning: only that a residual exists
            self._residual[key] = None
            return
        out32, x32 = out.float(), x.float()
        if self.config.method == "easycache":
            s = self._easy.setdefault(key, _EasyState())
            if s.v_c is not None and s.x_c is not None:
                dx = _mean_abs(x32 - s.x_c)
                if dx > 0:
                    s.k = _mean_abs(out32 - s.v_c) / dx
            s.x_c, s.v_c = x32.clone(), out32.clone()
        self._residual[key] = out32 - x32

    def forward(self, step: int, branch: str, x: Tensor, compute: Callable[[], Tensor]) -> Tensor:
        """``decide``, then ``reuse`` or ``compute()`` + ``record``: one branch's forward through the cache."""
        if self.decide(step, branch, x):
            return self.reuse(step, branch, x)
        out = compute()
        self.record(step, branch, x, out)
        return out


def plan_decisions(
    config: StepCache, task: str, experts: Sequence[str], *, has_image: bool = False,
    branches: Sequence[str] = BRANCHES,
) -> list[dict[str, str]]:
    """MagCache's decisions for a schedule, without a model: per step ``{branch: "run" | "reused"}``.
    (EasyCache decides on the outputs at run time: ``ValueError``.)"""
    if config.method != "magcache":
        raise ValueError("only MagCache's decisions are known before the run")
    run = StepCacheRun(config, task=task, experts=experts, has_image=has_image)
    for step in range(run.steps):
        for branch in branches:
            if not run.decide(step, branch):
                run.record(step, branch, None, None)
    return run.log
