import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from speechkit.compress.quant.allocate import allocate_bits, baq_closed_form
from speechkit.errors import SpeechkitError


def _sensitivity(n: int, seed: int = 0) -> torch.Tensor:
    return torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-4, 4, generator=torch.Generator().manual_seed(seed)))


def test_baq_closed_form_budget_and_equal_loss_structure() -> None:
    c = _sensitivity(50)
    bits = baq_closed_form(c, avg_bits=3.0, theta=2.0)
    assert bits.sum().item() == pytest.approx(150.0, abs=1e-9)
    losses = c * torch.exp2(-2.0 * bits)
    geometric_mean = torch.exp(torch.log(c).mean())
    assert torch.allclose(losses, geometric_mean * 2.0**-6, rtol=1e-12)
    uniform = (c * 2.0**-6).sum()
    assert losses.sum() / uniform == pytest.approx((geometric_mean / c.mean()).item())  # gain = GM / AM


def test_baq_closed_form_beats_slsqp() -> None:
    c = _sensitivity(8, seed=1).numpy()
    objective = lambda r: float(np.sum(c * np.exp2(-2.0 * r)))  # noqa: E731
    reference = minimize(objective, np.full(8, 3.0), method="SLSQP",
                         constraints=[{"type": "eq", "fun": lambda r: r.sum() - 24.0}])
    assert objective(baq_closed_form(torch.from_numpy(c), 3.0).numpy()) <= reference.fun + 1e-9


def test_weighted_closed_form_equalises_loss_per_weight() -> None:
    c, n = _sensitivity(6, seed=2), torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0, 32.0], dtype=torch.float64)
    bits = baq_closed_form(c, 4.0, cost=n)
    assert (n * bits).sum().item() == pytest.approx(4.0 * n.sum().item())
    per_weight = c * torch.exp2(-2 * bits) / n
    assert torch.allclose(per_weight, per_weight[0].expand(6), rtol=1e-10)


@pytest.mark.parametrize("method", ["baq", "ilp", "rank", "qbert"])
@pytest.mark.parametrize("budget", [2.0, 3.0, 4.0, 5.5])
def test_allocation_meets_the_budget_exactly_with_equal_costs(method: str, budget: float) -> None:
    bits = allocate_bits(_sensitivity(40), None, budget, method=method, choices=(2, 3, 4, 8))
    assert set(bits.tolist()) <= {2, 3, 4, 8}
    assert bits.sum().item() == int(budget * 40)  # every integer total reachable is reached


@pytest.mark.parametrize("method", ["baq", "ilp", "rank"])
def test_allocation_never_exceeds_a_weighted_budget(method: str) -> None:
    cost = torch.tensor([64.0, 64, 128, 256, 256, 512, 64, 1024])
    bits = allocate_bits(_sensitivity(8, 3), cost, 3.3, method=method)
    assert (cost * bits).sum().item() <= 3.3 * cost.sum().item()
    assert (cost * bits).sum().item() > 3.3 * cost.sum().item() - 4 * cost.max().item()


def test_ilp_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    table = np.sort(rng.uniform(0, 1, (8, 3)), axis=1)[:, ::-1].copy()  # loss falls with bits
    cost, choices, budget = rng.integers(1, 10, 8).astype(float), (2, 4, 8), 4.2
    best = min(
        (sum(table[i, p] for i, p in enumerate(combo)), combo)
        for combo in itertools.product(range(3), repeat=8)
        if sum(cost[i] * choices[p] for i, p in enumerate(combo)) <= budget * cost.sum()
    )
    bits = allocate_bits(table, cost, budget, method="ilp", choices=choices)
    achieved = sum(table[i, choices.index(b)] for i, b in enumerate(bits.tolist()))
    assert achieved == pytest.approx(best[0])


def test_ilp_beats_or_equals_the_heuristics_on_the_model_loss() -> None:
    s = _sensitivity(12, 4)
    model_loss = lambda b: float((s * torch.exp2(-2.0 * b.double())).sum())  # noqa: E731
    exact = model_loss(allocate_bits(s, None, 3.5, "ilp"))
    assert exact <= model_loss(allocate_bits(s, None, 3.5, "baq")) + 1e-12
    assert exact <= model_loss(allocate_bits(s, None, 3.5, "rank")) + 1e-12


def test_rank_gives_more_bits_to_more_sensitive_units() -> None:
    s = torch.tensor([1.0, 5.0, 2.0, 10.0, 0.5, 3.0])
    bits = allocate_bits(s, None, 4.0, method="qbert", choices=(2, 8))
    assert bits.tolist() == [2, 8, 2, 8, 2, 2]  # the two most sensitive of six get 8 bits: 2*8 + 4*2 = 24


def test_bad_budget_choices_and_method_are_named() -> None:
    with pytest.raises(SpeechkitError, match="budget"):
        allocate_bits(_sensitivity(4), None, 1.5)
    with pytest.raises(SpeechkitError, match="choices"):
        allocate_bits(_sensitivity(4), None, 4.0, choices=(1, 4))
    with pytest.raises(SpeechkitError, match="method"):
        allocate_bits(_sensitivity(4), None, 4.0, method="nope")  # type: ignore[arg-type]
    assert math.isfinite(allocate_bits(_sensitivity(4), None, 2.0).float().mean().item())


def test_ilp_objective_never_rises_with_a_larger_budget() -> None:
    s = _sensitivity(10, 5)
    model_loss = lambda b: float((s * torch.exp2(-2.0 * b.double())).sum())  # noqa: E731
    losses = [model_loss(allocate_bits(s, None, budget, "ilp")) for budget in (2.0, 2.5, 3.0, 4.0, 6.0, 8.0)]
    assert losses == sorted(losses, reverse=True)


@pytest.mark.parametrize("method", ["rank", "qbert", "cptquant"])
def test_rank_does_not_starve_a_sensitive_block_after_the_top_one_takes_8_bits(method: str) -> None:
    # Q-BERT Omega and target weights of a 2+2-layer Whisper (d_model 32, ffn 64): decoder blocks cost 3/2 of an
    # encoder block. The old widest-first greedy gave [2, 3, 8, 2]: decoder.1 (Omega 31) got 2 bits while
    # encoder.1 (Omega 0.06) took the 3 that the leftover budget could buy for the smaller block.
    omega = torch.tensor([0.0126, 0.0558, 64.87, 31.32])
    cost = torch.tensor([8192.0, 8192, 12288, 12288])
    bits = allocate_bits(omega, cost, 4.0, method=method, choices=(2, 3, 4, 8))
    assert (cost * bits).sum().item() == 4.0 * cost.sum().item()  # the budget is met exactly
    order = torch.argsort(omega, descending=True)
    assert bits[order].tolist() == sorted(bits.tolist(), reverse=True)  # monotone in Omega
    assert bits.tolist() == [4, 4, 4, 4]  # the proxy's optimum: 4+4+4+4 beats 8+3+... and 8+2+2+2


@pytest.mark.parametrize("seed", range(6))
def test_rank_is_monotone_within_equal_cost_and_leaves_no_usable_slack(seed: int) -> None:
    rng = np.random.default_rng(seed)
    units = 12
    score = np.exp(rng.uniform(-6, 6, units))
    cost = rng.choice([2.0, 3.0], units)  # two block sizes, like encoder / decoder blocks
    budget = 4.0
    bits = allocate_bits(torch.from_numpy(score), torch.from_numpy(cost), budget, "qbert").numpy()
    for i in range(units):
        for j in range(units):
            if cost[i] == cost[j] and score[i] > score[j]:
                assert bits[i] >= bits[j], (i, j, bits)
    slack = budget * cost.sum() - float((cost * bits).sum())
    assert slack >= 0
    step = {2: 1, 3: 1, 4: 4, 8: np.inf}  # bits to the next choice of (2, 3, 4, 8)
    assert all(cost[i] * step[int(bits[i])] > slack for i in range(units))  # no unit could still be raised


def test_rank_accepts_negative_scores_as_insensitive() -> None:
    bits = allocate_bits(torch.tensor([-0.5, 2.0, -0.1, 1.0]), None, 3.0, method="cptquant", choices=(2, 4))
    assert bits.tolist() == [2, 4, 2, 4]
