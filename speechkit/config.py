"""The one config resolver: a ``speechkit fit`` configuration resolved by LightningCLI's own parser.

``bins``, ``batch-sizes``, ``multistage``, ``sharpness`` and ``compare-strategies`` take the configuration of a
training run as ``speechkit fit`` does: ``-c FILE`` (repeatable) and overrides such as
``--data.init_args.config.num_buckets 3`` or ``--trainer.precision=bf16-mixed``, merged in the order given. They
read it here, through the parser ``speechkit fit`` builds (``speechkit.lightning_cli.cli_kwargs``): the same
merge, the same defaults and types, the same one-line error naming a misspelt key. Nothing reads a YAML tree by
hand. (The data options of one run are ``speechkit.data.config.DataConfig``; this module resolves a whole run.)

    resolved = resolve_fit_config(["-c", "conf/whisper/lora.yaml", "--trainer.precision=bf16-mixed"])
    resolved.get("trainer.precision")                       # 'bf16-mixed'
    resolved.get("data.init_args.config.bucket_duration_bins")
    task = resolved.model()                                 # built as LightningCLI builds it
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from speechkit.errors import SpeechkitError

# The top-level keys of a ``speechkit fit`` configuration (an option ``--<key>...`` belongs to the run).
FIT_KEYS = ("trainer", "model", "data", "seed_everything", "ckpt_path", "optimizer", "lr_scheduler")
CONFIG_FLAGS = ("-c", "--config")
# Stand-ins for a section a command does not need (its task comes from a checkpoint, it reads no data).
PLACEHOLDERS = {"model": "lightning.pytorch.LightningModule", "data": "lightning.pytorch.LightningDataModule"}


def is_fit_option(token: str) -> bool:
    """``--trainer.max_steps``, ``--model=...``, ``--seed_everything`` ...: an option of ``speechkit fit``."""
    if not token.startswith("--"):
        return False
    name = token[2:].split("=", 1)[0]
    return name.split(".", 1)[0] in FIT_KEYS


def split_fit_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(own, fit)``: the command's own arguments and the ``speechkit fit`` ones (``-c FILE``, ``--config=FILE``,
    ``--<fit key>... VALUE``), each list in the order given. A fit option without ``=`` takes the next token."""
    own: list[str] = []
    fit: list[str] = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        takes_next = token in CONFIG_FLAGS or (is_fit_option(token) and "=" not in token)
        if takes_next or token.startswith("--config=") or is_fit_option(token):
            fit.append(token)
            if takes_next:
                if index + 1 >= len(tokens):
                    raise SpeechkitError(f"{token}: expected a value")
                fit.append(tokens[index + 1])
                index += 1
        else:
            own.append(token)
        index += 1
    return own, fit


@dataclass(frozen=True)
class FitArgs:
    """``speechkit fit`` arguments given to another command: ``-c FILE`` and overrides, in the order typed.

    Args:
        args: the tokens, e.g. ``("-c", "conf/whisper/lora.yaml", "--trainer.max_steps", "10")``.
    """

    args: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.args)

    @property
    def files(self) -> list[str]:
        """The ``-c`` / ``--config`` files, in order."""
        files = [value for flag, value in zip(self.args, self.args[1:]) if flag in CONFIG_FLAGS]
        return files + [token.split("=", 1)[1] for token in self.args if token.startswith("--config=")]


class ResolvedConfig:
    """A resolved ``speechkit fit`` configuration: every key with its value or default, and its parts built.

    Args:
        config: the parsed configuration of the sub-command (``trainer``, ``model``, ``data`` ...).
        args: the arguments it was resolved from (for error messages).
    """

    def __init__(self, config: Any, args: Sequence[str]) -> None:
        self.config = config
        self.args = list(args)

    def get(self, key: str, default: Any = None) -> Any:
        """The value at a dotted key (``data.init_args.config.train_cuts``), or ``default`` where the config has
        no such key. Nested sections come back as plain dicts."""
        value = self.config.get(key, default) if key in self.config else default
        return value.as_dict() if hasattr(value, "as_dict") else value

    def has(self, key: str) -> bool:
        """Whether the resolved configuration sets ``key`` (given, or a default of its schema)."""
        return key in self.config and self.config.get(key) is not None

    def model(self) -> Any:
        """The task (``model``), instantiated as LightningCLI instantiates it."""
        from lightning.pytorch import LightningModule

        return self._instantiate("model", LightningModule)

    def datamodule(self) -> Any:
        """The data module (``data``), instantiated as LightningCLI instantiates it."""
        from lightning.pytorch import LightningDataModule

        return self._instantiate("data", LightningDataModule)

    def _instantiate(self, key: str, base: type) -> Any:
        from jsonargparse import ArgumentParser

        section = self.get(key)
        if not section or section.get("class_path") == PLACEHOLDERS.get(key):
            raise SpeechkitError(f"{' '.join(self.args) or 'the config'}: no {key!r} section (give -c CONFIG)")
        parser = ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(base, key, required=True, fail_untyped=False)
        return parser.instantiate(parser.parse_object({key: section}))[key]


@functools.lru_cache(maxsize=1)
def lightning_parser() -> Any:
    """The parser of ``speechkit fit|validate|test|predict`` (built once: a few seconds)."""
    from speechkit.lightning_cli import SpeechkitCLI, cli_kwargs

    class ResolvingCLI(SpeechkitCLI):
        """LightningCLI's parser only: no seed, no checkpoint, nothing instantiated, nothing run."""

        def _parse_ckpt_path(self) -> None: ...

        def _set_seed(self) -> None: ...

        def instantiate_classes(self) -> None: ...

        def _run_subcommand(self, subcommand: Optional[str]) -> None: ...

    stand_ins = [f"--{key}={class_path}" for key, class_path in PLACEHOLDERS.items()]
    return ResolvingCLI(**cli_kwargs({"exit_on_error": False}), args=["fit", *stand_ins]).parser


def resolve_fit_config(
    args: Sequence[str], subcommand: str = "fit", require: Sequence[str] = ("model", "data")
) -> ResolvedConfig:
    """Resolve ``speechkit <subcommand> ARGS`` (``-c`` files and overrides) without running or building anything.

    Args:
        args: ``-c FILE`` (repeatable) and ``--key value`` / ``--key=value`` overrides, as ``speechkit fit`` takes.
        subcommand: ``fit``, ``validate``, ``test`` or ``predict``.
        require: the sections the command needs (``model``, ``data``); a config may leave the others out (the
            task of ``sharpness`` comes from a checkpoint, ``batch-sizes`` reads no data).

    Raises:
        SpeechkitError: no configuration given; jsonargparse's errors (a misspelt key, a value of the wrong type)
            propagate and ``speechkit.cli`` prints them as one line.
    """
    if not args:
        raise SpeechkitError("expected a config: -c CONFIG.yaml (and overrides such as --trainer.precision=32)")
    placeholders = [f"--{key}={class_path}" for key, class_path in PLACEHOLDERS.items() if key not in require]
    config = lightning_parser().parse_args([subcommand, *placeholders, *args])
    return ResolvedConfig(config[subcommand], args)
