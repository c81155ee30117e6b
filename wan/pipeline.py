"""One generation pipeline for every Wan 2.2 task, as a chain of small stages.

    plan              validate and resolve every input (no heavy work)      -> GenerationRequest
    encode_text       umT5 on prompt and negative prompt, zero-padded        -> 2 x [1, text_len, text_dim]
    prepare_latents   seeded noise + image conditioning                      -> LatentInputs
    denoise           per-step expert choice (MoE), CFG, solver, callback    -> latents [1, z, F_lat, h, w]
    decode            VAE decode                                             -> video (3, F, H, W) in [-1, 1]

Conditioning, as in the official release (``wan/image2video.py``, ``wan/textimage2video.py``):

* T2V-A14B: none. I2V-A14B: the image, bicubic-resized (aspect kept up to rounding) to the size whose
  area is ``W*H`` of the requested size and whose sides are multiples of 16, is VAE-encoded as the
  first frame of an otherwise black ``frame_num`` video; ``y = [mask (4 ch, 1 on latent frame 0),
  image latent (16 ch)]`` is concatenated to the 16 noise channels (36 = the DiT's ``in_dim``).
  First-last frame (``last_image``, as diffusers' ``WanImageToVideoPipeline(last_image=...)`` for
  Wan 2.2): the last image is stretched to the output size with PIL LANCZOS (no crop) and the encoded
  video is ``[first, black x (F - 2), last]``; the pixel-frame mask is 1 on frames 0 and F - 1, so in
  latent space it is 1 on all 4 sub-frames of latent frame 0 and on the 4th sub-frame (mask channel
  3) of the last latent frame, the one that stands for pixel frame F - 1.
* TI2V-5B with an image: LANCZOS resize + center crop to the multiple-of-32 size of area <= ``W*H``
  closest in aspect; its one-frame latent replaces latent frame 0 before and after every solver step,
  and the tokens of that frame get timestep 0. Without an image: plain T2V at exactly ``size``.
* Continuation (``wan.continuation``): an I2V-A14B / TI2V-5B run whose image is the parent clip's last
  frame (conditioned as above); with ``color_reference`` the decoded frames go through
  ``wan.continuation.match_colors(video, color_reference, color_match)`` before they are returned.

Mixture of experts (A14B): the high-noise expert runs while the integer timestep ``t >= boundary *
1000`` (875 T2V / 900 I2V), then the low-noise expert, each with its own guidance. Memory profiles
(``offload``, see ``wan.offload``): ``"none"`` everything resident; ``"expert"`` (default on CUDA, the
old ``offload=True``) the experts' weights live on the CPU (pinned on CUDA) and only the active expert
is copied to the compute device; timesteps only decrease, so one switch per run; ``"block"`` the DiT
blocks stream through the device ``offload_blocks`` at a time with prefetch on a side CUDA stream,
and the VAE is on the device only while it encodes/decodes.

Noise: ``torch.randn((z, F_lat, h, w), float32)`` from a CPU ``torch.Generator`` seeded with ``seed``
(the official code draws the same way on a CUDA generator; a CPU generator makes a seed reproduce on
any device). CFG is two separate forward passes per step: ``uncond + g * (cond - uncond)``.

Step cache (``request.cache``, ``wan.stepcache``): each branch's forward may return ``x + r`` (the
residual of its last computed forward) instead of running the DiT; ``last_run.forwards`` records,
per step and branch, whether the forward ran or was reused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import GenerationCancelled, InputError
from .lora import apply_loras, remove_loras
from .offload import DEFAULT_OFFLOAD_BLOCKS, BlockOffloader, ExpertOffloader, ModuleShuttle, make_offloader, resolve_profile
from .request import GenerationRequest, RequestPolicy, make_request
from .schedulers import make_scheduler
from .stepcache import BRANCHES, StepCacheRun

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .configs import ModelSpec
    from .loading import Components

__all__ = [
    "Callback",
    "DecodeCallback",
    "BlockOffloader",
    "ExpertOffloader",
    "GenerationCancelled",
    "GenerationError",
    "GenerationRequest",
    "InputError",
    "LatentInputs",
    "RunRecord",
    "StepForwards",
    "WanVideoPipeline",
    "load_pipeline",
]

GenerationError = InputError  # older name of the one input-error type

# callback(step 1-based, total steps, expert name, latents [1, z, F_lat, h, w]) -> False to cancel
Callback = Callable[[int, int, str, Tensor], "bool | None"]
# decode_callback(latent frames decoded so far, latent frames) -> False to cancel
DecodeCallback = Callable[[int, int], "bool | None"]


# ----------------------------------------------------------------------------------- images


def _load_image(image: Any) -> PILImage.Image:
    """The request's image (a path or a PIL image, already validated by ``make_request``) as RGB."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return im.convert("RGB")
    return image.convert("RGB")


def _ti2v_image(image: PILImage.Image, size: tuple[int, int]) -> PILImage.Image:
    """TI2V-5B: LANCZOS resize to cover ``size``, then center crop to it (official)."""
    from PIL import Image

    ow, oh = size
    scale = max(ow / image.width, oh / image.height)
    resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    left, top = (resized.width - ow) // 2, (resized.height - oh) // 2
    return resized.crop((left, top, left + ow, top + oh))


def _last_frame_image(image: PILImage.Image, size: tuple[int, int]) -> PILImage.Image:
    """I2V-A14B ``last_image``: PIL LANCZOS stretch to ``size`` (no crop), as diffusers' VideoProcessor."""
    from PIL import Image

    return image if image.size == tuple(size) else image.resize(tuple(size), Image.LANCZOS)


def _image_tensor(image: PILImage.Image) -> Tensor:
    """RGB PIL image -> float32 ``[3, H, W]`` in [-1, 1] (``x / 255``, then ``(x - 0.5) / 0.5``)."""
    arr = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
    x = arr.permute(2, 0, 1).to(torch.float32).div(255)
    return x.sub(0.5).div(0.5)


# ------------------------------------------------------------------------------------ pipeline


@dataclass
class LatentInputs:
    """Output of ``prepare_latents`` (all on the compute device, float32).

    latents:     ``[1, z, F_lat, h, w]`` initial latents (noise; frame 0 = image latent for TI2V+image).
    y:           I2V-A14B: ``[1, 4 + z, F_lat, h, w]`` (mask, image-video latent), else None.
    first_frame: TI2V+image: ``[1, z, 1, h, w]`` image latent re-imposed on frame 0, else None.
    mask:        TI2V+image: ``[1, 1, F_lat, h, w]``, 0 on latent frame 0 and 1 elsewhere, else None.
    image:       with an image: the first frame as conditioned, after the task's size policy,
                 float32 ``[3, H, W]`` in [-1, 1] on the CPU (what the VAE encoded as frame 0), else None.
    """

    latents: Tensor
    y: Tensor | None = None
    first_frame: Tensor | None = None
    mask: Tensor | None = None
    image: Tensor | None = None


@dataclass(frozen=True)
class StepForwards:
    """The DiT forwards of one step: per CFG branch ``"run"`` (the model ran), ``"reused"`` (the step
    cache returned ``x + r``), or None (the branch was not evaluated: CFG off, guidance 1 or 0)."""

    cond: str | None = None
    uncond: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """What the last ``generate`` did: the request (with the seed used), the integer timesteps, the
    expert of each step, and how many expert copies to the device / expert switches it took; the memory
    profile it ran with and the most bytes of DiT weights that profile held on the device during it
    (the offloader's ledger)."""

    request: GenerationRequest
    timesteps: tuple[int, ...]
    experts: tuple[str, ...]
    loads: int
    switches: int
    completed: bool = True
    guidance: tuple[float, ...] = ()                    # CFG scale of each step
    lora_strengths: tuple[tuple[float, ...], ...] = ()  # strength of each LoRA at each step
    profile: str = ""                                   # memory profile: none / expert / block
    resident_peak_bytes: int = 0                        # ledger maximum over the denoise
    attention: tuple[str, ...] = ()                     # concrete attention backend of each step
    compile_graphs: int = 0                             # graphs torch.compile made during this run
    compile_seconds: float = 0.0                        # wall time of the block calls that compiled
    forwards: tuple[StepForwards, ...] = ()             # per step: each branch's forward ran or was reused

    @property
    def forwards_run(self) -> int:
        """DiT forwards the run computed."""
        return sum((f.cond == "run") + (f.uncond == "run") for f in self.forwards)

    @property
    def forwards_reused(self) -> int:
        """DiT forwards the step cache replaced by its cached residual."""
        return sum((f.cond == "reused") + (f.uncond == "reused") for f in self.forwards)
    condition_image: Tensor | None = None               # LatentInputs.image: the conditioning first frame


class WanVideoPipeline:
    """Text/image-to-video for one task; build with ``load_pipeline``.

    ``device`` runs the DiT and the VAE; the text encoder runs on the CPU with ``t5_cpu`` and is
    otherwise moved to the device for encoding (and back unless the profile is ``none``). ``offload``
    is a memory profile name (``"none"``, ``"expert"``, ``"block"``; see ``wan.offload``) or the old
    boolean; ``profile`` is the resolved name, ``offload`` stays a boolean (profile != ``none``) for
    older callers. ``last_run`` describes the most recent run (seed used, timesteps, experts,
    profile, ledger peak). ``policy`` is the default request policy (``any_size``) of ``plan``.
    """

    def __init__(
        self,
        components: Components,
        *,
        device: str | torch.device,
        offload: bool | str | None,
        t5_cpu: bool = False,
        any_size: bool = False,
        offload_blocks: int = DEFAULT_OFFLOAD_BLOCKS,
        compile: bool | str | None = None,
    ) -> None:
        from .compile import BlockCompiler, compile_backend_name

        self.spec: ModelSpec = components.spec
        self.device = torch.device(device)
        self.profile = resolve_profile(offload, self.device)
        self.offload = self.profile != "none"
        self.offload_blocks = int(offload_blocks)
        self.t5_cpu = bool(t5_cpu)
        self.policy = RequestPolicy(any_size=bool(any_size))
        missing = [e for e in self.spec.experts if e not in components.experts]
        if missing:
            raise ValueError(f"{self.spec.task} needs experts {self.spec.experts}; missing {missing}")
        self.experts: ExpertOffloader | BlockOffloader = make_offloader(
            {name: components.experts[name].eval() for name in self.spec.experts}, self.device, self.profile,
            blocks=self.offload_blocks,
        )
        self.vae = components.vae.eval()
        # block: the VAE is copied to the device only to encode/decode; otherwise it stays there
        self.vae_shuttle = ModuleShuttle(self.vae, self.device, resident=self.profile != "block")
        self.text_encoder = components.text_encoder
        text_device = "cpu" if (self.t5_cpu or self.offload) else self.device
        self.text_encoder.to(text_device)
        self.last_run: RunRecord | None = None
        self.parallel: Any = None  # wan.distributed.ParallelState in a multi-process run (load_pipeline)
        # regional compile (wan.compile): one compiled block function shared by every block of every expert
        backend = compile_backend_name(compile, self.profile)
        self.compiler: BlockCompiler | None = None if backend is None else BlockCompiler(backend)
        if self.compiler is not None:
            for model in self.experts.experts.values():
                self.compiler.attach(model)

    # -- public

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the DiT weights (the text context is cast to it)."""
        model = next(iter(self.experts.experts.values()))
        return model.text_embedding[0].weight.dtype

    def plan(self, prompt: Any = "", **settings: Any) -> GenerationRequest:
        """A validated ``GenerationRequest`` for this pipeline's task (``wan.request.make_request``;
        the pipeline's ``any_size`` is the default policy). No model runs."""
        settings.setdefault("policy", self.policy)
        request = make_request(self.spec.task, prompt, **settings)
        self.attention_plan(request)
        return request

    def attention_plan(self, request: GenerationRequest) -> dict[str, str]:
        """``request.step_attention`` names -> the concrete backend each runs on this pipeline's device.

        Raises ``InputError("attention")`` naming the backend and why it cannot run here (not
        installed, needs CUDA sm80+, ...), before any model work.
        """
        from .modules.attention import AttentionBackendError

        model = next(iter(self.experts.experts.values()))
        sage_run = request.attention.startswith("sage")
        names = dict.fromkeys(request.step_attention(i) for i in range(request.sampling_steps))
        try:
            return {
                name: model.attention_backend(name, self.device, full_precision=sage_run and name == "auto")
                for name in names
            }
        except (AttentionBackendError, ValueError) as e:
            raise InputError("attention", f"{e} (this pipeline runs on {self.device})") from None

    @torch.no_grad()
    def generate(
        self,
        request: GenerationRequest | str = "",
        *,
        callback: Callback | None = None,
        decode_callback: DecodeCallback | None = None,
        **settings: Any,
    ) -> Tensor:
        """Runs a request -> float32 video ``(3, frame_num, H, W)`` in [-1, 1] on the CPU.

        ``request`` is a ``GenerationRequest`` (from ``plan``), or, for scripts, the prompt with the
        settings as keywords (``image``, ``last_image``, ``negative_prompt``, ``size``, ``frame_num``, ``fps``,
        ``sampling_steps``, ``shift``, ``guide_scale``, ``sample_solver``, ``seed``, ``any_size``, ``attention``,
        ``cache``),
        validated by ``plan``. Defaults come from the task's ``ModelSpec``. ``size`` is ``(width,
        height)``; with an image it sets the output *area*. ``guide_scale`` is a number, a per-expert
        mapping, or the official ``(low_noise, high_noise)`` pair. ``last_image`` (I2V-A14B, with
        ``image``) makes a first-last frame video: ``generate(prompt, image=first, last_image=last)``;
        it is stretched to the output size set by ``image`` (PIL LANCZOS, as diffusers). ``cache`` (off by default)
        skips DiT forwards with a step cache: ``"magcache"``, ``"easycache"`` or a ``wan.StepCache``
        (``wan.stepcache``; ``last_run.forwards`` says which forwards ran). ``seed=-1`` draws one (see
        ``last_run.request.seed``). ``attention`` names the attention backend (``"sage:1,1"``: Sage except
        the first and last step; see ``wan.modules.attention``). Raises ``InputError`` for bad input (also an
        attention backend this device cannot run) before any model runs and
        ``GenerationCancelled`` when ``callback`` (after each step) or ``decode_callback`` (after each
        decoded latent frame) returns False.
        """
        for name, fn in (("callback", callback), ("decode_callback", decode_callback)):
            if fn is not None and not callable(fn):
                raise InputError(name, f"must be callable or None; got {type(fn).__name__}")
        if isinstance(request, GenerationRequest):
            if settings:
                raise InputError("settings", f"give a request or keyword settings, not both; got {sorted(settings)}")
            if request.task != self.spec.task:
                raise InputError("task", f"the request is for {request.task} but this pipeline runs {self.spec.task}")
            self.attention_plan(request)
        else:
            request = self.plan(request, **settings)
        if self.parallel is not None:  # every rank runs rank 0's request (and so its seed)
            request = self._parallel_request(request)
        self._load_loras(request)  # parsed (cached) and fitted to the experts before any model work
        context, context_null = self.encode_text(request.prompt, request.effective_negative_prompt)
        inputs = self.prepare_latents(request)
        if self.parallel is not None:
            self.parallel.broadcast_tensors(inputs.latents, inputs.y, inputs.first_frame, inputs.mask)
        latents = self.denoise(request, inputs, context, context_null, callback)
        if self.parallel is not None and not self.parallel.is_main:
            return None  # type: ignore[return-value]  # the VAE decodes on rank 0 only
        video = self.decode(latents, decode_callback)
        if request.color_reference is not None and request.color_match > 0.0:
            from .continuation import match_colors

            video = match_colors(video, request.color_reference, request.color_match)
        return video

    def continue_video(
        self,
        parent: Tensor | str | Path,
        prompt: str = "",
        *,
        overlap: int | None = None,
        color_match: float | None = None,
        callback: Callback | None = None,
        decode_callback: DecodeCallback | None = None,
        **settings: Any,
    ) -> Tensor:
        """Continues ``parent`` (a ``(3, F, H, W)`` video in [-1, 1] or an mp4) from its last frame -> the
        new clip ``(3, frame_num, H, W)``: ``wan.continuation.continue_request`` (the last frame as image,
        the parent's size when this task accepts it, overlap 1, colour match 0.5 by default) then ``generate``.
        """
        from .continuation import continue_request

        request = continue_request(self, parent, prompt, overlap=overlap, color_match=color_match, **settings)
        return self.generate(request, callback=callback, decode_callback=decode_callback)

    def _parallel_request(self, request: GenerationRequest) -> GenerationRequest:
        """Rank 0's request on every rank; LoRAs are refused with a sharded DiT (they patch weights)."""
        request = self.parallel.broadcast_object(request)
        if request.loras and self.parallel.config.dit_fsdp:
            raise InputError("loras", "LoRAs cannot be applied to an FSDP-sharded DiT; run without --dit_fsdp")
        return request

    # -- stages

    def encode_text(self, prompt: str, negative_prompt: str) -> tuple[Tensor, Tensor]:
        """-> ``(context, context_null)``, each ``[1, text_len, text_dim]`` zero-padded, on the device, DiT dtype."""
        from .modules.t5 import pad_context

        encoder = self.text_encoder
        move = not self.t5_cpu and encoder.device != self.device
        if move:
            encoder.to(self.device)
        try:
            cond, uncond = encoder.encode([prompt, negative_prompt])
        finally:
            if move and self.offload:
                encoder.to("cpu")
        text_len = self.spec.dit.text_len
        context = pad_context([cond], text_len).to(self.device, self.dtype)
        context_null = pad_context([uncond], text_len).to(self.device, self.dtype)
        return context, context_null

    def prepare_latents(self, request: GenerationRequest) -> LatentInputs:
        """Seeded noise and the task's image conditioning (see the module docstring)."""
        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        noise = torch.randn(request.latent_shape, dtype=torch.float32, generator=generator)
        latents = noise.unsqueeze(0).to(self.device)
        if request.image is None:
            return LatentInputs(latents=latents)
        z_dim, f_lat, h_lat, w_lat = request.latent_shape
        image = _load_image(request.image)
        if not self.spec.moe:  # TI2V-5B: resized and cropped to the output size as a PIL image
            image = _ti2v_image(image, request.output_size)
        img = _image_tensor(image)  # [3, H_img, W_img]
        if self.spec.moe:
            # I2V-A14B: bicubic stretch (CPU, official), then encode image + black frames as one video
            img = F.interpolate(img[None], size=(request.height, request.width), mode="bicubic")[0]
            condition = img.clone()
            video = torch.zeros(1, 3, request.frame_num, request.height, request.width, dtype=torch.float32)
            video[0, :, 0] = img
            if request.last_image is not None:  # first-last frame: [first, black..., last]
                last = _last_frame_image(_load_image(request.last_image), request.output_size)
                video[0, :, -1] = _image_tensor(last)
            with self.vae_shuttle.on_device():
                image_latent = self.vae.encode(video.to(self.device)).float()  # [1, z, F_lat, h, w]
            mask = torch.zeros(1, self.spec.vae_stride[0], f_lat, h_lat, w_lat, device=self.device)
            mask[:, :, 0] = 1.0  # the 4 sub-frames of latent frame 0 are the given image
            if request.last_image is not None:
                mask[:, -1, -1] = 1.0  # pixel frame F - 1 is the last sub-frame of the last latent frame
            return LatentInputs(latents=latents, y=torch.cat([mask, image_latent], dim=1), image=condition)
        # TI2V-5B: one-frame latent replaces latent frame 0
        with self.vae_shuttle.on_device():
            first = self.vae.encode(img[None, :, None].to(self.device)).float()  # [1, z, 1, h, w]
        mask = torch.ones(1, 1, f_lat, h_lat, w_lat, device=self.device)
        mask[:, :, 0] = 0.0
        latents = (1.0 - mask) * first + mask * latents
        return LatentInputs(latents=latents, first_frame=first, mask=mask, image=img.clone())

    def denoise(
        self,
        request: GenerationRequest,
        inputs: LatentInputs,
        context: Tensor,
        context_null: Tensor,
        callback: Callback | None = None,
    ) -> Tensor:
        """Runs the solver -> final latents ``[1, z, F_lat, h, w]`` float32 (frame 0 re-imposed for TI2V)."""
        scheduler = make_scheduler(request.sample_solver, self.spec.num_train_timesteps)
        scheduler.set_timesteps(request.sampling_steps, request.shift, schedule=request.schedule)
        lightning = request.schedule == "lightning"
        timesteps = [float(t) if lightning else int(t) for t in scheduler.timesteps.tolist()]
        total = len(timesteps)
        loras = self._load_loras(request)
        backends = self.attention_plan(request)
        latents = inputs.latents
        token_mask = None
        if inputs.mask is not None:
            p_h, p_w = self.spec.patch_size[1:]
            token_mask = inputs.mask[0, 0, :, ::p_h, ::p_w].flatten()[None]  # [1, L], 0 on frame-0 tokens
        used: list[str] = []
        guidance: list[float] = []
        strengths: list[tuple[float, ...]] = []
        attention: list[str] = []
        compiler = self.compiler
        graphs0, compile_s0 = (compiler.graphs, compiler.seconds) if compiler is not None else (0, 0.0)
        loads0, switches0 = self.experts.loads, self.experts.switches
        self.experts.ledger.reset_peak()
        completed = False
        contexts: tuple[Any, Any] = (context, context_null)
        contexts_of = ""  # expert whose text-side cache `contexts` holds ("" = raw tensors)
        cache = None if request.cache is None else StepCacheRun(
            request.cache, task=request.task, has_image=request.image is not None,
            experts=[request.step_phase(i, t).expert for i, t in enumerate(timesteps)],
        )
        forwards: list[dict[str, str]] = []
        try:
            for i, t in enumerate(timesteps):
                phase = request.step_phase(i, t)
                name = phase.expert
                model = self.experts.activate(name)
                if loras:
                    self.experts.park()  # block: LoRA tensor swaps happen on the host copies (no-op otherwise)
                step_loras = [(lora, spec.strength_for(name) * phase.lora_scale) for spec, lora in loras]
                changed = bool(loras) and apply_loras(model, step_loras)
                if (contexts_of != name or changed) and hasattr(model, "encode_context"):
                    # the text side of cross-attention is constant while expert and LoRAs are: compute it once
                    contexts = (model.encode_context(context), model.encode_context(context_null))
                    contexts_of = name
                t_tensor = torch.tensor([t], dtype=torch.float64 if lightning else torch.int64, device=self.device)
                t_model: Tensor = t_tensor if token_mask is None else token_mask * t_tensor
                backend = backends[request.step_attention(i)]
                forwards.append({})
                branch_forward = _BranchForward(model, contexts, cache, i, forwards[-1])
                guided = self._guided_velocity
                if self.parallel is not None and self.parallel.cfg_group is not None:
                    guided = self.parallel.guided_velocity  # cond and uncond on two rank groups
                velocity = guided(
                    branch_forward, latents, t_model, contexts[0], contexts[1], inputs.y, phase.guide_scale,
                    attention=backend,
                )
                latents = scheduler.step(velocity, t, latents)
                if inputs.first_frame is not None and inputs.mask is not None:
                    latents = (1.0 - inputs.mask) * inputs.first_frame + inputs.mask * latents
                used.append(name)
                guidance.append(phase.guide_scale)
                strengths.append(tuple(s for _, s in step_loras))
                attention.append(backend)
                if self._stop_after_step(callback, i + 1, total, name, latents):
                    raise GenerationCancelled(f"cancelled by the callback after step {i + 1}/{total}")
            completed = True
        finally:
            if self.offload:
                self.experts.release()  # before remove_loras: the swaps are then restored on the host copies
            if loras:
                for expert in self.experts.experts.values():
                    remove_loras(expert)  # base weights exactly as loaded (the LoRAs never touch them)
            self.last_run = RunRecord(
                request=request,
                timesteps=tuple(timesteps),
                experts=tuple(used),
                loads=self.experts.loads - loads0,
                switches=self.experts.switches - switches0,
                completed=completed,
                guidance=tuple(guidance),
                lora_strengths=tuple(strengths),
                profile=self.profile,
                resident_peak_bytes=self.experts.ledger.peak,
                attention=tuple(attention),
                compile_graphs=compiler.graphs - graphs0 if compiler is not None else 0,
                compile_seconds=compiler.seconds - compile_s0 if compiler is not None else 0.0,
                forwards=tuple(StepForwards(**f) for f in forwards),
                condition_image=inputs.image,
            )
        return latents

    def _stop_after_step(self, callback: Callback | None, step: int, total: int, name: str, latents: Tensor) -> bool:
        """Runs the step callback; in a parallel run every rank learns whether any rank stops."""
        if self.parallel is None:
            return callback is not None and callback(step, total, name, latents) is False
        try:
            stop = callback is not None and callback(step, total, name, latents) is False
        except GenerationCancelled:
            stop = True
        return self.parallel.agree_stop(stop)

    def _load_loras(self, request: GenerationRequest) -> list[tuple[Any, Any]]:
        """``(LoraSpec, NormalizedLora)`` per LoRA of the request, checked against every expert it
        touches (before any step runs); a LoRA that does not fit is an ``InputError("loras")``."""
        from .lora import LoraError, check_lora_fits

        out = []
        for spec in request.loras:
            lora = spec.load()
            for expert, model in self.experts.experts.items():
                if spec.strength_for(expert) != 0.0:
                    try:
                        check_lora_fits(lora, model)
                    except LoraError as e:
                        raise InputError("loras", str(e)) from None
            out.append((spec, lora))
        return out

    @staticmethod
    def _guided_velocity(
        model: nn.Module,
        latents: Tensor,
        t: Tensor,
        context: Any,
        context_null: Any,
        y: Tensor | None,
        scale: float,
        *,
        attention: str | None = None,
    ) -> Tensor:
        """Classifier-free guidance with two forward passes: ``uncond + scale * (cond - uncond)``.

        ``context``/``context_null`` are the padded embeddings, or the model's cached text side of them.

        ``scale == 1`` needs only the conditional pass, ``scale == 0`` only the unconditional one.
        ``attention`` is the concrete attention backend of the step (None: the model's own choice).
        """
        kw = {} if attention is None else {"attention": attention}
        if scale == 1.0:
            return model(latents, t, context, y=y, **kw)
        uncond = model(latents, t, context_null, y=y, **kw)
        if scale == 0.0:
            return uncond
        cond = model(latents, t, context, y=y, **kw)
        return uncond + scale * (cond - uncond)

    def decode(self, latents: Tensor, callback: DecodeCallback | None = None) -> Tensor:
        """Latents ``[1, z, F_lat, h, w]`` -> float32 video ``(3, F, H, W)`` in [-1, 1] on the CPU.

        Decodes one latent frame at a time; ``callback(k, F_lat)`` runs after each, and returning False
        stops the decode with ``GenerationCancelled`` (the VAE cache is freed).
        """
        total = latents.shape[2]
        chunks: list[Tensor] = []
        with self.vae_shuttle.on_device():  # block profile: the VAE is on the device only while decoding
            stream = self.vae.decode_chunks(latents)
            try:
                for index, chunk in enumerate(stream):
                    chunks.append(chunk[0].to("cpu", torch.float32))
                    if callback is not None and callback(index + 1, total) is False:
                        raise GenerationCancelled(f"cancelled while decoding, after latent frame {index + 1}/{total}")
            finally:
                stream.close()
        return torch.cat(chunks, dim=1)


class _BranchForward:
    """The model as ``_guided_velocity`` calls it, for one step: tells the CFG branch by the context
    object (``contexts[0]`` cond, ``contexts[1]`` uncond), records whether each forward ran, and goes
    through the run's step cache (``wan.stepcache``) when the request has one."""

    def __init__(self, model: nn.Module, contexts: tuple[Any, Any], cache: StepCacheRun | None, step: int,
                 log: dict[str, str]) -> None:
        self.model, self.contexts, self.cache, self.step, self.log = model, contexts, cache, step, log

    def __call__(self, x: Tensor, t: Tensor, context: Any, y: Tensor | None = None, **kw: Any) -> Tensor:
        branch = next((b for b, c in zip(BRANCHES, self.contexts, strict=True) if context is c), None)
        if branch is None:  # not one of the run's contexts: a plain forward
            return self.model(x, t, context, y=y, **kw)
        if self.cache is None:
            self.log[branch] = "run"
            return self.model(x, t, context, y=y, **kw)
        out = self.cache.forward(self.step, branch, x, lambda: self.model(x, t, context, y=y, **kw))
        self.log[branch] = self.cache.log[self.step][branch]
        return out


# ------------------------------------------------------------------------------------- loading


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _floating_dtype(value: Any, name: str) -> torch.dtype:
    """``value`` (a dtype or its name, see ``loading.resolve_dtype``) as a floating ``torch.dtype``."""
    from .loading import resolve_dtype

    try:
        dtype: torch.dtype | None = resolve_dtype(value)
    except ValueError:
        dtype = None
    if dtype is None or not dtype.is_floating_point:
        raise ValueError(
            f"{name} must be a floating torch.dtype (torch.bfloat16, torch.float16, torch.float32) or its name "
            f"('bfloat16', 'float16', 'float32'); got {value!r}"
        )
    return dtype


def load_pipeline(
    task: str,
    ckpt_dir: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    offload: bool | str | None = None,
    *,
    t5_cpu: bool = False,
    t5_dtype: torch.dtype | str | None = None,
    any_size: bool = False,
    offload_blocks: int = DEFAULT_OFFLOAD_BLOCKS,
    quantize: str | None = None,
    t5_quantize: str | None = None,
    dit_files: Any = None,
    vae_tiling: bool | None = None,
    parallel: Any = None,
    t5_file: str | Path | None = None,
    compile: bool | str = False,
) -> WanVideoPipeline:
    """Loads ``task`` from ``ckpt_dir`` (official or Diffusers layout) into a ``WanVideoPipeline``.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` (of the DiT weights) to bfloat16
    on CUDA and float32 on CPU. ``offload`` is the memory profile (``wan.offload``): ``"none"``
    (everything resident), ``"expert"`` (one expert on the device at a time, text encoder back on the
    CPU after use) or ``"block"`` (DiT blocks streamed ``offload_blocks`` at a time, default 2, with
    prefetch; VAE on the device only to encode/decode); the old booleans still work (True ->
    ``"expert"``, False -> ``"none"``); None: ``"expert"`` on CUDA, ``"none"`` on CPU. The profile's
    weights are the loaded tensors themselves (pinned on CUDA in place of the pageable copy): no second
    host copy. ``t5_cpu`` keeps the text encoder on the CPU.
    ``dtype``/``t5_dtype`` may be given as names (``"bfloat16"``, ``"fp16"``, ...). ``t5_dtype`` (of the
    umT5 weights) defaults to float32 when ``dtype`` is float32 and to bfloat16 otherwise (umT5
    overflows in float16; the official encoder is bf16). The DiT parameters that the forward computes
    in float32 anyway (``is_float32_parameter``) are kept in float32 whatever ``dtype`` is.
    ``any_size`` accepts any width/height that is a multiple of the task's ``size_multiple``.
    ``quantize="fp8"`` stores the DiT block linears as float8_e4m3fn with per-channel scales
    (``wan.quant``; about half the bf16 weight bytes, dequantised per layer in the forward);
    ``t5_quantize="fp8"`` the same for the umT5 encoder. Ready scaled-fp8 DiT files (ComfyUI/Kijai
    ``*_fp8_scaled.safetensors``, LightX2V) load as stored: give them as ``dit_files`` (a path, or
    ``{"high_noise": path, "low_noise": path}`` for A14B; the expert folders then need only
    ``config.json``) or put them in the expert folder as its ``diffusion_pytorch_model.safetensors``.
    ``vae_tiling`` decodes/encodes in overlapping 256-px tiles (stride 192, one latent frame at a time,
    so progress and cancel still work): on by default in the ``"block"`` profile (the low-memory one),
    off otherwise; ``pipe.vae.enable_tiling(...)`` sets other sizes.
    ``parallel`` (a ``wan.distributed.ParallelConfig``, on every rank of a torchrun world; see
    ``wan.distributed``): Ulysses sequence parallel, CFG-parallel, FSDP of the DiT / umT5. ``device``
    then defaults to ``cuda:LOCAL_RANK`` (CPU: gloo ranks); ``generate`` returns the video on rank 0
    and None on the others. FSDP needs the ``"none"`` profile and no fp8. ``t5_file``: the umT5 weights
    from this file (the official bf16 ``.pth``, or a ready fp8 one: LightX2V
    ``models_t5_umt5-xxl-enc-fp8.pth``, ComfyUI ``umt5_xxl_fp8_e4m3fn_scaled.safetensors``; these are
    also found in an official folder that lacks the bf16 file).
    ``compile=True`` compiles the DiT block with ``torch.compile`` (inductor; a backend name such as
    ``"aot_eager"`` picks another): one compiled region shared by every block of every expert, static
    shapes, compiled on the first step of each new size (``pipe.last_run.compile_seconds``; see
    ``wan.compile``). Not with ``offload="block"`` (ValueError).
    """
    from .configs import get_spec
    from .loading import load_components

    spec = get_spec(task)
    state = None
    if parallel is not None:  # wan.distributed: check the layout against the options, join the group
        from .distributed import start_parallel

        state, device, offload = start_parallel(parallel, device=device, offload=offload, quantize=quantize,
                                                dit_files=dit_files, t5_cpu=t5_cpu, t5_quantize=t5_quantize)  # fmt: skip
    dev = _default_device() if device is None else torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    dtype = _floating_dtype(dtype, "dtype")
    if t5_dtype is None:
        t5_dtype = dtype if dtype == torch.float32 else torch.bfloat16
    t5_dtype = _floating_dtype(t5_dtype, "t5_dtype")
    profile = resolve_profile(offload, dev)
    from .compile import compile_backend_name

    compile_backend_name(compile, profile)  # a bad value fails before any weights load
    if isinstance(offload_blocks, bool) or not isinstance(offload_blocks, int) or offload_blocks < 1:
        raise ValueError(f"offload_blocks must be an integer >= 1; got {offload_blocks!r}")
    components = load_components(
        spec.task, ckpt_dir, dtype=dtype, device="cpu", t5_dtype=t5_dtype, keep_float32=True,
        quantize=quantize, t5_quantize=t5_quantize, dit_files=dit_files, t5_file=t5_file,
    )
    pipe = WanVideoPipeline(
        components, device=dev, offload=profile, t5_cpu=t5_cpu, any_size=any_size, offload_blocks=offload_blocks,
        compile=compile,
    )
    if profile == "block" if vae_tiling is None else vae_tiling:
        pipe.vae.enable_tiling()
    if state is not None:
        state.attach(pipe)  # head check, Ulysses hooks, FSDP shards; pipe.parallel = state
    return pipe
