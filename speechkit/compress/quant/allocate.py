"""Mixed-precision bit allocation: one interface ``(sensitivity, cost, budget) -> bits per unit``.

A *unit* is whatever gets one bit width (a column for BAQ, a layer for Q-BERT / CPTQuant / SNIP). ``cost[i]`` is
its number of weights and ``budget`` the allowed average bits per weight, so an allocation is feasible when
``sum(cost * bits) <= budget * sum(cost)``. Loss model shared by the solvers: ``L_i(b) = s_i * 2^(-theta b)``
(rate-distortion, BAQ), or an explicit table ``(units, len(choices))`` of losses (SNIP's per-format divergences).

* ``"baq"`` - Zhang et al. 2025, "BAQ": closed form ``R_i = R + (1/theta) log2(c_i / GM(c))`` (cost-weighted when
  costs differ: every unit ends with the same loss per weight, the equal-loss structure), then rounded to the
  allowed ``choices`` and repaired greedily so the budget is met without being exceeded.
* ``"ilp"`` - Pan et al. 2026, "SNIP": exact 0/1 integer program ``min sum x_ip L_i(b_p)`` s.t. one choice per
  unit and the budget (``scipy.optimize.milp``).
* ``"rank"`` (alias ``"qbert"``, ``"cptquant"``) - Shen et al. 2020, "Q-BERT" and Nanda et al. 2024, "CPTQuant":
  ``sensitivity`` is a per-weight score (Q-BERT's ``Omega = |mean lambda| + std lambda``, or a CPTQuant score), and
  a more sensitive unit must not get fewer bits. The widths minimise the second-order proxy
  ``sum_i s_i n_i 2^(-theta b_i)`` (``Delta L ~ 1/2 Omega ||Delta W||^2`` with ``||Delta W||^2 ~ n 2^(-theta b)``;
  the integer program of Yao et al. 2021, "HAWQ-V3", Eq. 7), solved exactly like "ilp"; then the widths of
  equal-cost units are re-sorted by score, which keeps the cost and never raises the proxy [D].
  (The earlier widest-first greedy gave the top unit 8 bits and could leave the next, larger unit at 2 bits while a
  smaller, far less sensitive unit took the remaining slack.)
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import Tensor

from speechkit.compress.quant.formats import check_bits
from speechkit.errors import SpeechkitError

Method = Literal["baq", "ilp", "rank", "qbert", "cptquant"]


def _as_array(values: Tensor | Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = values.detach().double().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)):
        raise SpeechkitError(f"{name} must be finite")
    return array


def _check(sensitivity: np.ndarray, cost: np.ndarray, budget: float, choices: Sequence[int]) -> list[int]:
    if len(choices) == 0:
        raise SpeechkitError("choices must hold at least one bit width")
    levels = sorted({check_bits(int(c), "choices") for c in choices})
    if cost.ndim != 1 or sensitivity.shape[0] != cost.shape[0] or cost.shape[0] == 0:
        raise SpeechkitError(f"sensitivity and cost must describe the same units, "
                             f"got {sensitivity.shape} and {cost.shape}")
    if np.any(cost <= 0):
        raise SpeechkitError("cost must be positive (weights per unit)")
    if budget < levels[0] - 1e-12:
        raise SpeechkitError(f"budget={budget} average bits is below the minimum {levels[0]} "
                             f"of choices={tuple(levels)}")
    return levels


def baq_closed_form(sensitivity: Tensor, avg_bits: float, theta: float = 2.0, cost: Tensor | None = None) -> Tensor:
    """Continuous BAQ optimum ``R_i = R + (1/theta)(log2(c_i/n_i) - sum_k n_k log2(c_k/n_k) / sum_k n_k)``.

    Minimises ``sum c_i 2^(-theta R_i)`` s.t. ``sum n_i R_i = R sum n_i`` (Lagrange); with equal costs this is
    BAQ's ``R + (1/theta) log2(c_i / GM(c))`` and every ``c_i 2^(-theta R_i)`` equals ``GM(c) 2^(-theta R)``.
    """
    c = sensitivity.double()
    n = torch.ones_like(c) if cost is None else cost.double()
    if bool((c <= 0).any()):
        raise SpeechkitError("sensitivity must be positive for the BAQ closed form")
    log_ratio = torch.log2(c / n)
    return avg_bits + (log_ratio - (n * log_ratio).sum() / n.sum()) / theta


def _model_loss(sensitivity: np.ndarray, levels: list[int], theta: float) -> np.ndarray:
    """``(units, choices)`` loss table: given as 2-D, or ``s_i 2^(-theta b)`` from 1-D sensitivities."""
    if sensitivity.ndim == 2:
        if sensitivity.shape[1] != len(levels):
            raise SpeechkitError(f"a 2-D sensitivity needs one column per choice ({len(levels)}), "
                                 f"got {sensitivity.shape[1]}")
        return sensitivity
    return sensitivity[:, None] * np.exp2(-theta * np.asarray(levels, dtype=float))[None, :]


def _repair(index: np.ndarray, loss: np.ndarray, cost: np.ndarray, levels: list[int], limit: float) -> np.ndarray:
    """Greedy budget repair on choice indices: drop the cheapest-loss bits while over budget, then add the best
    ones while they fit."""
    bits = np.asarray(levels, dtype=float)
    units = np.arange(len(index))
    while (cost * bits[index]).sum() > limit + 1e-9:  # over budget: lower the unit losing least per bit saved
        down = index > 0
        rate = np.where(down, (loss[units, np.maximum(index - 1, 0)] - loss[units, index]) /
                        (cost * (bits[index] - bits[np.maximum(index - 1, 0)]) + 1e-300), np.inf)
        index[np.argmin(rate)] -= 1
    while True:  # under budget: raise the unit gaining most per bit spent among those that fit
        slack = limit - (cost * bits[index]).sum()
        up = np.minimum(index + 1, len(levels) - 1)
        extra = cost * (bits[up] - bits[index])
        fits = (index < len(levels) - 1) & (extra <= slack + 1e-9)
        if not fits.any():
            return index
        gain = np.where(fits, (loss[units, index] - loss[units, up]) / np.maximum(extra, 1e-300), -np.inf)
        index[np.argmax(gain)] += 1


def _baq(sensitivity: np.ndarray, cost: np.ndarray, budget: float, levels: list[int], theta: float) -> np.ndarray:
    if sensitivity.ndim != 1:
        raise SpeechkitError("method='baq' needs a 1-D sensitivity (one loss coefficient per unit)")
    continuous = baq_closed_form(torch.from_numpy(sensitivity), budget, theta, torch.from_numpy(cost)).numpy()
    index = np.abs(continuous[:, None] - np.asarray(levels)[None, :]).argmin(axis=1)
    return _repair(index, _model_loss(sensitivity, levels, theta), cost, levels, budget * cost.sum())


def _ilp(sensitivity: np.ndarray, cost: np.ndarray, budget: float, levels: list[int], theta: float) -> np.ndarray:
    return _solve_table(_model_loss(sensitivity, levels, theta), cost, budget, levels)


def _solve_table(loss: np.ndarray, cost: np.ndarray, budget: float, levels: list[int]) -> np.ndarray:
    """Exact 0/1 program: one choice per unit, ``sum cost * bits <= budget * sum cost``, least total ``loss``."""
    units, options = loss.shape  # (U, P)
    one_each = np.kron(np.eye(units), np.ones(options))  # (U, U*P)
    weight = (cost[:, None] * np.asarray(levels, dtype=float)[None, :]).ravel()  # (U*P,)
    scale = cost.sum()
    result = milp(
        loss.ravel() / max(float(np.abs(loss).max()), 1e-300),  # O(1) objective for the solver's tolerances
        constraints=[LinearConstraint(one_each, 1, 1),
                     LinearConstraint(weight[None, :] / scale, -np.inf, budget + 1e-9)],
        integrality=np.ones(units * options),
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 0.0},
    )
    if result.x is None:
        raise SpeechkitError(f"budget={budget}: the integer program found no feasible allocation ({result.message})")
    return np.round(result.x).reshape(units, options).argmax(axis=1)


def _rank(sensitivity: np.ndarray, cost: np.ndarray, budget: float, levels: list[int], theta: float) -> np.ndarray:
    if sensitivity.ndim != 1:
        raise SpeechkitError("method='rank' needs a 1-D sensitivity (one score per unit)")
    # a negative score (PMPQ: compressing the unit lowered the loss) counts as insensitive in the proxy
    proxy = np.clip(sensitivity, 0.0, None) * cost
    index = _solve_table(_model_loss(proxy, levels, theta), cost, budget, levels)
    return sort_within_equal_cost(index, sensitivity, cost)


def sort_within_equal_cost(index: np.ndarray, sensitivity: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Hand the widths of each equal-cost group to its units in order of sensitivity (cost unchanged; for any loss
    ``s_i f(b_i)`` with ``f`` falling this is the exchange argument, so the loss never rises)."""
    out = index.copy()
    for value in np.unique(cost):
        members = np.flatnonzero(cost == value)
        by_score = members[np.argsort(-sensitivity[members], kind="stable")]
        out[by_score] = np.sort(index[members])[::-1]
    return out


def allocate_bits(
    sensitivity: Tensor | Sequence[float],
    cost: Tensor | Sequence[float] | None,
    budget: float,
    method: Method = "baq",
    choices: Sequence[int] = (2, 3, 4, 8),
    theta: float = 2.0,
) -> Tensor:
    """Integer bits per unit within an average-bits budget.

    Args:
        sensitivity: ``(U,)`` loss coefficients / sensitivity scores (positive for "baq"), or for "ilp" a
            ``(U, len(choices))`` table of the loss of each unit at each choice (choices in ascending order).
        cost: ``(U,)`` weights per unit; ``None`` = all equal.
        budget: allowed average bits per weight, at least ``min(choices)``.
        method: "baq", "ilp", or "rank" (= "qbert", "cptquant").
        choices: allowed bit widths, each in [2, 16].
        theta: rate-distortion exponent of ``L(b) = s 2^(-theta b)`` (BAQ's code uses 1.95; 2 is the 6 dB/bit rule).

    Returns:
        ``(U,)`` int64 bits, every one in ``choices``, with ``sum(cost * bits) <= budget * sum(cost)``.
    """
    s = _as_array(sensitivity, "sensitivity")
    n = np.ones(s.shape[0]) if cost is None else _as_array(cost, "cost")
    if not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise SpeechkitError(f"budget must be a finite number of average bits, got {budget!r}")
    levels = _check(s, n, float(budget), choices)
    if method == "baq":
        index = _baq(s, n, float(budget), levels, theta)
    elif method == "ilp":
        index = _ilp(s, n, float(budget), levels, theta)
    elif method in ("rank", "qbert", "cptquant"):
        index = _rank(s, n, float(budget), levels, theta)
    else:
        raise SpeechkitError(f"method must be 'baq', 'ilp', 'rank', 'qbert' or 'cptquant', got {method!r}")
    return torch.as_tensor(np.asarray(levels)[index], dtype=torch.int64)
