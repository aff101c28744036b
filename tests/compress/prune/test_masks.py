from types import SimpleNamespace

import pytest
import torch
from torch import nn

from speechkit.compress.prune.callback import GradualPruning
from speechkit.compress.prune.masks import GradualSchedule, MaskManager, cubic_sparsity, find_linears
from speechkit.errors import SpeechkitError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def test_cubic_schedule_endpoints_and_monotone() -> None:
    values = [cubic_sparsity(t, 0.8, 0.1, start=10, end=110) for t in range(0, 130)]
    assert values[0] == values[10] == pytest.approx(0.1) and values[110] == values[129] == pytest.approx(0.8)
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert cubic_sparsity(60, 0.8, 0.0, 10, 110) == pytest.approx(0.8 * (1 - 0.5**3))


def test_schedule_prunes_at_the_end_step() -> None:
    schedule = GradualSchedule(final=0.5, start=0, end=25, every=10)
    assert [t for t in range(40) if schedule.should_prune(t)] == [0, 10, 20, 25]


def test_masked_weights_stay_zero_through_adamw_with_weight_decay() -> None:
    model = _model()
    manager = MaskManager(model, ["0", "2"])
    manager.prune(0.6)
    assert all(s == pytest.approx(0.6, abs=0.01) for s in manager.sparsity().values())
    zeros = {name: m.weight == 0 for name, m in manager.modules.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    x = torch.randn(8, 16)
    for _ in range(10):
        optimizer.zero_grad()
        model(x).pow(2).sum().backward()
        optimizer.step()
        manager.apply()
    for name, m in manager.modules.items():
        assert bool((m.weight[zeros[name]] == 0).all())


def test_callback_follows_the_schedule() -> None:
    model = _model()
    callback = GradualPruning(["*"], GradualSchedule(final=0.5, start=0, end=4, every=2))
    callback.on_fit_start(None, model)
    for step in range(6):
        trainer = SimpleNamespace(global_step=step)
        callback.on_train_batch_start(trainer, model, None, step)
        callback.on_train_batch_end(trainer, model, None, None, step)
    assert callback.manager is not None
    assert all(s == pytest.approx(0.5, abs=0.01) for s in callback.manager.sparsity().values())


def test_pattern_matching_nothing_is_named() -> None:
    assert list(find_linears(_model(), "*")) == ["0", "2"]
    with pytest.raises(SpeechkitError, match="decoder"):
        MaskManager(_model(), ["decoder.*"])
    with pytest.raises(SpeechkitError, match="1"):  # a ReLU, not a Linear
        find_linears(_model(), ["1"])
