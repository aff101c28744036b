"""``speechkit sharpness``: Hessian top eigenvalue and trace of a trained checkpoint's training loss.

The curvature estimators live in :mod:`speechkit.curvature`; this driver loads the task
(:func:`speechkit.checkpoints.load_task`), builds the data module of a training run's configuration (``-c`` and
overrides, :mod:`speechkit.config`) and reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from torch import Tensor

from speechkit.commands import command
from speechkit.config import FitArgs
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


def datamodule_from_config(config: str | Path | Sequence[str]) -> Any:
    """The data module of a training run's configuration: a YAML file, or ``speechkit fit`` arguments (``-c FILE``
    and overrides) resolved by :func:`speechkit.config.resolve_fit_config`."""
    from speechkit.config import resolve_fit_config

    args = ["-c", str(config)] if isinstance(config, (str, Path)) else list(config)
    return resolve_fit_config(args, require=("data",)).datamodule()


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


@command(fit_config=True)
def sharpness(
    checkpoint: str,
    *,
    config: FitArgs = FitArgs(),
    model_class: Optional[str] = None,
    batches: int = 4,
    iters: int = 20,
    tol: float = 1e-3,
    samples: int = 32,
    seed: int = 0,
) -> None:
    """Hessian top eigenvalue and trace of the training loss of a trained checkpoint.

    Power iteration gives the top eigenvalue, Hutchinson's estimator the trace, on ``--batches`` batches of the
    validation loader of the data module of ``-c CONFIG``. The loss is what the module's ``training_step``
    returns, in eval mode (no dropout).

    Args:
        checkpoint: Lightning ``.ckpt`` file.
        config: the training run whose ``data`` section builds the batches (its ``model`` section is not used).
        model_class: ``package.module:Class`` of the LightningModule (default: ``hyper_parameters._class_path``).
        batches: number of validation batches.
        iters: power-iteration steps.
        tol: power-iteration relative tolerance.
        samples: Hutchinson probes per batch.
        seed: seed of the random probes.

    Examples:
        speechkit sharpness exp/fsdd/checkpoints/last.ckpt -c conf/whisper/fsdd_tiny_en.yaml --batches 2
        speechkit sharpness run.ckpt -c conf.yaml --data.init_args.config.val_batch_size=8
    """
    if not config:
        raise SpeechkitError("expected the data: -c CONFIG (a LightningCLI YAML with a 'data' section)")
    if batches < 1:
        raise SpeechkitError(f"--batches: expected >= 1, got {batches}")
    module = load_lightning_module(checkpoint, model_class)
    module.eval()
    loaded = _val_batches(datamodule_from_config(config.args), module, batches)
    report = sharpness_report(module, lambda batch: step_loss(module, batch), loaded,
                              iters=iters, tol=tol, n_samples=samples, seed=seed)
    print("\n".join(report.lines()))
