import lightning as L
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.optim import WarmupEMA, ema_decay


def test_the_decay_warms_up_to_its_cap():
    assert ema_decay(0, 0.999) == pytest.approx(1 / 10)
    assert ema_decay(1, 0.999) == pytest.approx(2 / 11)
    assert ema_decay(90, 0.999) == pytest.approx(91 / 100)
    assert ema_decay(10_000, 0.999) == 0.999  # (1 + n) / (10 + n) > 0.999 once n > 8,990
    assert ema_decay(0, 0.9, warmup=False) == 0.9
    assert ema_decay(8, 0.999, warmup_offset=4.0) == pytest.approx(9 / 12)  # a window of (c + n) / (c - 1) = 4


def test_bad_settings_are_refused():
    with pytest.raises(SpeechkitError, match="decay"):
        WarmupEMA(decay=1.0)
    with pytest.raises(SpeechkitError, match="every_n_steps"):
        WarmupEMA(every_n_steps=0)
    with pytest.raises(SpeechkitError, match="warmup_offset"):
        WarmupEMA(warmup_offset=1.0)  # d_n = 1: the average would never leave the first weights


class Line(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return (self.layer(batch[0]) - 1.0).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Trajectory(L.Callback):
    """The live weights after every optimizer step (before the average is copied in at the end)."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.weights.append(pl_module.layer.weight.detach().clone())


def _data() -> torch.utils.data.DataLoader:
    """Three equal batches an epoch: the trajectory depends on the step count alone, not on where an epoch that a
    resume restarts begins."""
    batch = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(batch.repeat(3, 1)), batch_size=2)


def _trainer(tmp_path, steps: int, callbacks: list) -> L.Trainer:
    return L.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, callbacks=callbacks)


@pytest.mark.parametrize("cap, offset", [(0.5, 10.0), (0.9, 4.0)])
def test_the_model_ends_with_the_warmed_up_average_of_its_trajectory(tmp_path, cap, offset):
    torch.manual_seed(0)
    model, trajectory = Line(), Trajectory()
    _trainer(tmp_path, 6, [WarmupEMA(decay=cap, warmup_offset=offset), trajectory]).fit(model, _data())
    expected = trajectory.weights[0]
    for n, w in enumerate(trajectory.weights[1:], start=1):  # the first update copies; then d = min(cap, ...)
        d = min(cap, (1 + n) / (offset + n))
        expected = d * expected + (1 - d) * w
    torch.testing.assert_close(model.layer.weight.detach(), expected)
    assert not torch.allclose(expected, trajectory.weights[-1])  # the average is not the last weights


def test_a_resumed_run_continues_the_average_exactly(tmp_path):
    torch.manual_seed(0)
    straight = Line()
    _trainer(tmp_path / "a", 6, [WarmupEMA(decay=0.5)]).fit(straight, _data())

    torch.manual_seed(0)
    first = Line()
    save = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "b", save_last=True)  # after epoch 0: step 3
    _trainer(tmp_path / "b", 3, [WarmupEMA(decay=0.5), save]).fit(first, _data())
    ckpt = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)
    assert set(ckpt) >= {"state_dict", "current_model_state", "averaging_state"}  # the average is the state_dict
    resumed = Line()
    _trainer(tmp_path / "c", 6, [WarmupEMA(decay=0.5)]).fit(resumed, _data(), ckpt_path=tmp_path / "b" / "last.ckpt")
    torch.testing.assert_close(resumed.layer.weight, straight.layer.weight)
