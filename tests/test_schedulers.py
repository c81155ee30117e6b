"""wan.schedulers against the official grid (hard-coded lists from the spec) and diffusers' solvers."""

from __future__ import annotations

import math

import diffusers
import numpy as np
import pytest
import torch

from wan.schedulers import (
    SOLVERS,
    FlowDPMSolverScheduler,
    FlowEulerScheduler,
    FlowUniPCScheduler,
    make_scheduler,
    official_sigmas,
    official_timesteps,
)

# research/diffusers-oracle.md §4: official 50 steps, shift 5.
OFFICIAL_50_SHIFT5 = [
    999, 995, 991, 987, 982, 978, 973, 968, 963, 957, 952, 946, 940, 934, 927, 920, 913, 906, 898, 890,
    882, 873, 863, 854, 843, 833, 821, 809, 796, 783, 768, 753, 737, 720, 701, 681, 660, 636, 611, 584,
    555, 522, 487, 448, 405, 356, 302, 241, 172, 92,
]  # fmt: skip
# research/official-wan22-spec.md §3: T2V-A14B defaults (40 steps, shift 12), boundary 875.
OFFICIAL_T2V_40_SHIFT12_HIGH = [
    999, 997, 995, 993, 990, 988, 985, 982, 979, 976, 972, 969, 965, 961, 956, 952, 947, 941, 936, 929,
    922, 915, 907, 898, 888, 877,
]  # fmt: skip
OFFICIAL_T2V_40_SHIFT12_LOW = [865, 852, 837, 819, 799, 776, 749, 717, 678, 631, 571, 492, 386, 235]

STEPS = (2, 4, 40, 50)
SHIFTS = (1.0, 5.0, 12.0)
LATENT_SHAPE = (1, 4, 3, 4, 4)  # [B, C, F, H, W], tiny


def _diffusers_unipc(steps: int, shift: float):
    sched = diffusers.UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        num_train_timesteps=1000,
        solver_order=2,
        solver_type="bh2",
        predict_x0=True,
        lower_order_final=True,
        final_sigmas_type="zero",
    )
    # research/diffusers-oracle.md §4: user sigmas on the official base grid reproduce the official timesteps.
    sched.set_timesteps(sigmas=np.linspace(0.999, 0, steps + 1)[:-1])
    sched.set_begin_index(0)
    return sched


def _diffusers_dpmpp(steps: int, shift: float):
    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        solver_order=2,
        prediction_type="flow_prediction",
        algorithm_type="dpmsolver++",
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
        use_flow_sigmas=True,
        flow_shift=1.0,
    )
    # DPMSolverMultistepScheduler.set_timesteps takes no custom sigmas and its flow grid starts at 0.999;
    # the official DPM++ grid is linspace(1, 0, N+1)[:N] shifted. Install that grid by hand (independent
    # of wan.schedulers: computed here with numpy, exactly as the official get_sampling_sigmas).
    sched.set_timesteps(steps)
    base = np.linspace(1, 0, steps + 1)[:steps]
    sig = shift * base / (1 + (shift - 1) * base)
    sched.sigmas = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
    sched.timesteps = torch.from_numpy((sig * 1000).astype(np.int64))
    sched.num_inference_steps = steps
    sched.set_begin_index(0)
    return sched


def _diffusers_euler(steps: int, shift: float):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    sched.set_timesteps(sigmas=np.linspace(0.999, 0, steps + 1)[:-1])
    return sched


def _fake_model(shape: tuple[int, ...]):
    """Deterministic flow prediction v(x, sigma): a fixed velocity plus a sample-dependent term."""
    gen = torch.Generator().manual_seed(1234)
    target = torch.randn(shape, generator=gen)
    noise = torch.randn(shape, generator=gen)

    def model(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return (noise - target) + 0.2 * torch.sin(3.0 * x) * (0.5 + sigma) + 0.05 * x * sigma

    return model, noise


def _run(sched, sigmas: torch.Tensor, timesteps: torch.Tensor, model, x: torch.Tensor, ours: bool) -> torch.Tensor:
    """Runs a whole trajectory; ``ours`` selects wan's step signature, else diffusers' (return_dict=False)."""
    for i, t in enumerate(timesteps):
        v = model(x, float(sigmas[i]))
        x = sched.step(v, t, x) if ours else sched.step(v, t, x, return_dict=False)[0]
    return x


# ----------------------------------------------------------------------------- grid


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("shift", SHIFTS)
def test_unipc_timesteps_match_diffusers_on_official_grid(steps: int, shift: float) -> None:
    ours = make_scheduler("unipc")
    ours.set_timesteps(steps, shift)
    ref = _diffusers_unipc(steps, shift)
    assert ours.timesteps.dtype == torch.int64 and ours.timesteps.shape == (steps,)
    assert ours.sigmas.dtype == torch.float32 and ours.sigmas.shape == (steps + 1,)
    assert ours.sigmas[-1].item() == 0.0
    assert torch.equal(ours.timesteps, ref.timesteps.to(torch.int64))
    torch.testing.assert_close(ours.sigmas, ref.sigmas.to(torch.float32), rtol=0, atol=1e-7)
    # Euler shares the UniPC grid.
    euler = make_scheduler("euler")
    euler.set_timesteps(steps, shift)
    assert torch.equal(euler.timesteps, ours.timesteps) and torch.equal(euler.sigmas, ours.sigmas)


def test_official_50_steps_shift5_list() -> None:
    sched = make_scheduler("unipc")
    sched.set_timesteps(50, 5.0)
    assert sched.timesteps.tolist() == OFFICIAL_50_SHIFT5
    assert official_timesteps(50, 5.0).tolist() == OFFICIAL_50_SHIFT5


def test_official_t2v_a14b_40_steps_shift12_expert_split() -> None:
    sched = make_scheduler("unipc")
    sched.set_timesteps(40, 12.0)
    ts = sched.timesteps.tolist()
    assert ts == OFFICIAL_T2V_40_SHIFT12_HIGH + OFFICIAL_T2V_40_SHIFT12_LOW
    boundary = 0.875 * 1000
    high = [t for t in ts if t >= boundary]
    low = [t for t in ts if t < boundary]
    assert (len(high), len(low)) == (26, 14)


def test_official_i2v_a14b_40_steps_shift5_expert_split() -> None:
    sched = make_scheduler("unipc")
    sched.set_timesteps(40, 5.0)
    ts = sched.timesteps.tolist()
    high = [t for t in ts if t >= 900]
    low = [t for t in ts if t < 900]
    assert (len(high), len(low)) == (15, 25)
    assert (high[0], high[-1], low[0], low[-1]) == (999, 902, 892, 113)


def test_official_sigmas_formulas() -> None:
    # UniPC/Euler: starts at the float32 sigma_max 0.999 (shifted), DPM++ at exactly 1.0 (t = 1000).
    sig = official_sigmas(4, 1.0, "unipc")
    np.testing.assert_allclose(sig, [0.9990000128746033 * k / 4 for k in (4, 3, 2, 1)], rtol=0, atol=1e-15)
    dpm = official_sigmas(4, 3.0, "dpm++")
    base = np.array([1.0, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(dpm, 3.0 * base / (1.0 + 2.0 * base), rtol=0, atol=1e-15)
    sched = make_scheduler("dpm++")
    sched.set_timesteps(4, 3.0)
    assert sched.timesteps.tolist()[0] == 1000
    assert sched.timesteps.tolist() == [int(s * 1000) for s in dpm]
    assert sched.sigmas.tolist()[-1] == 0.0


# ----------------------------------------------------------------------------- trajectories


@pytest.mark.parametrize("steps", (1, 2, 4, 10, 40, 50))
@pytest.mark.parametrize("shift", (1.0, 5.0, 12.0))
def test_unipc_trajectory_matches_diffusers(steps: int, shift: float) -> None:
    model, noise = _fake_model(LATENT_SHAPE)
    ours = make_scheduler("unipc")
    ours.set_timesteps(steps, shift)
    ref = _diffusers_unipc(steps, shift)
    a = _run(ours, ours.sigmas, ours.timesteps, model, noise.clone(), ours=True)
    b = _run(ref, ref.sigmas, ref.timesteps, model, noise.clone(), ours=False)
    assert a.dtype == torch.float32 and a.shape == LATENT_SHAPE
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("steps", (1, 2, 4, 10, 40, 50))
@pytest.mark.parametrize("shift", (1.0, 5.0, 12.0))
def test_dpmpp_trajectory_matches_diffusers(steps: int, shift: float) -> None:
    model, noise = _fake_model(LATENT_SHAPE)
    ours = make_scheduler("dpm++")
    ours.set_timesteps(steps, shift)
    ref = _diffusers_dpmpp(steps, shift)
    assert torch.equal(ours.timesteps, ref.timesteps)
    torch.testing.assert_close(ours.sigmas, ref.sigmas, rtol=0, atol=0)
    a = _run(ours, ours.sigmas, ours.timesteps, model, noise.clone(), ours=True)
    b = _run(ref, ref.sigmas, ref.timesteps, model, noise.clone(), ours=False)
    assert torch.isfinite(a).all()
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("steps", (1, 4, 40))
@pytest.mark.parametrize("shift", (1.0, 5.0, 12.0))
def test_euler_trajectory_matches_diffusers(steps: int, shift: float) -> None:
    model, noise = _fake_model(LATENT_SHAPE)
    ours = make_scheduler("euler")
    ours.set_timesteps(steps, shift)
    ref = _diffusers_euler(steps, shift)
    assert ours.timesteps.tolist() == ref.timesteps.to(torch.int64).tolist()
    # FlowMatchEulerDiscreteScheduler applies the shift in float32 (the official grid: float64): <= 2 ulp.
    torch.testing.assert_close(ours.sigmas, ref.sigmas, rtol=0, atol=2.5e-7)
    a = _run(ours, ours.sigmas, ours.timesteps, model, noise.clone(), ours=True)
    b = _run(ref, ref.sigmas, ref.timesteps, model, noise.clone(), ours=False)
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", SOLVERS)
def test_final_step_returns_x0_prediction(name: str) -> None:
    """With sigma_next = 0 every solver's last step is first order and lands on x0 = x - sigma * v."""
    model, noise = _fake_model((2, 3))
    sched = make_scheduler(name)
    sched.set_timesteps(5, 5.0)
    x = noise.clone()
    for i, t in enumerate(sched.timesteps[:-1]):
        x = sched.step(model(x, float(sched.sigmas[i])), t, x)
    sigma_last = float(sched.sigmas[-2])
    v = model(x, sigma_last)
    out = sched.step(v, sched.timesteps[-1], x)
    # (UniPC: the corrector rewrites x first, but x0 comes from the uncorrected sample, as official.)
    torch.testing.assert_close(out, x - sigma_last * v, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", SOLVERS)
def test_reused_instance_resets_state(name: str) -> None:
    """One instance, several runs (different step counts in between): each run equals a fresh one."""
    model, noise = _fake_model(LATENT_SHAPE)
    fresh = make_scheduler(name)
    fresh.set_timesteps(6, 5.0)
    expected = _run(fresh, fresh.sigmas, fresh.timesteps, model, noise.clone(), ours=True)

    reused = make_scheduler(name)
    reused.set_timesteps(3, 12.0)
    _run(reused, reused.sigmas, reused.timesteps, model, noise.clone(), ours=True)
    reused.set_timesteps(6, 5.0)
    half = reused.timesteps[:2]
    x = noise.clone()
    for i, t in enumerate(half):  # an abandoned (cancelled) run
        x = reused.step(model(x, float(reused.sigmas[i])), t, x)
    reused.set_timesteps(6, 5.0)
    assert reused.step_index == 0
    again = _run(reused, reused.sigmas, reused.timesteps, model, noise.clone(), ours=True)
    assert torch.equal(again, expected)


@pytest.mark.parametrize("shape", [(7,), (2, 3), (1, 16, 2, 4, 6)])
def test_step_any_shape_returns_float32(shape: tuple[int, ...]) -> None:
    model, noise = _fake_model(shape)
    sched = make_scheduler("unipc")
    sched.set_timesteps(3, 5.0)
    x = noise.clone()
    for i, t in enumerate(sched.timesteps):
        x = sched.step(model(x, float(sched.sigmas[i])).to(torch.bfloat16), int(t), x)
        assert x.shape == shape and x.dtype == torch.float32


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "4", None])
def test_invalid_steps_raise(steps) -> None:
    for name in SOLVERS:
        with pytest.raises(ValueError, match="steps must be an int >= 1"):
            make_scheduler(name).set_timesteps(steps, 5.0)


@pytest.mark.parametrize("shift", [0.0, -1.0, math.nan, math.inf, "5", None, False])
def test_invalid_shift_raise(shift) -> None:
    for name in SOLVERS:
        with pytest.raises(ValueError, match="shift must be a positive finite number"):
            make_scheduler(name).set_timesteps(10, shift)


def test_invalid_solver_and_misuse() -> None:
    with pytest.raises(ValueError, match=r"solver must be one of \['unipc', 'dpm\+\+', 'euler'\], got 'ddim'"):
        make_scheduler("ddim")
    with pytest.raises(ValueError, match="solver must be one of"):
        official_sigmas(10, 5.0, "UniPC")
    with pytest.raises(ValueError, match="num_train_timesteps"):
        make_scheduler("unipc", num_train_timesteps=0)
    assert isinstance(make_scheduler(), FlowUniPCScheduler)
    assert isinstance(make_scheduler("dpm++"), FlowDPMSolverScheduler)
    assert isinstance(make_scheduler("euler"), FlowEulerScheduler)

    sched = make_scheduler("unipc")
    x = torch.zeros(2, 2)
    with pytest.raises(RuntimeError, match="before set_timesteps"):
        sched.step(x, 999, x)
    sched.set_timesteps(2, 5.0)
    with pytest.raises(ValueError, match="does not match the scheduler's step 0, whose timestep is 999"):
        sched.step(x, 500, x)
    with pytest.raises(ValueError, match="model_output shape"):
        sched.step(torch.zeros(3), 999, x)
    for t in sched.timesteps:
        x = sched.step(torch.ones_like(x), t, x)
    with pytest.raises(RuntimeError, match="all 2 steps are done"):
        sched.step(x, 0, x)
