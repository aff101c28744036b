"""``speechkit sharpness``: Hessian top eigenvalue and trace of a trained checkpoint's training loss.

The curvature estimators live in :mod:`speechkit.curvature`; this driver loads the task
(:func:`speechkit.checkpoints.load_task`), builds the data module from a LightningCLI YAML and reports.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from torch import Tensor

from speechkit.curvature import sharpness_report
from speechkit.errors import SpeechkitError


def load_lightning_module(checkpoint: str | Path, model_class: str | None = None) -> Any:
    """Load a LightningModule from a Lightning checkpoint (``weights_only``, :func:`speechkit.checkpoints.load_task`).

    The class is ``model_class`` ("package.module:Class" or "package.module.Class"; its module must be importable
    speechkit code or already imported) or else the ``_class_path`` that LightningCLI stores in the checkpoint's
    ``hyper_parameters``.
    """
    from speechkit.checkpoints import load_task

    return load_task(checkpoint, cls=model_class)


def datamodule_from_config(config: str | Path) -> Any:
    """Build the ``data`` section (class_path + init_args) of a LightningCLI YAML config."""
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    path = Path(config)
    if not path.is_file():
        raise SpeechkitError(f"config: file not found: {path}")
    data = (yaml.safe_load(path.read_text()) or {}).get("data")
    if data is None:
        raise SpeechkitError(f"config: {path} has no 'data' section")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data", fail_untyped=False)
    try:
        return parser.instantiate(parser.parse_object({"data": data})).data
    except Exception as error:  # jsonargparse reports the bad key in its message
        raise SpeechkitError(f"config: {path}: cannot build the data module: {error}") from error


def step_loss(module: Any, batch: Any, batch_idx: int = 0) -> Tensor:
    """The loss ``module.training_step`` returns (a tensor, or a dict with key 'loss')."""
    out = module.training_step(batch, batch_idx)
    loss = out["loss"] if isinstance(out, dict) else out
    if not isinstance(loss, Tensor):
        raise SpeechkitError(f"model: training_step returned {type(out).__name__}, expected a loss tensor or dict "
                             "with key 'loss'")
    return loss


def _val_batches(datamodule: Any, module: Any, n: int) -> list[Any]:
    from lightning.pytorch.utilities import move_data_to_device

    datamodule.setup("validate")
    batches = []
    for i, batch in enumerate(datamodule.val_dataloader()):
        if i >= n:
            break
        batches.append(move_data_to_device(batch, module.device))
    return batches


def main(argv: Sequence[str] | None = None) -> int:
    """``tools/sharpness.py CHECKPOINT --config conf.yaml``: lambda_max and Tr(H) of a trained model's loss."""
    parser = argparse.ArgumentParser(
        prog="sharpness",
        description="Hessian top eigenvalue (power iteration) and trace (Hutchinson) of the training loss of a "
                    "Lightning checkpoint, on --batches batches of the validation loader of the data module in "
                    "--config (a LightningCLI YAML). The loss is what the module's training_step returns, "
                    "in eval mode (no dropout).")
    parser.add_argument("checkpoint", help="Lightning .ckpt file")
    parser.add_argument("--config", required=True, help="LightningCLI YAML whose 'data' section builds the batches")
    parser.add_argument("--model-class", default=None,
                        help="package.module:Class of the LightningModule (default: hyper_parameters._class_path)")
    parser.add_argument("--batches", type=int, default=4, help="number of validation batches (default 4)")
    parser.add_argument("--iters", type=int, default=20, help="power-iteration steps (default 20)")
    parser.add_argument("--tol", type=float, default=1e-3, help="power-iteration relative tolerance")
    parser.add_argument("--samples", type=int, default=32, help="Hutchinson probes per batch (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.batches < 1:
        raise SpeechkitError(f"--batches: expected >= 1, got {args.batches}")
    module = load_lightning_module(args.checkpoint, args.model_class)
    module.eval()
    batches = _val_batches(datamodule_from_config(args.config), module, args.batches)
    report = sharpness_report(module, lambda batch: step_loss(module, batch), batches,
                              iters=args.iters, tol=args.tol, n_samples=args.samples, seed=args.seed)
    print("\n".join(report.lines()))
    return 0
