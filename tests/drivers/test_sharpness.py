"""``speechkit sharpness`` on a Lightning checkpoint: lambda_max and Tr(H) of an exactly known quadratic."""

from __future__ import annotations

import pytest
import torch

from speechkit.checkpoints import load_checkpoint
from speechkit.errors import SpeechkitError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = '''
import lightning as L
import torch
from torch import nn


class TinyRegression(L.LightningModule):
    def __init__(self, dim: int = 2):
        super().__init__()
        self.save_hyperparameters()
        self.linear = nn.Linear(dim, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.linear(x).squeeze(-1), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class TinyData(L.LightningDataModule):
    def __init__(self, a: float = 2.0, b: float = 0.5):
        super().__init__()
        signs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
        self.x = signs * torch.tensor([a, b])
        self.y = torch.tensor([1.0, 0.0, 2.0, -1.0])

    def _loader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=4)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()
'''


def test_sharpness_cli_on_a_lightning_checkpoint(tmp_path, monkeypatch, capsys):
    import lightning as L

    from speechkit.commands import command_main

    main = command_main("speechkit.drivers.sharpness:sharpness", "speechkit sharpness")

    (tmp_path / "tiny_sharp.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import tiny_sharp

    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(tiny_sharp.TinyRegression(), tiny_sharp.TinyData())
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  class_path: tiny_sharp.TinyData\n  init_args:\n    a: 2.0\n    b: 0.5\n")
    # x columns are +-a, +-b with zero mean: H = diag(2a^2, 2b^2, 2) = diag(8, 0.5, 2) for MSE (exact).
    assert main([str(ckpt), "--config", str(config), "--model-class", "tiny_sharp:TinyRegression",
                 "--batches", "1", "--iters", "100", "--tol", "1e-10", "--samples", "3"]) == 0
    out = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert float(out["top_eigenvalue"]) == pytest.approx(8.0, rel=1e-4)
    assert float(out["hessian_trace"]) == pytest.approx(10.5, rel=1e-6)
    assert int(out["n_params"]) == 3

    with pytest.raises(SpeechkitError, match="_class_path"):  # saved without LightningCLI and no --model-class
        main([str(ckpt), "--config", str(config)])
    with pytest.raises(SpeechkitError, match="checkpoint"):
        main([str(tmp_path / "missing.ckpt"), "--config", str(config)])

    state = load_checkpoint(ckpt)  # as LightningCLI stores it: the class in hyper_parameters
    state["hyper_parameters"]["_class_path"] = "tiny_sharp.TinyRegression"
    torch.save(state, ckpt)
    assert main([str(ckpt), "--config", str(config), "--batches", "1", "--iters", "100", "--tol", "1e-10"]) == 0
    assert "top_eigenvalue: 8" in capsys.readouterr().out

    # The data come from the resolved config: a second -c file and a --key=value override apply (H_00 = 2 a^2).
    (tmp_path / "b.yaml").write_text("data:\n  init_args:\n    b: 2.5\n")
    assert main([str(ckpt), "-c", str(config), "-c", str(tmp_path / "b.yaml"), "--data.init_args.a=3.0",
                 "--batches", "1", "--iters", "100", "--tol", "1e-10", "--samples", "3"]) == 0
    out = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert float(out["top_eigenvalue"]) == pytest.approx(18.0, rel=1e-4)
    assert float(out["hessian_trace"]) == pytest.approx(18.0 + 12.5 + 2.0, rel=1e-6)
