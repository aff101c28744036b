"""Run logs people open: ``metrics.csv`` for scripts and a TensorBoard event file for eyes, in one version folder.

``CSVTensorBoardLogger`` is the logger of the shipped Whisper configs. Lightning's ``CSVLogger`` and
``TensorBoardLogger`` given as a list do not write into one folder: each takes the next free ``version_N`` when it
first writes, so the second one finds the first one's fresh ``version_0`` and takes ``version_1`` (and every run
uses two numbers); and ``--trainer.logger.init_args.save_dir`` on a list of loggers sets only the last one's, so a
recipe that moves its run would split it. One logger that writes both keeps ``--trainer.logger.init_args.*`` working
and puts ``metrics.csv``, ``hparams.yaml``, ``events.out.tfevents.*`` and the checkpoints (Lightning takes their
folder from the first logger) side by side.
"""

from __future__ import annotations

import importlib.util
from argparse import Namespace
from typing import Any, Optional, Union

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from speechkit.errors import SpeechkitError


def require_tensorboard() -> None:
    """Fail in one line, before training, when neither ``tensorboard`` nor ``tensorboardX`` is installed."""
    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        raise SpeechkitError("speechkit.loggers.CSVTensorBoardLogger needs TensorBoard: pip install -e "
                             "'.[tensorboard]' (or set trainer.logger to lightning.pytorch.loggers.CSVLogger)")


class CSVTensorBoardLogger(CSVLogger):
    """Lightning's ``CSVLogger`` that also writes every metric to a TensorBoard event file in its own version
    folder: ``<save_dir>/<name>/version_N/{metrics.csv, hparams.yaml, events.out.tfevents.*}`` (see the module
    docstring for why not two loggers).

    Args:
        save_dir: the folder holding ``<name>/``.
        name: the experiment folder (``lightning_logs``); ``""`` or ``None``: versions directly in ``save_dir``.
        version: ``version_<int>`` or a folder name; ``None``: the next free ``version_N``.
        prefix: put before every metric name.
        flush_logs_every_n_steps: how often ``metrics.csv`` is written out (the event file flushes itself).

    Raises:
        SpeechkitError: TensorBoard is not installed.
    """

    def __init__(
        self,
        save_dir: str,
        name: Optional[str] = "lightning_logs",
        version: Optional[Union[int, str]] = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        require_tensorboard()
        super().__init__(save_dir, name, version, prefix, flush_logs_every_n_steps)
        self._tensorboard: Optional[TensorBoardLogger] = None

    @property
    def tensorboard(self) -> TensorBoardLogger:
        """The TensorBoard logger of :attr:`log_dir` (made on first use, with this logger's resolved version)."""
        if self._tensorboard is None:
            self._tensorboard = TensorBoardLogger(self.save_dir, name=self.name, version=self.version,
                                                  prefix=self._prefix, default_hp_metric=False)
        return self._tensorboard

    @rank_zero_only
    def log_hyperparams(self, params: Optional[Union[dict[str, Any], Namespace]] = None) -> None:
        super().log_hyperparams(params)
        self.tensorboard.log_hyperparams(params or {})

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        super().log_metrics(dict(metrics), step)
        self.tensorboard.log_metrics(dict(metrics), step)

    @rank_zero_only
    def save(self) -> None:
        super().save()
        self.tensorboard.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self._tensorboard is not None:
            self._tensorboard.finalize(status)
