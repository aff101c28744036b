"""WSD / WSD-S schedules: boundaries, decay areas, scheduler state, YAML building, WSD-S resume in Lightning."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.checkpoints import load_checkpoint
from speechkit.errors import SpeechkitError
from speechkit.optim import (StepCheckpoint, TimeBudgetDecay, WarmupDecay, WarmupStableDecay, WarmupStableDecayS,
                             decay_multiplier, wsd_lambda, wsd_s_lambda)

SHAPES = ["linear", "cosine", "1-sqrt", "exponential"]


@pytest.mark.parametrize("shape", SHAPES)
def test_boundaries_continuity_and_monotone_decay(shape):
    warmup, total, frac, r = 10, 200, 0.2, 0.1
    m = [wsd_lambda(t, warmup, total, frac, shape, r) for t in range(total + 5)]
    assert m[0] == 0.0 and m[5] == 0.5 and m[warmup] == 1.0  # linear warm-up reaches 1 exactly at T_w
    assert all(v == 1.0 for v in m[warmup:160])  # stable; decay starts at T_s = 160
    assert m[160] == 1.0 and m[total] == pytest.approx(r) and all(v == pytest.approx(r) for v in m[total:])
    decay = m[160:total + 1]
    assert all(b <= a for a, b in zip(decay, decay[1:]))
    assert abs(m[161] - m[160]) < 0.25  # no jump into the decay


@pytest.mark.parametrize("shape,area", [("linear", 1 / 2), ("cosine", 1 / 2), ("1-sqrt", 1 / 3)])
def test_decay_area(shape, area):
    n = 100000  # midpoint rule: exact up to O(1/n^2) (1-sqrt: O(n^-1.5))
    got = sum(decay_multiplier((i + 0.5) / n, shape, 0.0) for i in range(n)) / n
    assert got == pytest.approx(area, abs=1e-6)
    assert decay_multiplier(0.0, shape) == 1.0 and decay_multiplier(1.0, shape) == 0.0


def test_exponential_is_geometric():
    assert decay_multiplier(0.5, "exponential", 0.01) == pytest.approx(0.1)
    assert wsd_lambda(150, 0, 200, 0.5, "exponential", 0.25) == pytest.approx(0.5)


def test_warmup_decay_baselines():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    sched = WarmupDecay(opt, warmup_steps=10, total_steps=110, shape="cosine")
    lrs = []
    for _ in range(111):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[10] == 2.0 and lrs[60] == pytest.approx(1.0) and lrs[110] == pytest.approx(0.0, abs=1e-12)
    assert lrs[35] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.25)))


def test_wsd_s_decays_before_each_budget_and_restarts():
    budgets = [100, 200, 400]
    m = [wsd_s_lambda(t, 10, budgets, 0.1, "linear") for t in range(401)]
    assert m[89] == 1.0 and m[90] == 1.0 and m[95] == pytest.approx(0.5) and m[99] == pytest.approx(0.1)
    assert m[100] == 1.0  # resumed at lr_max right after the budget
    assert m[190] == 1.0 and m[195] == pytest.approx(0.5)
    assert m[380] == 1.0 and m[390] == pytest.approx(0.5) and m[400] == 0.0


def test_state_dict_keeps_only_the_step_so_a_branch_takes_its_own_settings():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    main = WarmupStableDecay(opt, warmup_steps=0, total_steps=1000, decay_fraction=0.0)  # constant main run
    for _ in range(90):
        opt.step()
        main.step()
    state = main.state_dict()
    assert "total_steps" not in state and state["last_epoch"] == 90
    branch = WarmupStableDecay(opt, warmup_steps=0, total_steps=100, decay_fraction=0.1, shape="linear")
    branch.load_state_dict(state)
    assert branch.total_steps == 100
    opt.step()
    branch.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.9)  # step 91 of a 90..100 linear decay


def test_built_from_yaml_as_a_lightning_scheduler_callable():
    from jsonargparse import ArgumentParser
    from lightning.pytorch.cli import LRSchedulerCallable

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--scheduler", type=LRSchedulerCallable)
    for class_path, init in (("speechkit.optim.WarmupStableDecay",
                              {"warmup_steps": 5, "total_steps": 50, "decay_fraction": 0.2, "shape": "cosine"}),
                             ("speechkit.optim.WarmupStableDecayS", {"warmup_steps": 5, "budgets": [20, 50]}),
                             ("speechkit.optim.WarmupDecay", {"warmup_steps": 5, "total_steps": 50})):
        cfg = parser.parse_object({"scheduler": {"class_path": class_path, "init_args": init}})
        build = parser.instantiate(cfg).scheduler
        sched = build(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0))
        assert type(sched).__name__ == class_path.rsplit(".", 1)[1]
    with pytest.raises(Exception, match="shape"):
        parser.parse_object({"scheduler": {"class_path": "speechkit.optim.WarmupStableDecay",
                                           "init_args": {"warmup_steps": 5, "total_steps": 50, "shape": "sqrt"}}})


def test_bad_input_names_the_argument():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(SpeechkitError, match="shape"):
        WarmupStableDecay(opt, 10, 100, shape="sqrt")
    with pytest.raises(SpeechkitError, match="decay_fraction"):
        wsd_lambda(0, 10, 100, decay_fraction=1.5)
    with pytest.raises(SpeechkitError, match="warmup_steps"):
        wsd_lambda(0, 200, 100)
    with pytest.raises(SpeechkitError, match="min_lr_ratio"):
        wsd_lambda(0, 10, 100, shape="exponential", min_lr_ratio=0.0)
    with pytest.raises(SpeechkitError, match="budgets"):
        WarmupStableDecayS(opt, 10, [50, 40])


def test_wsd_s_in_lightning_resumes_at_lr_max_from_the_decayed_checkpoint(tmp_path):
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            self.lrs: list[float] = []

        def training_step(self, batch, batch_idx):
            self.lrs.append(self.optimizers().param_groups[0]["lr"])
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            sched = WarmupStableDecayS(opt, warmup_steps=2, budgets=[10, 20], decay_fraction=0.4, shape="linear")
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 2)), batch_size=2)
    kwargs = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  default_root_dir=tmp_path)
    first = Tiny()
    L.Trainer(max_steps=10, callbacks=[StepCheckpoint([10])], **kwargs).fit(first, data)
    ckpt = tmp_path / "budgets" / "step-10.ckpt"
    assert ckpt.is_file()
    assert first.lrs[9] == pytest.approx(0.1 * 0.25)  # decay 6..10: step 9 is 3/4 of the way
    resumed = Tiny()
    L.Trainer(max_steps=12, **kwargs).fit(resumed, data, ckpt_path=ckpt)
    assert resumed.lrs[0] == pytest.approx(0.1)  # first step after the budget: lr_max again
    decayed = load_checkpoint(ckpt)["state_dict"]["layer.weight"]
    restarted = Tiny()
    restarted.load_state_dict(load_checkpoint(ckpt)["state_dict"])
    torch.testing.assert_close(restarted.layer.weight, decayed)


def _river_valley_run(multipliers: list[float], seed: int, lr: float = 0.018, h: float = 100.0) -> list[float]:
    """SGD on L(u, v) = log(1 + e^-u) + h v^2 / 2 with N(0, 1) gradient noise on the hill coordinate v.

    lr = 0.9 * 2/h: at a constant lr the hill term stays at lr / (2 (2 - lr h)) = 0.045 on average.
    """
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(multipliers), generator=g, dtype=torch.float64).tolist()
    u, v, losses = 0.0, 0.0, []
    for m, xi in zip(multipliers, noise):
        eta = lr * m
        u, v = u + eta / (1 + math.exp(u)), v - eta * (h * v + xi)
        losses.append(math.log1p(math.exp(-u)) + 0.5 * h * v * v)
    return losses


def test_river_valley_toy_wsd_beats_constant_and_drops_inside_the_decay():
    total, decay_start = 1000, 900  # 10 % linear decay
    wsd = [wsd_lambda(t, 0, total, 0.1, "linear") for t in range(total)]
    for seed in range(5):
        constant, decayed = _river_valley_run([1.0] * total, seed), _river_valley_run(wsd, seed)
        end_constant, end_wsd = sum(constant[-50:]) / 50, sum(decayed[-10:]) / 10
        before_decay = sum(decayed[decay_start - 50:decay_start]) / 50
        assert end_wsd < end_constant, seed
        assert before_decay - end_wsd > 0.01, seed  # the gain appears inside the decay window


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_budget_decay_places_the_decay_in_time_whatever_the_step_rate():
    clock = _FakeClock()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    sched = TimeBudgetDecay(opt, budget_seconds=100.0, warmup_steps=4, decay_fraction=0.5, shape="linear",
                            min_lr_ratio=0.1, clock=clock)
    lrs = []
    for t in [1.0, 2.0, 3.0, 4.0, 10.0, 49.0, 50.0, 75.0, 100.0, 130.0]:  # uneven step times
        clock.now = t
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.5])  # warm-up counts steps: 2.0 * step / 4
    assert lrs[3:6] == pytest.approx([2.0, 2.0, 2.0])  # stable until half the budget
    assert lrs[6] == pytest.approx(2.0) and lrs[7] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert lrs[8:] == pytest.approx([0.2, 0.2])  # min_lr_ratio at the budget and after


def test_time_budget_decay_resumes_from_the_saved_elapsed_time(tmp_path, monkeypatch):
    import speechkit.optim.wsd as wsd

    now = [1000.0]
    monkeypatch.setattr(wsd.time, "perf_counter", lambda: now[0])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    first = TimeBudgetDecay(opt, budget_seconds=100.0, decay_fraction=0.5, shape="linear")
    now[0] += 60.0
    opt.step()
    first.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.8)
    torch.save(first.state_dict(), tmp_path / "sched.pt")
    now[0] = 5000.0  # a new process, much later: the clock restarts but the saved 60 s count
    resumed = TimeBudgetDecay(opt, budget_seconds=100.0, decay_fraction=0.5, shape="linear")
    resumed.load_state_dict(torch.load(tmp_path / "sched.pt", weights_only=True))
    now[0] += 20.0
    opt.step()
    resumed.step()
    assert resumed.last_epoch == 2 and opt.param_groups[0]["lr"] == pytest.approx(0.4)  # 80 s of 100


def test_time_budget_decay_from_yaml_and_its_bad_input():
    from jsonargparse import ArgumentParser
    from lightning.pytorch.cli import LRSchedulerCallable

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--scheduler", type=LRSchedulerCallable)
    cfg = parser.parse_object({"scheduler": {"class_path": "speechkit.optim.TimeBudgetDecay",
                                             "init_args": {"budget_seconds": 600, "clock": "cpu"}}})
    sched = parser.instantiate(cfg).scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0))
    assert isinstance(sched, TimeBudgetDecay) and sched.clock == "cpu"
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    for kwargs, name in (({"budget_seconds": 0}, "budget_seconds"), ({"budget_seconds": 1, "clock": "gpu"}, "clock"),
                         ({"budget_seconds": 1, "decay_fraction": 2.0}, "decay_fraction"),
                         ({"budget_seconds": 1, "warmup_steps": -1}, "warmup_steps")):
        with pytest.raises(SpeechkitError, match=name):
            TimeBudgetDecay(opt, **kwargs)
