"""Scaling-law fitting: the learning-rate annealing law and the encoder/decoder NMT law.

* *Scaling Law with Learning Rate Annealing* (Tissue, Wang, Wang 2024, arXiv 2408.11029):
  ``L(s) = L0 + A * S1(s)^-alpha - C * S2(s)`` with the forward area ``S1(s) = sum_{i<=s} lr_i`` and the annealing
  area ``S2(s) = sum_{i<=s} m_i``, ``m_i = decay * m_{i-1} + (lr_{i-1} - lr_i)``, ``m_0 = 0`` (decay = lambda,
  0.99-0.999). Fitted on one or more training curves, it predicts the loss curve of any other schedule.
  Warm-up steps are left out of S2 (``warmup_steps``): the paper's handling is not verified [M].
* *Scaling Laws for Neural Machine Translation* (Ghorbani et al., ICLR 2022):
  ``L(N_e, N_d) = alpha (Ne_ref / N_e)^p_e (Nd_ref / N_d)^p_d + L_inf`` (exact form from recollection [M]).

Both fits minimise residuals of ``log L`` with ``scipy.optimize.least_squares`` from a grid of starts (Huber loss
for the annealing law, as in the third-party reproduction ``zkshan2002/ScalingLaw``).
``speechkit fit-scaling-law`` (:func:`fit_scaling_law`, also ``tools/fit_scaling_law.py``): Lightning CSV logs in,
fitted law, prediction error and a PNG out.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter

from speechkit.errors import SpeechkitError

# ------------------------------------------------------------------------------------------------------------------
# LR-annealing law


def lr_areas(lrs: Sequence[float], decay: float = 0.999, warmup_steps: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Forward area S1 and annealing area S2 after each step (index s-1 holds step s).

    Args:
        lrs: learning rate of every optimizer step, in order (lrs[0] is step 1).
        decay: momentum factor lambda of the LR decrease, in [0, 1).
        warmup_steps: the first steps, whose LR increase is not counted in S2.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    if lrs.ndim != 1 or lrs.size == 0:
        raise SpeechkitError(f"lrs: expected a non-empty list of per-step learning rates, got shape {lrs.shape}")
    if not 0.0 <= decay < 1.0:
        raise SpeechkitError(f"decay: expected the momentum factor in [0, 1), got {decay}")
    drops = np.concatenate([[0.0], lrs[:-1] - lrs[1:]])  # lr_{i-1} - lr_i, with lr_0 = lr_1
    drops[:warmup_steps] = 0.0
    momentum = lfilter([1.0], [1.0, -decay], drops)  # m_i = decay m_{i-1} + drop_i
    return np.cumsum(lrs), np.cumsum(momentum)


def annealing_law(s1: np.ndarray, s2: np.ndarray, l0: float, a: float, alpha: float, c: float) -> np.ndarray:
    """``L0 + A S1^-alpha - C S2``."""
    return l0 + a * np.power(s1, -alpha) - c * s2


@dataclass
class AnnealingLawFit:
    """Fitted ``L(s) = L0 + A S1^-alpha - C S2`` (S1, S2 in the units of the given learning rates)."""

    L0: float
    A: float
    alpha: float
    C: float
    decay: float
    warmup_steps: int
    n_points: int
    cost: float

    def predict(self, lrs: Sequence[float], steps: Sequence[int] | None = None) -> np.ndarray:
        """Loss after each step of a schedule (or after the given 1-based ``steps``)."""
        s1, s2 = lr_areas(lrs, self.decay, self.warmup_steps)
        index = _step_index(steps, len(s1), "steps")
        return annealing_law(s1[index], s2[index], self.L0, self.A, self.alpha, self.C)


def _step_index(steps: Sequence[int] | None, n: int, name: str) -> np.ndarray:
    if steps is None:
        return np.arange(n)
    index = np.asarray(steps, dtype=np.int64) - 1
    if index.size and (index.min() < 0 or index.max() >= n):
        raise SpeechkitError(f"{name}: expected 1-based steps in [1, {n}], got range [{index.min() + 1}, "
                             f"{index.max() + 1}]")
    return index


def _as_runs(values: Sequence, name: str) -> list[np.ndarray]:
    """One run (a flat list) or several (a list of lists) -> list of 1-D arrays."""
    if values is None:
        return []
    if len(values) and not np.isscalar(values[0]) and np.ndim(values[0]) == 1:
        return [np.asarray(v, dtype=np.float64) for v in values]
    return [np.asarray(values, dtype=np.float64)]


def _runs(lrs: Sequence, losses: Sequence, steps: Sequence | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    lr_runs, loss_runs = _as_runs(lrs, "lrs"), _as_runs(losses, "losses")
    step_runs = [None] * len(lr_runs) if steps is None else [np.asarray(s) for s in _as_runs(steps, "steps")]
    if not (len(lr_runs) == len(loss_runs) == len(step_runs)):
        raise SpeechkitError(f"lrs, losses, steps: expected the same number of runs, got {len(lr_runs)}, "
                             f"{len(loss_runs)}, {len(step_runs)}")
    runs = []
    for k, (lr, loss, step) in enumerate(zip(lr_runs, loss_runs, step_runs)):
        index = _step_index(step, len(lr), f"steps[{k}]")
        if len(index) != len(loss):
            raise SpeechkitError(f"losses[{k}]: expected {len(index)} values (one per step), got {len(loss)}")
        if (loss <= 0).any() or not np.isfinite(loss).all():
            raise SpeechkitError(f"losses[{k}]: expected finite positive losses")
        if (lr < 0).any() or lr.max() <= 0:
            raise SpeechkitError(f"lrs[{k}]: expected non-negative learning rates, not all zero")
        runs.append((lr, loss, index))
    return runs


def fit_annealing_law(lrs: Sequence, losses: Sequence, steps: Sequence | None = None, decay: float | None = 0.999,
                      warmup_steps: int = 0, huber_delta: float = 1e-3) -> AnnealingLawFit:
    """Fit the LR-annealing law (Tissue et al. 2024) on one or more training curves.

    Args:
        lrs: per-step learning rates of one run, or a list of such lists (one per run).
        losses: the losses, same nesting; ``losses[k][j]`` is the loss after step ``steps[k][j]``.
        steps: 1-based step of each loss (default: every step, losses[j] after step j + 1).
        decay: the momentum factor lambda; None fits it too (in [0.9, 0.9999]).
        warmup_steps: warm-up steps excluded from the annealing area.
        huber_delta: Huber threshold on log-loss residuals.

    Returns:
        The fit; ``fit.predict(lrs)`` gives another schedule's curve.
    """
    runs = _runs(lrs, losses, steps)
    n_points = sum(len(loss) for _, loss, _ in runs)
    n_params = 4 if decay is not None else 5
    if n_points <= n_params:
        raise SpeechkitError(f"losses: {n_points} points cannot fit {n_params} parameters; give more steps or runs")
    scale = max(lr.max() for lr, _, _ in runs)  # fit in units of the peak lr, convert back at the end
    target = np.concatenate([np.log(loss) for _, loss, _ in runs])

    def residuals(theta: np.ndarray) -> np.ndarray:
        l0, a, alpha, c = theta[:4]
        lam = decay if decay is not None else theta[4]
        predicted = []
        for lr, _, index in runs:
            s1, s2 = lr_areas(lr / scale, lam, warmup_steps)
            predicted.append(annealing_law(s1[index], s2[index], l0, a, alpha, c))
        return np.log(np.clip(np.concatenate(predicted), 1e-12, None)) - target

    low_loss = min(loss.min() for _, loss, _ in runs)
    lower = [0.0, 0.0, 0.0, 0.0] + ([0.9] if decay is None else [])
    high_loss = max(loss.max() for _, loss, _ in runs)  # L0 may exceed a noisy curve's minimum
    upper = [high_loss, np.inf, 10.0, np.inf] + ([0.9999] if decay is None else [])
    best = None
    for theta0 in _annealing_starts(runs, scale, low_loss, decay, warmup_steps):
        result = least_squares(residuals, theta0, bounds=(lower, upper), loss="huber", f_scale=huber_delta,
                               x_scale="jac", max_nfev=2000)
        if best is None or result.cost < best.cost:
            best = result
    l0, a, alpha, c = best.x[:4]
    lam = decay if decay is not None else float(best.x[4])
    return AnnealingLawFit(L0=float(l0), A=float(a * scale ** alpha), alpha=float(alpha), C=float(c / scale),
                           decay=float(lam), warmup_steps=warmup_steps, n_points=n_points, cost=float(best.cost))


def _annealing_starts(runs: list, scale: float, low_loss: float, decay: float | None,
                      warmup_steps: int) -> list[np.ndarray]:
    """Start points: L0 a fraction of the lowest loss, A through the first point, C 0 or matching the final drop."""
    lr, loss, index = runs[0]
    s1, _ = lr_areas(lr / scale, 0.999, warmup_steps)
    lams = [decay] if decay is not None else [0.99, 0.999]
    starts = []
    for fraction, alpha, c in itertools.product((0.5, 0.9), (0.3, 0.6, 1.0), (0.0, 0.1)):
        l0 = fraction * low_loss
        a = max(loss[0] - l0, 1e-6) * s1[index[0]] ** alpha
        for lam in lams:
            starts.append(np.array([l0, a, alpha, c] + ([lam] if decay is None else [])))
    return starts


# ------------------------------------------------------------------------------------------------------------------
# NMT encoder/decoder law


@dataclass
class NMTLawFit:
    """Fitted ``L = alpha (Ne_ref/N_e)^p_e (Nd_ref/N_d)^p_d + L_inf`` and its R^2 on the fitted points."""

    alpha: float
    p_e: float
    p_d: float
    L_inf: float
    n_enc_ref: float
    n_dec_ref: float
    r2: float

    def predict(self, n_enc: Sequence[float], n_dec: Sequence[float]) -> np.ndarray:
        n_enc, n_dec = np.asarray(n_enc, dtype=np.float64), np.asarray(n_dec, dtype=np.float64)
        return (self.alpha * (self.n_enc_ref / n_enc) ** self.p_e * (self.n_dec_ref / n_dec) ** self.p_d
                + self.L_inf)

    def optimal_split(self, budget: float) -> tuple[float, float]:
        """Encoder/decoder sizes minimising the loss for ``N_e + N_d = budget``: ``N_e = budget p_e/(p_e + p_d)``."""
        return nmt_optimal_split(self.p_e, self.p_d, budget)


def nmt_optimal_split(p_e: float, p_d: float, budget: float) -> tuple[float, float]:
    """argmin of ``N_e^-p_e N_d^-p_d`` subject to ``N_e + N_d = budget``."""
    if p_e <= 0 or p_d <= 0:
        raise SpeechkitError(f"p_e, p_d: expected positive exponents, got {p_e}, {p_d}")
    if budget <= 0:
        raise SpeechkitError(f"budget: expected > 0, got {budget}")
    n_enc = budget * p_e / (p_e + p_d)
    return n_enc, budget - n_enc


def fit_nmt_bivariate(n_enc: Sequence[float], n_dec: Sequence[float], losses: Sequence[float], n_enc_ref: float,
                      n_dec_ref: float) -> NMTLawFit:
    """Fit Ghorbani et al.'s bivariate law on (encoder size, decoder size, loss) points (least squares on log L).

    Args:
        n_enc: encoder (non-embedding) parameter counts.
        n_dec: decoder parameter counts.
        losses: the converged test losses.
        n_enc_ref: the reference encoder size (e.g. the 6L-6L baseline).
        n_dec_ref: the reference decoder size.
    """
    n_enc, n_dec = np.asarray(n_enc, dtype=np.float64), np.asarray(n_dec, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if not (n_enc.shape == n_dec.shape == losses.shape) or n_enc.ndim != 1:
        raise SpeechkitError(f"n_enc, n_dec, losses: expected equal 1-D lengths, got {n_enc.shape}, {n_dec.shape}, "
                             f"{losses.shape}")
    if losses.size <= 4:
        raise SpeechkitError(f"losses: {losses.size} points cannot fit the 4 parameters of the NMT law")
    if (n_enc <= 0).any() or (n_dec <= 0).any() or (losses <= 0).any() or n_enc_ref <= 0 or n_dec_ref <= 0:
        raise SpeechkitError("n_enc, n_dec, losses, n_enc_ref, n_dec_ref: expected positive values")
    x_e, x_d = np.log(n_enc_ref / n_enc), np.log(n_dec_ref / n_dec)

    def residuals(theta: np.ndarray) -> np.ndarray:
        alpha, p_e, p_d, l_inf = theta
        return np.log(alpha * np.exp(p_e * x_e + p_d * x_d) + l_inf) - np.log(losses)

    low = losses.min()
    best = None
    for p_e, p_d, fraction in itertools.product((0.1, 0.5, 1.0), (0.1, 0.5, 1.0), (0.3, 0.7, 0.95)):
        theta0 = [max(low * (1 - fraction), 1e-6), p_e, p_d, low * fraction]
        result = least_squares(residuals, theta0, bounds=([1e-12, 0.0, 0.0, 0.0], [np.inf, 2.0, 2.0, low]))
        if best is None or result.cost < best.cost:
            best = result
    alpha, p_e, p_d, l_inf = (float(v) for v in best.x)
    fit = NMTLawFit(alpha, p_e, p_d, l_inf, float(n_enc_ref), float(n_dec_ref), r2=0.0)
    residual = losses - fit.predict(n_enc, n_dec)
    fit.r2 = float(1.0 - (residual ** 2).sum() / ((losses - losses.mean()) ** 2).sum())
    return fit


# ------------------------------------------------------------------------------------------------------------------
# Lightning CSV logs -> fit -> prediction error and plot


@dataclass
class Curve:
    """One run from a CSVLogger ``metrics.csv``: per-step lrs (interpolated between logged steps) and losses."""

    name: str
    lrs: np.ndarray
    steps: np.ndarray
    losses: np.ndarray


def read_curve(path: str | Path, lr_column: str | None = None, loss_column: str = "train_loss") -> Curve:
    """Read a Lightning CSVLogger ``metrics.csv``: the lr column (``lr-*`` when not named) and the loss column.

    At global step g Lightning logs the loss of the model after g updates and the lr of update g + 1, so
    ``lrs[i]`` is the lr logged at step i (linearly interpolated between logged steps: a step change between two
    logged steps is smeared over that interval) and the loss at step g pairs with S1 = lrs[0] + ... + lrs[g-1].
    Losses logged at step 0 are dropped (S1 = 0 there).
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechkitError(f"metrics: file not found: {path}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0]) if rows else []
    if "step" not in columns:
        raise SpeechkitError(f"{path}: no 'step' column (columns: {columns})")
    if lr_column is None:
        candidates = [c for c in columns if c.startswith("lr-")]
        if len(candidates) != 1:
            raise SpeechkitError(f"{path}: expected one 'lr-*' column, found {candidates}; pass --lr-column")
        lr_column = candidates[0]
    for column in (lr_column, loss_column):
        if column not in columns:
            raise SpeechkitError(f"{path}: no column {column!r} (columns: {columns})")
    lr_points = _pairs(rows, lr_column, path)
    loss_points = [(s, v) for s, v in _pairs(rows, loss_column, path) if s >= 1]
    if len(lr_points) < 1 or not loss_points:
        raise SpeechkitError(f"{path}: no values in {lr_column!r} or {loss_column!r} after step 0")
    last = int(max(max(s for s, _ in lr_points), max(s for s, _ in loss_points)))
    lr_steps, lr_values = zip(*lr_points)
    lrs = np.interp(np.arange(0, last), lr_steps, lr_values)  # (last,): the lr of updates 1..last
    steps, losses = zip(*loss_points)
    return Curve(str(path.parent), lrs, np.asarray(steps, dtype=np.int64), np.asarray(losses))


def _pairs(rows: list[dict], column: str, path: Path) -> list[tuple[int, float]]:
    """(step, value) for rows where the column is filled; a repeated step keeps its last value."""
    values: dict[int, float] = {}
    for line, row in enumerate(rows, start=2):
        if row.get(column) not in (None, ""):
            try:
                values[int(float(row["step"]))] = float(row[column])
            except ValueError as error:
                raise SpeechkitError(f"{path}:{line}: column {column!r} or 'step' is not a number ({error})") from error
    return sorted(values.items())


def _smoothed(curve: Curve, window: int) -> Curve:
    """Trailing moving average of the logged losses over ``window`` points (the first window-1 are dropped)."""
    if window < 1:
        raise SpeechkitError(f"--smooth: expected >= 1, got {window}")
    if window == 1:
        return curve
    if len(curve.losses) < window:
        raise SpeechkitError(f"--smooth: {curve.name} has {len(curve.losses)} losses, fewer than the window {window}")
    average = np.convolve(curve.losses, np.ones(window) / window, mode="valid")
    return Curve(curve.name, curve.lrs, curve.steps[window - 1:], average)


def _from_step(curve: Curve, min_step: int) -> Curve:
    """The curve without losses logged before ``min_step`` (its lrs stay whole: S1 and S2 need every step)."""
    keep = curve.steps >= min_step
    if not keep.any():
        raise SpeechkitError(f"--min-step: {curve.name} has no loss at or after step {min_step}")
    return Curve(curve.name, curve.lrs, curve.steps[keep], curve.losses[keep])


def plot_fit(fit: AnnealingLawFit, fitted: Sequence[Curve], predicted: Sequence[Curve], path: str | Path) -> None:
    """PNG: each run's logged loss (points) and the law's curve (lines; dashed for predicted runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for curves, style, role in ((fitted, "-", "fit"), (predicted, "--", "predicted")):
        for curve in curves:
            dots = axis.plot(curve.steps, curve.losses, ".", markersize=3, alpha=0.5)[0]
            steps = np.arange(int(curve.steps[0]), len(curve.lrs) + 1)  # the law diverges as S1 -> 0: start at data
            axis.plot(steps, fit.predict(curve.lrs, steps), style, color=dots.get_color(),
                      label=f"{curve.name} ({role})")
    losses = np.concatenate([c.losses for c in (*fitted, *predicted)])
    margin = 0.05 * (losses.max() - losses.min())
    axis.set_ylim(losses.min() - margin, losses.max() + margin)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title(f"L = {fit.L0:.3g} + {fit.A:.3g} S1^-{fit.alpha:.3g} - {fit.C:.3g} S2 (lambda {fit.decay:g})")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def fit_scaling_law(
    *,
    fit: list[str],
    predict: list[str] = [],  # noqa: B006 - jsonargparse shows the literal default
    lr_column: Optional[str] = None,
    loss_column: str = "train_loss",
    decay: float = 0.999,
    fit_decay: bool = False,
    warmup_steps: int = 0,
    min_step: int = 1,
    smooth: int = 1,
    huber_delta: float = 1e-3,
    plot: Optional[str] = None,
) -> None:
    """Fit the LR-annealing scaling law to training curves and predict other runs' loss curves.

    ``L = L0 + A*S1^-alpha - C*S2`` (Tissue et al. 2024) is fitted on Lightning ``CSVLogger`` ``metrics.csv``
    files; the fitted law then predicts the loss curves of other runs from their learning-rate schedules, and the
    error of every fitted and predicted run is printed.

    Args:
        fit: ``metrics.csv`` of the runs to fit on.
        predict: ``metrics.csv`` of runs to predict (their error is printed).
        lr_column: learning-rate column (default: the single ``lr-*`` column).
        loss_column: loss column.
        decay: momentum factor lambda of the annealing area.
        fit_decay: fit lambda too.
        warmup_steps: warm-up steps left out of S2.
        min_step: ignore losses logged before this step (e.g. the warm-up), in the fit and the errors.
        smooth: trailing moving average over this many logged losses before fitting and scoring (per-batch
            training losses are noisy; 1 = raw).
        huber_delta: Huber loss scale of the fit's residuals.
        plot: write a PNG of data vs law.

    Examples:
        speechkit fit-scaling-law --fit exp/fsdd_wsd/metrics.csv exp/fsdd_cosine/metrics.csv \\
            --predict exp/fsdd_wsd_s/metrics.csv --plot fit.png
        python tools/fit_scaling_law.py --fit a/metrics.csv --smooth 20 --fit-decay
    """

    def load(path: str) -> Curve:
        return _from_step(_smoothed(read_curve(path, lr_column, loss_column), smooth), min_step)

    fitted, predicted = [load(p) for p in fit], [load(p) for p in predict]
    law = fit_annealing_law([c.lrs for c in fitted], [c.losses for c in fitted], [c.steps for c in fitted],
                            decay=None if fit_decay else decay, warmup_steps=warmup_steps, huber_delta=huber_delta)
    print(f"L0={law.L0:.6g} A={law.A:.6g} alpha={law.alpha:.6g} C={law.C:.6g} decay={law.decay:.6g} "
          f"warmup_steps={law.warmup_steps} points={law.n_points}")
    for role, curves in (("fit", fitted), ("predict", predicted)):
        for curve in curves:
            estimate = law.predict(curve.lrs, curve.steps)
            relative = np.abs(estimate - curve.losses) / curve.losses * 100.0
            print(f"{role} {curve.name}: MAPE {relative.mean():.3f}% max {relative.max():.3f}% over "
                  f"{len(curve.losses)} points; final loss {curve.losses[-1]:.4g} predicted {estimate[-1]:.4g}")
    if plot:
        plot_fit(law, fitted, predicted, plot)
        print(f"plot: {plot}")
