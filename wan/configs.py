"""Per-task model specifications: the single source of truth for architecture and sampling defaults.

One frozen ``ModelSpec`` per task ("t2v-A14B", "i2v-A14B", "ti2v-5B") with the official Wan 2.2
values (``wan/configs/wan_*.py`` and ``shared_config.py`` of the official repository): the full-size
DiT architecture, the VAE kind, the MoE boundary, default steps / shift / guidance / frames / fps /
sizes, the default negative prompt and the checkpoint file names.

Checkpoints are checked against the spec with ``dit_config_from_json`` + ``check_dit_config``: the
fields that decide *what* the model is (model type, input/output channels, patch size, no CLIP
branch) must match; the widths and depths (dim, heads, layers, ffn, text_dim) are taken from the
checkpoint's own ``config.json``, so tiny random test checkpoints load through the same code.

Importing this module does not import torch; ``get_spec`` imports ``wan.modules.model`` (for
``DiTConfig``) on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .errors import CheckpointError

if TYPE_CHECKING:
    from .modules.model import DiTConfig

__all__ = [
    "DEFAULT_COLOR_MATCH",
    "DEFAULT_OVERLAP",
    "LIMITS",
    "OFFICIAL_NEGATIVE_PROMPT",
    "SCHEDULES",
    "SOLVERS",
    "TASKS",
    "Limit",
    "Limits",
    "ModelSpec",
    "check_dit_config",
    "dit_config_from_json",
    "get_spec",
    "normalize_task",
]

TASKS: Final[tuple[str, ...]] = ("t2v-A14B", "i2v-A14B", "ti2v-5B")
SOLVERS: Final[tuple[str, ...]] = ("unipc", "dpm++", "euler")  # sample_solver names (wan.schedulers)
# Sigma grids: "official" (the official code's per-solver grid, integer timesteps) and "lightning"
# (linspace(1, 0) shifted, float timesteps: what the Lightning / lightx2v 4-step LoRAs were trained on).
SCHEDULES: Final[tuple[str, ...]] = ("official", "lightning")

# Official ``shared_config.sample_neg_prompt``: used whenever the negative prompt is empty.
OFFICIAL_NEGATIVE_PROMPT: Final[str] = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


@dataclass(frozen=True)
class Limit:
    """The inclusive range ``lo..hi`` of one numeric setting (``step`` is the slider step)."""

    lo: float
    hi: float
    step: float = 1

    def __contains__(self, value: object) -> bool:
        return isinstance(value, (int, float)) and self.lo <= value <= self.hi


@dataclass(frozen=True)
class Limits:
    """The one table of generation limits, read by the request validator, the UI sliders and the CLI.

    ``frame_num`` values must also be ``4n + 1`` (the VAE's temporal stride). ``seed`` is the accepted
    range (the official ``sys.maxsize`` range; ``-1`` asks for a random one); random seeds are drawn
    from ``0..random_seed_max`` so they stay exact in JavaScript (the UI) and are short to type.
    ``side`` bounds each side of a custom (``any_size``) resolution; the official sizes are always
    accepted. ``prompt_chars`` bounds prompt and negative prompt (the text encoder keeps 512 tokens).
    """

    frame_num: Limit = Limit(1, 241, 4)
    sampling_steps: Limit = Limit(1, 100, 1)
    shift: Limit = Limit(0.1, 30.0, 0.1)
    guide_scale: Limit = Limit(0.0, 20.0, 0.1)
    fps: Limit = Limit(1, 60, 1)
    seed: Limit = Limit(0, 2**63 - 1, 1)
    side: Limit = Limit(16, 2048, 1)
    lora_strength: Limit = Limit(-5.0, 5.0, 0.05)
    random_seed_max: int = 2**32 - 1
    prompt_chars: int = 3000
    loras: int = 8


LIMITS: Final[Limits] = Limits()

# Continuation defaults (wan.continuation, checked by wan.request): drop the duplicated hand-over frame;
# half-way colour matching corrects most drift and keeps a deliberate change of light.
DEFAULT_OVERLAP: Final[int] = 1
DEFAULT_COLOR_MATCH: Final[float] = 0.5

_T5_FILE: Final[str] = "models_t5_umt5-xxl-enc-bf16.pth"
_TOKENIZER_DIR: Final[str] = "google/umt5-xxl"
_A14B_SIZES: Final[tuple[tuple[int, int], ...]] = ((1280, 720), (720, 1280), (832, 480), (480, 832))
_TI2V_SIZES: Final[tuple[tuple[int, int], ...]] = ((1280, 704), (704, 1280))

# Lower-cased, "_"/" " -> "-" spellings accepted by ``get_spec`` in addition to the task names.
_ALIASES: Final[dict[str, str]] = {
    "t2v-a14b": "t2v-A14B",
    "t2v": "t2v-A14B",
    "wan2.2-t2v-a14b": "t2v-A14B",
    "i2v-a14b": "i2v-A14B",
    "i2v": "i2v-A14B",
    "wan2.2-i2v-a14b": "i2v-A14B",
    "ti2v-5b": "ti2v-5B",
    "ti2v": "ti2v-5B",
    "5b": "ti2v-5B",
    "wan2.2-ti2v-5b": "ti2v-5B",
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything about one task that is not in the weights (official values).

    ``guide_scale`` maps each expert to its official guidance: ``{"high_noise": ..., "low_noise": ...}``
    for the A14B experts, ``{"dense": ...}`` for the 5B model. ``sizes`` are the supported
    ``(width, height)`` pairs. ``boundary`` is the MoE switch as a fraction of ``num_train_timesteps``:
    the high-noise expert runs while the integer timestep ``t >= boundary * num_train_timesteps``.
    Geometry (latent channels, strides, patch size, text length) is derived from ``dit`` and
    ``vae_stride`` (the VAE config's own stride), never restated.
    """

    task: str
    dit: DiTConfig
    boundary: float | None
    vae: str  # "wan2.1" | "wan2.2"
    vae_stride: tuple[int, int, int]
    sample_steps: int
    sample_shift: float
    guide_scale: Mapping[str, float]
    frame_num: int
    sample_fps: int
    sizes: tuple[tuple[int, int], ...]
    t5_file: str
    vae_file: str
    tokenizer_dir: str
    hf_repo: str
    hf_diffusers_repo: str
    negative_prompt: str = OFFICIAL_NEGATIVE_PROMPT
    num_train_timesteps: int = 1000

    @property
    def moe(self) -> bool:
        """True for the two-expert A14B models (a boundary is set)."""
        return self.boundary is not None

    @property
    def experts(self) -> tuple[str, ...]:
        """Expert names: ``("high_noise", "low_noise")`` for A14B, ``("dense",)`` for the 5B model."""
        return ("high_noise", "low_noise") if self.moe else ("dense",)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """The DiT's (t, h, w) patch size."""
        return tuple(self.dit.patch_size)  # type: ignore[return-value]

    @property
    def z_dim(self) -> int:
        """Latent channels (the DiT's output channels: 16 with the Wan 2.1 VAE, 48 with Wan 2.2)."""
        return self.dit.out_dim

    @property
    def text_len(self) -> int:
        """Text tokens the DiT attends to (the context is zero-padded to this length)."""
        return self.dit.text_len

    @property
    def size_multiple(self) -> int:
        """What any custom width/height must be a multiple of: VAE stride x patch size (16 or 32)."""
        return self.vae_stride[1] * self.patch_size[1]

    @property
    def image_input(self) -> str:
        """``"none"`` (text only), ``"required"`` (I2V-A14B) or ``"optional"`` (TI2V-5B)."""
        return {"t2v": "none", "i2v": "required", "ti2v": "optional"}[self.dit.model_type]

    @property
    def default_size(self) -> tuple[int, int]:
        """The official default ``(width, height)``: 1280x720 (A14B) or 1280x704 (5B)."""
        return self.sizes[0]

    @property
    def boundary_timestep(self) -> float | None:
        """``boundary * num_train_timesteps`` (875 / 900), or None for the dense model."""
        return None if self.boundary is None else self.boundary * self.num_train_timesteps

    def latent_frames(self, frame_num: int) -> int:
        """Latent frames of a ``frame_num``-frame video (``(F - 1) / 4 + 1``)."""
        return (frame_num - 1) // self.vae_stride[0] + 1

    def official_subfolder(self, expert: str) -> str:
        """Folder of an expert inside an official checkpoint ("" = the checkpoint root for the 5B)."""
        folders = {"high_noise": "high_noise_model", "low_noise": "low_noise_model", "dense": ""}
        if expert not in self.experts:
            raise ValueError(f"{self.task} has experts {self.experts}, not {expert!r}")
        return folders[expert]

    def diffusers_subfolder(self, expert: str) -> str:
        """Folder of an expert in a Diffusers checkpoint: ``transformer`` is the high-noise expert
        (used while ``t >= boundary``), ``transformer_2`` the low-noise one; the 5B uses ``transformer``."""
        folders = {"high_noise": "transformer", "low_noise": "transformer_2", "dense": "transformer"}
        if expert not in self.experts:
            raise ValueError(f"{self.task} has experts {self.experts}, not {expert!r}")
        return folders[expert]


def normalize_task(task: str) -> str:
    """Canonical task name for ``task`` (case-insensitive; "_" or " " work as "-"; short aliases such
    as "t2v", "i2v", "ti2v", "5b"). Raises ValueError naming the allowed tasks."""
    if not isinstance(task, str):
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    key = task.strip().lower().replace("_", "-").replace(" ", "-")
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)} (case-insensitive)")


def get_spec(task: str) -> ModelSpec:
    """The official ``ModelSpec`` of ``task`` (see ``normalize_task`` for accepted spellings).

    The specs are built once per process (on first use, which imports the model configs) and shared.
    """
    return _registry()[normalize_task(task)]


@functools.cache
def _registry() -> dict[str, ModelSpec]:
    from .modules.model import DiTConfig
    from .modules.vae21 import Wan21VAEConfig
    from .modules.vae22 import Wan22VAEConfig

    stride21, stride22 = Wan21VAEConfig().stride, Wan22VAEConfig().stride
    specs = {
        "ti2v-5B": ModelSpec(
            task="ti2v-5B",
            dit=DiTConfig(model_type="ti2v", dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48),
            boundary=None,
            vae="wan2.2",
            vae_stride=stride22,
            sample_steps=50,
            sample_shift=5.0,
            guide_scale={"dense": 5.0},
            frame_num=121,
            sample_fps=24,
            sizes=_TI2V_SIZES,
            t5_file=_T5_FILE,
            vae_file="Wan2.2_VAE.pth",
            tokenizer_dir=_TOKENIZER_DIR,
            hf_repo="Wan-AI/Wan2.2-TI2V-5B",
            hf_diffusers_repo="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        )
    }
    for i2v in (False, True):
        name = "i2v-A14B" if i2v else "t2v-A14B"
        repo = "Wan-AI/Wan2.2-I2V-A14B" if i2v else "Wan-AI/Wan2.2-T2V-A14B"
        specs[name] = ModelSpec(
            task=name,
            dit=DiTConfig(
                model_type="i2v" if i2v else "t2v", dim=5120, ffn_dim=13824, num_heads=40, num_layers=40,
                in_dim=36 if i2v else 16, out_dim=16,
            ),  # fmt: skip
            boundary=0.900 if i2v else 0.875,
            vae="wan2.1",
            vae_stride=stride21,
            sample_steps=40,
            sample_shift=5.0 if i2v else 12.0,
            guide_scale={"high_noise": 3.5, "low_noise": 3.5} if i2v else {"high_noise": 4.0, "low_noise": 3.0},
            frame_num=81,
            sample_fps=16,
            sizes=_A14B_SIZES,
            t5_file=_T5_FILE,
            vae_file="Wan2.1_VAE.pth",
            tokenizer_dir=_TOKENIZER_DIR,
            hf_repo=repo,
            hf_diffusers_repo=repo + "-Diffusers",
        )
    return {task: specs[task] for task in TASKS}


# ----------------------------------------------------------------------------- checkpoint configs


def _int_field(d: Mapping[str, Any], key: str, source: str | Path) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CheckpointError(f"{source}: field {key!r} must be a positive integer, got {value!r}")
    return value


def dit_config_from_json(d: Mapping[str, Any], *, source: str | Path, text_dim: int | None = None) -> DiTConfig:
    """Builds a ``DiTConfig`` from a DiT ``config.json`` dict, official or Diffusers layout.

    Official (``_class_name`` "WanModel", or a ``model_type`` key): the 12 official keys, plus an
    optional ``text_dim`` (absent in the real files, where it is 4096). Diffusers
    (``_class_name`` "WanTransformer3DModel"): ``num_attention_heads * attention_head_dim`` is ``dim``,
    the model type follows from ``in_channels`` (16 t2v, 36 i2v, 48 ti2v); configs with a CLIP branch
    (``image_dim`` / ``added_kv_proj_dim``, Wan 2.1 I2V) or without RMS qk-norm / cross-attention norm
    are rejected. ``text_dim`` (when given) overrides the file. ``source`` names the file in errors.
    """
    from .modules.model import DiTConfig

    if not isinstance(d, Mapping):
        raise CheckpointError(f"{source}: expected a JSON object, got {type(d).__name__}")
    class_name = d.get("_class_name")
    if class_name == "WanTransformer3DModel":
        if d.get("qk_norm", "rms_norm_across_heads") != "rms_norm_across_heads" or not d.get("cross_attn_norm", True):
            raise CheckpointError(
                f"{source}: expected qk_norm 'rms_norm_across_heads' and cross_attn_norm true (as in every Wan "
                f"model), got qk_norm={d.get('qk_norm')!r}, cross_attn_norm={d.get('cross_attn_norm')!r}"
            )
        for key in ("num_attention_heads", "attention_head_dim", "in_channels", "ffn_dim", "num_layers"):
            _int_field(d, key, source)
        try:
            cfg = DiTConfig.from_diffusers_config(dict(d))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid WanTransformer3DModel config ({exc})") from exc
    elif class_name in (None, "WanModel"):
        if "model_type" not in d:
            raise CheckpointError(
                f"{source}: not a Wan DiT config: no 'model_type' key and _class_name is {class_name!r} "
                "(expected 'WanModel' for the official layout or 'WanTransformer3DModel' for Diffusers)"
            )
        for key in ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim"):
            _int_field(d, key, source)
        try:
            cfg = DiTConfig.from_config_json(dict(d))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid WanModel config ({exc})") from exc
    else:
        raise CheckpointError(
            f"{source}: _class_name {class_name!r} is not a Wan DiT (expected 'WanModel' or 'WanTransformer3DModel')"
        )
    if text_dim is not None:
        try:
            cfg = replace(cfg, text_dim=int(text_dim))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid text_dim {text_dim!r} ({exc})") from exc
    return cfg


def check_dit_config(spec: ModelSpec, cfg: DiTConfig, *, source: str | Path) -> None:
    """Raises ``CheckpointError`` if ``cfg`` is not a DiT of ``spec.task``.

    Checked: ``model_type``, ``in_dim``, ``out_dim`` and ``patch_size`` (what decides the task, the
    VAE latent channels and the I2V conditioning). Widths and depths are not compared, so tiny test
    checkpoints pass.
    """
    expected = spec.dit
    wrong = [
        f"{name}={getattr(cfg, name)!r} (expected {getattr(expected, name)!r})"
        for name in ("model_type", "in_dim", "out_dim", "patch_size")
        if _as_comparable(getattr(cfg, name)) != _as_comparable(getattr(expected, name))
    ]
    if wrong:
        raise CheckpointError(
            f"{source}: this DiT does not belong to task {spec.task}: " + ", ".join(wrong)
            + f". Check that the checkpoint folder is {spec.hf_repo} (or {spec.hf_diffusers_repo})."
        )


def _as_comparable(value: Any) -> Any:
    """Lists and tuples compare equal by content (JSON gives lists, dataclasses hold tuples)."""
    return tuple(value) if isinstance(value, (list, tuple)) else value
