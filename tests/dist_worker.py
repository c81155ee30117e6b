"""One rank of the distributed tests (run by torchrun from tests/test_distributed.py; not collected).

    torchrun --nproc_per_node N tests/dist_worker.py PLAN.json

``PLAN.json``: ``{"out": dir, "ckpt": {task: path}, "cases": [{"name", "task", "parallel":
{ParallelConfig fields}, "settings": {generate keywords}}], "model_cases": [...]}``. Every rank loads
each case's pipeline with ``parallel=ParallelConfig(**case["parallel"])`` and generates; rank 0 writes
``<out>/<name>.pt`` (the video). Rank 1 plans with another seed on purpose: the request (and its
seed) must come from rank 0. ``model_cases`` run ``WanModel.forward`` directly with per-token
timesteps (both the run-length and the gather modulation path) and write ``<name>.pt`` from rank 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def run_case(case: dict, plan: dict) -> None:
    import wan
    from wan.distributed import ParallelConfig

    rank = dist.get_rank()
    config = ParallelConfig(**case["parallel"])
    load = {"dtype": "float32", **case.get("load", {})}
    pipe = wan.load_pipeline(case["task"], plan["ckpt"][case["task"]], device="cpu", any_size=True,
                             parallel=config, **load)  # fmt: skip
    check_layout(pipe, config)
    settings = dict(case["settings"])
    if rank != 0:
        settings["seed"] = settings["seed"] + 1000 + rank  # overridden by rank 0's request
    steps: list[int] = []
    if "cancel_at" in case:  # rank 0's callback stops the run: every rank must stop after that step
        from wan.errors import GenerationCancelled

        def stop(step: int, *_: object) -> bool:
            steps.append(step)
            return not (rank == 0 and step == case["cancel_at"])

        try:
            pipe.generate(pipe.plan(**settings), callback=stop)
        except GenerationCancelled:
            (Path(plan["out"]) / f"{case['name']}.rank{rank}").write_text(json.dumps(steps))
        return
    video = pipe.generate(pipe.plan(**settings), callback=lambda step, *_: steps.append(step))
    assert pipe.last_run is not None and pipe.last_run.request.seed == case["settings"]["seed"], pipe.last_run
    assert steps == list(range(1, settings["sampling_steps"] + 1)), steps
    if case.get("load", {}).get("offload") in ("expert", "block") and pipe.spec.moe:
        assert pipe.last_run.switches == 1 and pipe.last_run.profile == case["load"]["offload"], pipe.last_run
    if rank == 0:
        torch.save(video, Path(plan["out"]) / f"{case['name']}.pt")
    else:
        assert video is None


def check_layout(pipe, config) -> None:
    """The layout asked for is the one in place: Ulysses hooks, DTensor shards, CFG pair."""
    from torch.distributed.tensor import DTensor

    state = pipe.parallel
    for model in pipe.experts.experts.values():
        sp = model.sequence_parallel
        assert (sp is None) == (config.ulysses_size == 1) and all(b.self_attn.sequence_parallel is sp for b in model.blocks)
        assert isinstance(model.blocks[0].ffn[0].weight, DTensor) == config.dit_fsdp
    assert isinstance(pipe.text_encoder.model.shared.weight, DTensor) == config.t5_fsdp
    assert (state.cfg_group is not None) == config.cfg_parallel


def run_model_case(case: dict, plan: dict) -> None:
    """WanModel forward with per-token t (frame-0 tokens at 0) split over the world."""
    import wan.modules.model as model_mod
    from wan.distributed import ParallelConfig, init_parallel
    from wan.loading import load_dit

    state = init_parallel(ParallelConfig(ulysses_size=dist.get_world_size()), "cpu")
    model = load_dit(Path(plan["ckpt"][case["task"]]) / case["folder"], dtype=torch.float32)
    model.set_sequence_parallel(state.sp)
    g = torch.Generator().manual_seed(0)
    c, f, h, w = case["shape"]
    x = torch.randn(1, c, f, h, w, generator=g)
    ctx = torch.randn(1, model.config.text_len, model.config.text_dim, generator=g)
    tokens = f * (h // 2) * (w // 2)
    t = torch.full((1, tokens), 700.0)
    t[:, : tokens // f] = 0.0
    model_mod.MAX_TIMESTEP_RUNS = case["max_runs"]
    with torch.no_grad():
        out = model(x, t, ctx)
    if dist.get_rank() == 0:
        torch.save(out, Path(plan["out"]) / f"{case['name']}.pt")


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    dist.init_process_group("gloo")
    try:
        for case in plan.get("model_cases", []):
            run_model_case(case, plan)
        for case in plan.get("cases", []):
            run_case(case, plan)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
