"""Scaling-law fitters: annealing areas in closed form, self-recovery of the annealing and NMT laws, CSV tool."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speechkit.commands import command_main
from speechkit.errors import SpeechkitError
from speechkit.optim import warmup_decay_lambda, wsd_lambda
from speechkit.scaling import annealing_law, fit_annealing_law, fit_nmt_bivariate, lr_areas, nmt_optimal_split

main = command_main("speechkit.scaling:fit_scaling_law", "speechkit fit-scaling-law")  # the former argparse options

TRUE = {"l0": 2.8, "a": 0.5, "alpha": 0.6, "c": 0.3}  # our generator; lr peak 1e-3 over 2,000 steps
PEAK, TOTAL, WARMUP = 1e-3, 2000, 100


def _schedule(kind: str) -> np.ndarray:
    if kind == "constant":
        m = [min(t / WARMUP, 1.0) for t in range(1, TOTAL + 1)]
    elif kind == "cosine":
        m = [warmup_decay_lambda(t, WARMUP, TOTAL, "cosine", 0.0) for t in range(1, TOTAL + 1)]
    else:
        m = [wsd_lambda(t, WARMUP, TOTAL, 0.2, "1-sqrt", 0.0) for t in range(1, TOTAL + 1)]
    return PEAK * np.asarray(m)


def _curve(lrs: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    s1, s2 = lr_areas(lrs, 0.999, WARMUP)
    loss = annealing_law(s1, s2, TRUE["l0"], TRUE["a"], TRUE["alpha"], TRUE["c"])
    return loss * (1 + noise * np.random.default_rng(seed).standard_normal(len(loss)))


def test_constant_lr_areas():
    s1, s2 = lr_areas([0.5] * 10)
    np.testing.assert_allclose(s1, 0.5 * np.arange(1, 11), rtol=0, atol=1e-15)
    assert (s2 == 0).all()


def test_single_drop_closed_form():
    lam, k, delta = 0.99, 30, 0.25
    lrs = [1.0] * (k - 1) + [1.0 - delta] * 70  # the drop happens at step k
    _, s2 = lr_areas(lrs, lam)
    s = np.arange(k, 100)
    np.testing.assert_allclose(s2[s - 1], delta * (1 - lam ** (s - k + 1)) / (1 - lam), rtol=0, atol=1e-12)
    assert (s2[: k - 1] == 0).all()


def test_annealing_law_recovers_its_parameters_and_predicts_wsd():
    constant, cosine, wsd = _schedule("constant"), _schedule("cosine"), _schedule("wsd")
    steps = np.arange(WARMUP + 50, TOTAL + 1, 10)  # subsampled, after warm-up
    fit = fit_annealing_law([constant, cosine], [_curve(constant)[steps - 1], _curve(cosine)[steps - 1]],
                            [steps, steps], decay=0.999, warmup_steps=WARMUP)
    for name, value in (("L0", "l0"), ("A", "a"), ("alpha", "alpha"), ("C", "c")):
        assert getattr(fit, name) == pytest.approx(TRUE[value], rel=0.02), name
    predicted, actual = fit.predict(wsd, steps), _curve(wsd)[steps - 1]
    assert np.mean(np.abs(predicted - actual) / actual) < 0.005


def test_noisy_fit_with_fitted_decay_still_predicts_within_half_a_percent():
    constant, cosine, wsd = _schedule("constant"), _schedule("cosine"), _schedule("wsd")
    steps = np.arange(WARMUP + 50, TOTAL + 1, 10)
    fit = fit_annealing_law([constant, cosine], [_curve(constant, 0.003, 1)[steps - 1], _curve(cosine, 0.003, 2)[steps - 1]],
                            [steps, steps], decay=None, warmup_steps=WARMUP)
    assert 0.99 <= fit.decay <= 0.9999
    actual = _curve(wsd)[steps - 1]
    assert np.mean(np.abs(fit.predict(wsd, steps) - actual) / actual) < 0.005


def test_annealing_fit_errors():
    with pytest.raises(SpeechkitError, match="losses"):
        fit_annealing_law([1e-3] * 4, [3.0, 2.9, 2.8, 2.7])
    with pytest.raises(SpeechkitError, match="losses\\[0\\]"):
        fit_annealing_law([1e-3] * 10, [3.0] * 9)
    with pytest.raises(SpeechkitError, match="decay"):
        lr_areas([1.0, 0.5], decay=1.0)


def _nmt_points(noise: float, seed: int):
    ref_e = ref_d = 1e8
    sizes = ref_e * np.geomspace(1 / 8, 8, 9)
    n_enc = np.concatenate([sizes, np.full(9, ref_d)])  # encoder sweep, then decoder sweep
    n_dec = np.concatenate([np.full(9, ref_e), sizes])
    loss = 0.3 * (ref_e / n_enc) ** 0.2 * (ref_d / n_dec) ** 0.35 + 1.5
    return n_enc, n_dec, loss + noise * np.random.default_rng(seed).standard_normal(len(loss)), ref_e, ref_d


def test_nmt_law_recovers_its_parameters():
    n_enc, n_dec, loss, ref_e, ref_d = _nmt_points(0.0, 0)
    fit = fit_nmt_bivariate(n_enc, n_dec, loss, ref_e, ref_d)
    for name, value in (("alpha", 0.3), ("p_e", 0.2), ("p_d", 0.35), ("L_inf", 1.5)):
        assert getattr(fit, name) == pytest.approx(value, rel=1e-4), name
    noisy = fit_nmt_bivariate(*_nmt_points(0.003, 1))  # the paper's noise scale
    assert noisy.r2 > 0.99
    assert noisy.p_d == pytest.approx(0.35, rel=0.1) and noisy.L_inf == pytest.approx(1.5, rel=0.05)


def test_nmt_optimal_split_matches_grid_search():
    p_e, p_d, budget = 0.2, 0.35, 1000.0
    n_enc, n_dec = nmt_optimal_split(p_e, p_d, budget)
    grid = np.linspace(1, budget - 1, 99999)
    best = grid[np.argmin(grid ** -p_e * (budget - grid) ** -p_d)]
    assert n_enc == pytest.approx(best, abs=0.02) and n_enc + n_dec == budget
    with pytest.raises(SpeechkitError, match="p_e, p_d"):
        nmt_optimal_split(0.0, 0.3, 10.0)
    with pytest.raises(SpeechkitError, match="losses"):
        fit_nmt_bivariate([1, 2, 3], [1, 2, 3], [3, 2, 1], 1, 1)


def _write_metrics(path, lrs: np.ndarray, losses: np.ndarray, every: int = 10) -> None:
    """A CSVLogger-style file: lr rows and loss rows on separate lines, logged every `every` steps.

    As Lightning does: at global step g the lr of the next update (lrs[g]) and the loss after g updates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["epoch,lr-AdamW,step,train_loss"]
    for step in range(0, len(lrs) + 1, every):
        lr = float(lrs[min(step, len(lrs) - 1)])
        lines.append(f"0,{lr!r},{step},")
        if step >= 1:
            lines.append(f"0,,{step},{float(losses[step - 1])!r}")
    path.write_text("\n".join(lines) + "\n")


def test_cli_fits_csv_logs_predicts_and_plots(tmp_path, capsys):
    for kind in ("constant", "cosine", "wsd"):
        lrs = _schedule(kind)
        _write_metrics(tmp_path / kind / "metrics.csv", lrs, _curve(lrs))
    plot = tmp_path / "fit.png"
    assert main(["--fit", str(tmp_path / "constant/metrics.csv"), str(tmp_path / "cosine/metrics.csv"),
                 "--predict", str(tmp_path / "wsd/metrics.csv"), "--warmup-steps", str(WARMUP),
                 "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    predicted = [line for line in out.splitlines() if line.startswith("predict ") and "wsd:" in line][0]
    assert float(predicted.split("MAPE ")[1].split("%")[0]) < 0.5
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--fit", str(tmp_path / "constant/metrics.csv"), "--smooth", "3", "--min-step", "500"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("fit ")][0]
    assert "over 151 points" in line  # steps 500..2000 every 10 (the window is filled long before step 500)
    with pytest.raises(SpeechkitError, match="no column 'val_loss'"):
        main(["--fit", str(tmp_path / "constant/metrics.csv"), "--loss-column", "val_loss"])
    broken = tmp_path / "broken/metrics.csv"
    broken.parent.mkdir()
    broken.write_text("lr-AdamW,step,train_loss\n0.1,1,abc\n")
    with pytest.raises(SpeechkitError, match="metrics.csv:2: column 'train_loss'"):
        main(["--fit", str(broken)])
