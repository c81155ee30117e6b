"""Flow-matching samplers on the official Wan 2.2 sigma grid: UniPC (default), DPM++ and Euler.

Convention (rectified flow): ``x_sigma = (1 - sigma) * x0 + sigma * noise`` and the model predicts the
velocity ``v = noise - x0``, so ``x0 = x_sigma - sigma * v``. In the exponential-integrator solvers
``alpha = 1 - sigma`` and ``lambda = log(alpha) - log(sigma)``.

Grid (identical to the official ``FlowUniPCMultistepScheduler`` / ``FlowDPMSolverMultistepScheduler``):

* UniPC and Euler: ``sigma = linspace(sigma_max, 0, N + 1)[:-1]`` with ``sigma_max = float32(1 - 1/T)``
  (0.9990000128746 for T = 1000), then ``shift * sigma / (1 + (shift - 1) * sigma)``.
* DPM++: ``sigma = linspace(1, 0, N + 1)[:N]`` then the same shift, so it starts at sigma = 1 (t = T).
* ``timesteps = int64(sigma * T)`` (truncation, computed in float64), the value the DiT receives and the
  MoE boundary is compared with; ``sigmas`` = float32 ``[N + 1]`` with a trailing 0.

Solvers (official settings): UniPC ``bh2``, order 2, data prediction, corrector (UniC) from the second
step on, order 1 on the first and last steps; DPM-Solver++ 2M midpoint, first order on the first and last
steps; Euler ``x += (sigma_next - sigma) * v``. Coefficients are computed in float64 from the float32
sigmas; tensor math runs in float32. ``set_timesteps`` resets all solver state, so one instance can be
reused run after run.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import torch
from torch import Tensor

from .configs import SOLVERS

__all__ = [
    "SOLVERS",
    "FlowDPMSolverScheduler",
    "FlowEulerScheduler",
    "FlowScheduler",
    "FlowUniPCScheduler",
    "make_scheduler",
    "official_sigmas",
    "official_timesteps",
]



def _check_steps_shift(steps: int, shift: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(shift, bool) or not isinstance(shift, (int, float, np.floating, np.integer)):
        raise ValueError(f"shift must be a positive finite number, got {shift!r}")
    if not math.isfinite(float(shift)) or float(shift) <= 0.0:
        raise ValueError(f"shift must be a positive finite number, got {shift!r}")


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")


def _check_num_train_timesteps(num_train_timesteps: int) -> None:
    if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be an int >= 2, got {num_train_timesteps!r}")


def official_sigmas(steps: int, shift: float, solver: str, num_train_timesteps: int = 1000) -> np.ndarray:
    """The official shifted sampling sigmas, float64 ``[steps]`` (no trailing zero).

    UniPC / Euler start from ``linspace(float32(1 - 1/T), 0, steps + 1)[:-1]``; DPM++ from
    ``linspace(1, 0, steps + 1)[:steps]``; both then get ``shift * s / (1 + (shift - 1) * s)``.
    """
    _check_steps_shift(steps, shift)
    _check_solver(solver)
    _check_num_train_timesteps(num_train_timesteps)
    if solver == "dpm++":
        base = np.linspace(1.0, 0.0, int(steps) + 1)[: int(steps)]
    else:
        # The official scheduler builds its training sigmas in float32 and reads sigma_max back with .item().
        sigma_max = float(np.float32(1.0 - 1.0 / num_train_timesteps))
        base = np.linspace(sigma_max, 0.0, int(steps) + 1)[:-1]
    s = float(shift)
    return s * base / (1.0 + (s - 1.0) * base)


def official_timesteps(steps: int, shift: float, solver: str = "unipc", num_train_timesteps: int = 1000) -> np.ndarray:
    """``int64(sigma * T)`` (truncated) for the official grid, ``[steps]``."""
    return (official_sigmas(steps, shift, solver, num_train_timesteps) * num_train_timesteps).astype(np.int64)


def _lambda(sigma: float) -> float:
    """log-SNR ``log(1 - sigma) - log(sigma)``; -inf at sigma = 1, +inf at sigma = 0."""
    if sigma >= 1.0:
        return -math.inf
    if sigma <= 0.0:
        return math.inf
    return math.log1p(-sigma) - math.log(sigma)


class FlowScheduler:
    """Base class: official grid, step bookkeeping and validation. Subclasses implement ``_update``.

    Attributes after ``set_timesteps``:
        timesteps: ``[N]`` on the requested device (what the DiT and the MoE switch see): int64 on the
            official grid, float64 on the Lightning grid.
        sigmas: float32 ``[N + 1]`` on CPU, last value 0.
    """

    name: str = ""
    grid: str = "unipc"  # which official grid this solver uses (see official_sigmas)

    def __init__(self, num_train_timesteps: int = 1000) -> None:
        _check_num_train_timesteps(num_train_timesteps)
        self.num_train_timesteps = num_train_timesteps
        self.timesteps: Tensor = torch.empty(0, dtype=torch.int64)
        self.sigmas: Tensor = torch.empty(0, dtype=torch.float32)
        self.shift: float | None = None
        self._sigmas64: list[float] = []
        self._step_index = 0
        self._reset_state()

    # -- public API ---------------------------------------------------------------------------------

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.numel())

    @property
    def step_index(self) -> int:
        """Index of the next step to run (0 right after ``set_timesteps``)."""
        return self._step_index

    def set_timesteps(
        self, steps: int, shift: float, device: torch.device | str | None = None, *, schedule: str = "official"
    ) -> None:
        """Builds the grid for ``steps`` steps at ``shift`` and resets the solver state.

        ``schedule="official"``: the official per-solver grid, integer timesteps. ``"lightning"``: the
        grid the Lightning / lightx2v few-step LoRAs were trained on: ``linspace(1, 0, steps + 1)[:-1]``
        shifted, and the timesteps are ``sigma * T`` as floats (4 steps at shift 5: 1000, 937.5,
        833.33, 625).
        """
        if schedule == "lightning":
            _check_steps_shift(steps, shift)
            base = np.linspace(1.0, 0.0, int(steps) + 1)[:-1]
            sigmas = float(shift) * base / (1.0 + (float(shift) - 1.0) * base)
            timesteps = sigmas * self.num_train_timesteps
        elif schedule == "official":
            sigmas = official_sigmas(steps, shift, self.grid, self.num_train_timesteps)
            timesteps = (sigmas * self.num_train_timesteps).astype(np.int64)
        else:
            raise ValueError(f"schedule must be 'official' or 'lightning', got {schedule!r}")
        sigmas32 = np.concatenate([sigmas, [0.0]]).astype(np.float32)
        self.sigmas = torch.from_numpy(sigmas32)
        self.timesteps = torch.from_numpy(timesteps).to(device=device)
        self.shift = float(shift)
        self._sigmas64 = [float(s) for s in sigmas32]  # solver coefficients use the float32 sigmas
        self._step_index = 0
        self._reset_state()

    def step(self, model_output: Tensor, timestep: int | Tensor, sample: Tensor) -> Tensor:
        """One solver step from ``sigmas[i]`` to ``sigmas[i + 1]``; returns the new float32 sample.

        ``model_output`` is the flow prediction ``v`` (same shape as ``sample``); ``timestep`` must be
        ``timesteps[i]`` of the current step (a Python int or a one-element tensor).
        """
        i = self._step_index
        if self.num_steps == 0:
            raise RuntimeError(f"{type(self).__name__}.step called before set_timesteps(steps, shift)")
        if i >= self.num_steps:
            raise RuntimeError(
                f"{type(self).__name__}: all {self.num_steps} steps are done; call set_timesteps for a new run"
            )
        expected = int(self.timesteps[i])
        got = self._timestep_value(timestep)
        if got != expected:
            raise ValueError(
                f"timestep {got} does not match the scheduler's step {i}, whose timestep is {expected} "
                f"(timesteps must be passed in order, one step() per timestep)"
            )
        if model_output.shape != sample.shape:
            raise ValueError(
                f"model_output shape {tuple(model_output.shape)} must equal sample shape {tuple(sample.shape)}"
            )
        out = self._update(model_output.to(torch.float32), sample.to(torch.float32), i)
        self._step_index = i + 1
        return out

    # -- helpers for subclasses ---------------------------------------------------------------------

    def _reset_state(self) -> None:
        """Clears the multistep history; called by ``__init__`` and ``set_timesteps``."""

    def _update(self, v: Tensor, x: Tensor, i: int) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _timestep_value(timestep: int | Tensor) -> int:
        if isinstance(timestep, Tensor):
            if timestep.numel() != 1:
                raise ValueError(
                    f"timestep must be a scalar or a one-element tensor, got shape {tuple(timestep.shape)}"
                )
            return int(timestep.item())
        if isinstance(timestep, (int, float, np.integer, np.floating)) and not isinstance(timestep, bool):
            return int(timestep)
        raise ValueError(f"timestep must be an int or a one-element tensor, got {type(timestep).__name__}")


class FlowEulerScheduler(FlowScheduler):
    """First-order flow Euler: ``x_next = x + (sigma_next - sigma) * v``."""

    name = "euler"
    grid = "unipc"

    def _update(self, v: Tensor, x: Tensor, i: int) -> Tensor:
        dt = self.sigmas[i + 1].item() - self.sigmas[i].item()
        return x + dt * v


class FlowDPMSolverScheduler(FlowScheduler):
    """DPM-Solver++ 2M (midpoint) in data prediction; first order on the first and the final step."""

    name = "dpm++"
    grid = "dpm++"

    def _reset_state(self) -> None:
        self._prev_x0: Tensor | None = None

    def _update(self, v: Tensor, x: Tensor, i: int) -> Tensor:
        sig = self._sigmas64
        s0, t = sig[i], sig[i + 1]
        x0 = x - s0 * v
        lam_t, lam_s0 = _lambda(t), _lambda(s0)
        h = lam_t - lam_s0
        alpha_t = 1.0 - t
        ratio = t / s0
        phi = math.expm1(-h)  # exp(-h) - 1; h may be +inf at sigma 1 -> 0 or 0 -> inf
        first_order = self._prev_x0 is None or i == self.num_steps - 1
        if first_order:
            out = ratio * x - (alpha_t * phi) * x0
        else:
            assert self._prev_x0 is not None
            h_prev = lam_s0 - _lambda(sig[i - 1])
            r0 = h_prev / h
            d1 = (1.0 / r0) * (x0 - self._prev_x0)
            out = ratio * x - (alpha_t * phi) * x0 - (0.5 * alpha_t * phi) * d1
        self._prev_x0 = x0
        return out


class FlowUniPCScheduler(FlowScheduler):
    """UniPC (``bh2``, data prediction) for flow matching: UniC corrector + UniP predictor.

    Order ``min(solver_order, steps remaining, warm-up)``: 1 on the first and last step, 2 between
    (``solver_order=2``). The corrector runs from the second step on, with the previous predictor's order.
    """

    name = "unipc"
    grid = "unipc"

    def __init__(self, num_train_timesteps: int = 1000, solver_order: int = 2) -> None:
        if isinstance(solver_order, bool) or not isinstance(solver_order, int) or not 1 <= solver_order <= 3:
            raise ValueError(f"solver_order must be 1, 2 or 3, got {solver_order!r}")
        self.solver_order = solver_order
        super().__init__(num_train_timesteps)

    def _reset_state(self) -> None:
        self._history: list[Tensor] = []  # data predictions x0 of the last `solver_order` steps, oldest first
        self._last_sample: Tensor | None = None  # sample the last predictor started from
        self._last_order = 0
        self._lower_order_nums = 0

    # b-vector and phi terms of the bh2 variant for a step of log-SNR size h (data prediction: hh = -h)
    @staticmethod
    def _coefficients(h: float, order: int) -> tuple[float, float, np.ndarray]:
        hh = -h
        h_phi_1 = math.expm1(hh)
        b_h = math.expm1(hh)
        b = np.empty(order, dtype=np.float64)
        h_phi_k = h_phi_1 / hh - 1.0
        factorial = 1.0
        for k in range(1, order + 1):
            b[k - 1] = h_phi_k * factorial / b_h
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1.0 / factorial
        return h_phi_1, b_h, b

    def _differences(
        self, lam_s0: float, h: float, m0: Tensor, order: int, first_prev: int
    ) -> tuple[list[float], list[Tensor]]:
        """Ratios r_k and scaled differences (m_k - m0) / r_k for k = 1..order-1.

        ``m_k`` is the k-th previous data prediction, taken at ``sigmas[first_prev - (k - 1)]``.
        """
        rks: list[float] = []
        diffs: list[Tensor] = []
        for k in range(1, order):
            lam_k = _lambda(self._sigmas64[first_prev - (k - 1)])
            rk = (lam_k - lam_s0) / h
            rks.append(rk)
            diffs.append((self._history[-(k + 1)] - m0) / rk)
        return rks, diffs

    def _predict(self, x: Tensor, i: int, order: int) -> Tensor:
        s0, t = self._sigmas64[i], self._sigmas64[i + 1]
        lam_s0 = _lambda(s0)
        h = _lambda(t) - lam_s0
        m0 = self._history[-1]
        rks, diffs = self._differences(lam_s0, h, m0, order, first_prev=i - 1)
        h_phi_1, b_h, b = self._coefficients(h, order)
        alpha_t = 1.0 - t
        out = (t / s0) * x - (alpha_t * h_phi_1) * m0
        if diffs:
            if order == 2:
                rhos = np.array([0.5])
            else:
                r_mat = np.stack([np.array(rks + [1.0]) ** p for p in range(order)])
                rhos = np.linalg.solve(r_mat[:-1, :-1], b[:-1])
            pred = sum(float(r) * d for r, d in zip(rhos, diffs))
            out = out - (alpha_t * b_h) * pred
        return out

    def _correct(self, x0_new: Tensor, x: Tensor, i: int, order: int) -> Tensor:
        assert self._last_sample is not None
        s0, t = self._sigmas64[i - 1], self._sigmas64[i]
        lam_s0 = _lambda(s0)
        h = _lambda(t) - lam_s0
        m0 = self._history[-1]
        rks, diffs = self._differences(lam_s0, h, m0, order, first_prev=i - 2)
        h_phi_1, b_h, b = self._coefficients(h, order)
        if order == 1:
            rhos = np.array([0.5])
        else:
            r_mat = np.stack([np.array(rks + [1.0]) ** p for p in range(order)])
            rhos = np.linalg.solve(r_mat, b)
        alpha_t = 1.0 - t
        out = (t / s0) * self._last_sample - (alpha_t * h_phi_1) * m0
        corr = float(rhos[-1]) * (x0_new - m0)
        for r, d in zip(rhos[:-1], diffs):
            corr = corr + float(r) * d
        return out - (alpha_t * b_h) * corr

    def _update(self, v: Tensor, x: Tensor, i: int) -> Tensor:
        x0 = x - self._sigmas64[i] * v
        if i > 0 and self._last_sample is not None:
            x = self._correct(x0, x, i, self._last_order)
        self._history.append(x0)
        if len(self._history) > self.solver_order:
            self._history.pop(0)
        order = min(self.solver_order, self.num_steps - i, self._lower_order_nums + 1)
        self._last_sample = x
        self._last_order = order
        out = self._predict(x, i, order)
        self._lower_order_nums = min(self._lower_order_nums + 1, self.solver_order)
        return out


_SCHEDULERS: Final[dict[str, type[FlowScheduler]]] = {
    "unipc": FlowUniPCScheduler,
    "dpm++": FlowDPMSolverScheduler,
    "euler": FlowEulerScheduler,
}


def make_scheduler(name: str = "unipc", num_train_timesteps: int = 1000) -> FlowScheduler:
    """A fresh scheduler by solver name: "unipc" (official default), "dpm++" or "euler"."""
    _check_solver(name)
    return _SCHEDULERS[name](num_train_timesteps=num_train_timesteps)
