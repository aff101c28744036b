"""``speechkit fit|validate|test|predict``: LightningCLI with speechkit's checkpoint and signal behaviour.

On top of Lightning's ``LightningCLI`` (see :func:`run`):

* checkpoints are written atomically: ``AtomicCheckpointIO`` is added to ``trainer.plugins`` when the config sets
  no ``CheckpointIO``, and every checkpoint is read ``weights_only`` (``speechkit.checkpoints``);
* SIGTERM and SIGINT stop fitting at the next batch boundary (Lightning's ``SIGTERMException``), save a resumable
  ``last.ckpt`` in the run's checkpoint folder (``SignalCheckpoint``) and exit 143 / 130 (128 + the signal), so a
  ``set -e`` script or a scheduler sees the interruption; a second Ctrl-C stops at once;
* with ``--ckpt_path``, what the user typed wins: init arguments given in the config or on the command line replace
  the checkpoint's saved hyper-parameters (output paths, decoding options), except the arguments that fix the
  weights' shapes or vocabulary (a task's ``checkpoint_fixed_args``), which are refused with a one-line reason.
  Lightning's own ``_parse_ckpt_path`` applies the saved values over everything the user gave.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

from speechkit.checkpoints import (
    AtomicCheckpointIO,
    SignalCheckpoint,
    import_task_class,
    load_checkpoint,
    split_hparams,
)

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def with_atomic_checkpoint_io(plugins: Any) -> list[Any]:
    """``plugins`` (None, one plugin or a list) plus an ``AtomicCheckpointIO`` unless one is a ``CheckpointIO``."""
    from lightning.fabric.plugins import CheckpointIO

    listed = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if any(isinstance(plugin, CheckpointIO) for plugin in listed):
        return listed
    return [*listed, AtomicCheckpointIO()]


class SpeechkitCLI(LightningCLI):
    """``LightningCLI`` with atomic checkpoint saving, a checkpoint on SIGTERM / SIGINT, and user-first
    ``--ckpt_path`` hyper-parameters (see the module docstring)."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Lightning's parsing without its warning that ``args`` and ``sys.argv`` are both set: speechkit always
        passes the command line as ``args`` (``sys.argv`` holds the sub-command name, or another command's argv when
        ``multistage`` or ``bins`` resolve a config)."""
        self._speechkit_args = args
        self.config = parser.parse_object(args) if isinstance(args, (dict, Namespace)) else parser.parse_args(args)

    def _given_model_args(self, subcommand: str) -> dict[str, Any]:
        """The model init arguments the user gave (config files and command line), without defaults."""
        explicit = self.parser.parse_args(self._speechkit_args, defaults=False)
        model = (explicit.get(subcommand) or {}).get("model") if explicit.get(subcommand) else None
        if model is None:
            return {}
        model = model.as_dict() if hasattr(model, "as_dict") else dict(model)
        return dict(model.get("init_args") or {}) | dict(model.get("dict_kwargs") or {})

    def _parse_ckpt_path(self) -> None:
        """Apply the checkpoint's saved hyper-parameters under what the user gave (Lightning applies them over it)."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return  # 'last' / 'best' / 'hpc' are Lightning's to resolve
        saved = dict(load_checkpoint(ckpt_path).get("hyper_parameters") or {})
        saved.pop("_instantiator", None)
        if not saved:
            return
        class_path = saved.pop("_class_path", None)
        configured = (self.config[subcommand].get("model") or {}).get("class_path")
        what = f"--ckpt_path {ckpt_path}: hyper_parameters._class_path"
        cls = import_task_class(str(class_path), what) if class_path else (
            import_task_class(str(configured), "model.class_path", trusted=True) if configured else LightningModule)
        kept, replaced = split_hparams(cls, saved, self._given_model_args(subcommand), f"--ckpt_path {ckpt_path}")
        if replaced:
            changes = ", ".join(f"{name}={new!r} (checkpoint: {old!r})" for name, (old, new) in replaced.items())
            print(f"speechkit {subcommand}: given values replace the checkpoint's: {changes}", file=sys.stderr)
        model = {"class_path": class_path, "dict_kwargs": kept} if class_path else kept
        try:
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The configured trainer, with ``AtomicCheckpointIO`` when the config names no ``CheckpointIO``."""
        if "plugins" not in kwargs:
            trainer = self._get(self.config_init, "trainer", default={}) or {}
            kwargs["plugins"] = with_atomic_checkpoint_io(trainer.get("plugins"))
        return super().instantiate_trainer(**kwargs)


@contextlib.contextmanager
def signal_exit_codes() -> Iterator[list[int]]:
    """Route SIGTERM and SIGINT to Lightning's graceful stop and remember which arrived (to exit 128 + signal).

    While a ``Trainer`` runs, Lightning's SIGTERM handler (which calls the one installed here) sets
    ``trainer.received_sigterm``; the loops then raise ``SIGTERMException`` at the next batch boundary. SIGINT is
    sent down the same path instead of raising ``KeyboardInterrupt`` mid-step; a second SIGINT raises it. Outside a
    ``Trainer`` (building the model, parsing) the process stops at once.

    Yields:
        The signals received, in order (empty when none).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        if not received:
            received.append(signum)
        if signal.getsignal(signal.SIGTERM) is on_sigterm:  # no Trainer has taken over SIGTERM: stop now
            raise SystemExit(128 + signum)

    def on_sigint(signum: int, frame: Any) -> None:
        if received:  # a second Ctrl-C: stop at once (Lightning then exits without saving)
            raise KeyboardInterrupt
        received.append(signum)
        handler = signal.getsignal(signal.SIGTERM)
        if handler is on_sigterm or not callable(handler):
            raise KeyboardInterrupt
        handler(signum, frame)  # Lightning's SIGTERM handler: stop at the next batch boundary

    previous = {number: signal.getsignal(number) for number in EXIT_SIGNALS}
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def cli_kwargs(parser_kwargs: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The ``LightningCLI`` arguments of every speechkit command line: any task and data module (``class_path``),
    a ``SignalCheckpoint``; :func:`run` and the config resolver (``speechkit.config``) build the same parser."""
    return dict(
        model_class=LightningModule,
        datamodule_class=LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [SignalCheckpoint()]},
        parser_kwargs=parser_kwargs or {},
    )


def show_speechkit_logs() -> None:
    """speechkit's INFO lines (data checks, an added language token ...) on stderr, as Lightning shows its own.

    The ``speechkit`` logger is set to INFO; when the root logger has no handler (a plain command line), it gets
    one plain stderr handler, once. A root handler configured by the user (or by pytest) receives the records instead.
    """
    logger = logging.getLogger("speechkit")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def run(argv: Sequence[str], parser_kwargs: Optional[dict[str, Any]] = None) -> None:
    """Run ``SpeechkitCLI`` over any task (``model.class_path``) and data module (``data.class_path``).

    Raises:
        SystemExit: 128 + the signal (143 for SIGTERM, 130 for SIGINT) when a signal stopped the command (a
            resumable ``last.ckpt`` was saved if it was fitting).
    """
    show_speechkit_logs()
    with signal_exit_codes() as received:
        try:
            SpeechkitCLI(**cli_kwargs(parser_kwargs), args=list(argv))
        except (SystemExit, KeyboardInterrupt) as error:  # Lightning's SIGTERMException is a SystemExit
            if received:
                raise SystemExit(128 + received[0]) from None
            if isinstance(error, KeyboardInterrupt):
                raise SystemExit(128 + signal.SIGINT) from None
            raise
    if received:
        raise SystemExit(128 + received[0])
