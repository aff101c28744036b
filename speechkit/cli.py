"""The ``speechkit`` command.

``speechkit fit|validate|test|predict -c conf/<task>/<variant>.yaml`` is a ``LightningCLI`` (jsonargparse): the
typed ``__init__`` signatures of the task and the data module are the config schema, so a misspelt key fails
before training and names the key. Every other sub-command (``prepare``, ``evaluate``, ``bins`` ...) is a
``main(argv) -> int`` function of the library, registered in ``SUBCOMMANDS`` and imported only when called.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

from speechkit.errors import SpeechkitError

LIGHTNING_COMMANDS = {
    "fit": "train a model",
    "validate": "run one validation pass",
    "test": "run the test set (writes predictions.jsonl where the task decodes)",
    "predict": "run prediction",
}

# name -> ("module:function", one-line help). The function takes argv (without the sub-command) and returns an
# exit status.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("speechkit.data.corpora:main", "import a corpus folder into Lhotse manifests"),
    "evaluate": ("speechkit.metrics.cli:main", "score predictions: evaluate wer|bleu|recall ..."),
    "bins": ("speechkit.data.sampling_cli:bins_main", "estimate 1-D / 2-D bucket bins from a cut manifest"),
    "batch-sizes": ("speechkit.data.sampling_cli:batch_sizes_main", "search the largest batch size per bucket"),
    "sharpness": ("speechkit.curvature:main", "Hessian top eigenvalue and trace of a trained checkpoint"),
    "fit-scaling-law": ("speechkit.scaling:main", "fit the LR-annealing scaling law to training curves"),
    "multistage": ("speechkit.tasks.multistage:main", "run multistage Whisper transfer with a dev-WER gate per stage"),
    "compress": ("speechkit.compress.apply:main", "prune / quantize a Whisper checkpoint and report WER, size, speed"),
    "export": ("speechkit.models.export:export_main", "export a checkpoint to a Hugging Face folder"),
    "merge-lora": ("speechkit.models.export:merge_lora_main", "merge LoRA adapters into the base weights"),
}


def _usage() -> str:
    lines = ["usage: speechkit <command> [options]", "", "commands:"]
    for name, text in LIGHTNING_COMMANDS.items():
        lines.append(f"  {name:<12} {text} (-c conf/<task>/<variant>.yaml)")
    for name, (_, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<12} {text}")
    lines.append("")
    lines.append("`speechkit <command> --help` shows the options of one command.")
    return "\n".join(lines)


def _load(target: str) -> Callable[[Sequence[str]], int]:
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def run_lightning_cli(argv: Sequence[str]) -> None:
    """Run ``LightningCLI`` over any task (``model.class_path``) and data module (``data.class_path``)."""
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=list(argv),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command = argv[0]
    try:
        if command in LIGHTNING_COMMANDS:
            run_lightning_cli(argv)
            return 0
        if command in SUBCOMMANDS:
            return int(_load(SUBCOMMANDS[command][0])(argv[1:]) or 0)
    except SpeechkitError as error:
        print(f"speechkit {command}: error: {error}", file=sys.stderr)
        return 2
    print(f"speechkit: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
