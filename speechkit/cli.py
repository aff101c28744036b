"""The ``speechkit`` command.

``speechkit fit|validate|test|predict -c conf/<task>/<variant>.yaml`` is a ``LightningCLI`` (jsonargparse): the
typed ``__init__`` signatures of the task and the data module are the config schema, so a misspelt key fails
before training and names the key. Every other sub-command (``prepare``, ``evaluate``, ``bins`` ...) is a typed
function of the library registered in ``SUBCOMMANDS`` (litgpt's ``__main__.py`` habit) and imported only when
called: jsonargparse builds its options and ``--help`` from the signature and docstring (``speechkit.commands``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from speechkit import __version__
from speechkit.commands import CommandGroup
from speechkit.errors import SpeechkitError, debug_enabled, user_error_message

LIGHTNING_COMMANDS = {
    "fit": "train a model",
    "validate": "run one validation pass",
    "test": "run the test set (writes predictions.jsonl where the task decodes)",
    "predict": "run prediction",
}

# ``speechkit prepare <corpus>`` and ``speechkit evaluate <metric>``: a typed function per corpus / metric.
PREPARE = CommandGroup(
    "Import a corpus folder (or a text file, for synthesized corpora) into Lhotse manifests "
    "{recordings,supervisions,cuts}_<split>.jsonl.gz.",
    commands="speechkit.data.corpora:COMMANDS", noun="corpus", report="speechkit.data.corpora:print_manifests",
)
EVALUATE = CommandGroup(
    "Score predictions: a table on stdout, the numbers with --json OUT.",
    commands={"wer": "speechkit.metrics.cli:wer", "bleu": "speechkit.metrics.cli:bleu",
              "recall": "speechkit.metrics.cli:recall"},
    noun="metric",
)
# ``speechkit bench squtr``: benchmarks users run on their own models, with the data they need.
BENCH = CommandGroup(
    "Benchmarks run on your own models: squtr (spoken-query retrieval under noise), its offline set, noise and "
    "end-to-end retriever.",
    commands="speechkit.bench:COMMANDS", noun="benchmark",
)

# name -> ("module:attribute", one-line help). The attribute is a typed command function, a ``CommandGroup`` of
# them, or a ``main(argv) -> int`` that parses its own command line.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("speechkit.cli:PREPARE", "import a corpus folder into Lhotse manifests"),
    "evaluate": ("speechkit.cli:EVALUATE", "score predictions: evaluate wer|bleu|recall ..."),
    "bench": ("speechkit.cli:BENCH", "benchmarks: bench squtr (spoken-query retrieval under noise) ..."),
    "bins": ("speechkit.drivers.bucketing:bins", "estimate 1-D / 2-D bucket bins from a cut manifest"),
    "batch-sizes": ("speechkit.drivers.bucketing:batch_sizes", "search the largest batch size per bucket"),
    "sharpness": ("speechkit.drivers.sharpness:sharpness", "Hessian top eigenvalue and trace of a trained checkpoint"),
    "fit-scaling-law": ("speechkit.scaling:fit_scaling_law", "fit the LR-annealing scaling law to training curves"),
    "multistage": ("speechkit.drivers.multistage:multistage", "multistage Whisper transfer, a dev-WER gate per stage"),
    "compare-strategies": ("speechkit.drivers.compare:compare_command", "compare full / LoRA / frozen / multistage"),
    "compress": ("speechkit.drivers.compress:compress_command", "prune / quantize Whisper: WER, size, speed"),
    "export": ("speechkit.drivers.export:export_command", "export a checkpoint to a Hugging Face or CTranslate2 folder"),
    "merge-lora": ("speechkit.drivers.export:merge_lora_command", "merge LoRA adapters into the base weights"),
    "transcribe": ("speechkit.inference.transcribe:main", "transcribe audio files, folders or manifests with Whisper"),
    "msm-codebook": ("speechkit.drivers.codebook:msm_codebook", "fit the k-means targets of masked speech pretraining"),
    "scorer-confidences": ("speechkit.drivers.scorer_confidences:scorer_confidences",
                           "store a CTC scorer's per-frame confidences on cuts (Ask2Mask)"),
    "self-data": ("speechkit.drivers.self_data:self_data",
                  "rewrite a manifest's transcripts with the teacher's own where verified (self-data distillation)"),
    "continual": ("speechkit.drivers.continual:continual",
                  "train a class-incremental stream (COCONUT, replay, KD); write the accuracy matrix"),
    "eval-spoken-answers": ("speechkit.drivers.spoken_answers_eval:eval_spoken_answers",
                            "speak, transcribe and score a speech-out model's answers (WER, mel distance)"),
}  # fmt: skip


def _usage() -> str:
    lines = ["usage: speechkit <command> [options]", "       speechkit --version", "", "commands:"]
    for name, text in LIGHTNING_COMMANDS.items():
        lines.append(f"  {name:<19} {text} (-c conf/<task>/<variant>.yaml)")
    for name, (_, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<19} {text}")
    lines.append("")
    lines.append("`speechkit <command> --help` shows the options of one command, with examples.")
    return "\n".join(lines)


def subcommand_target(name: str) -> Any:
    """The registered function (or group) of a sub-command, imported now."""
    from speechkit.commands import load

    return load(SUBCOMMANDS[name][0])


def run_lightning_cli(argv: Sequence[str]) -> None:
    """Run ``LightningCLI`` over any task (``model.class_path``) and data module (``data.class_path``).

    ``speechkit.lightning_cli.run``: atomic checkpoints (``AtomicCheckpointIO`` unless the config sets a
    ``CheckpointIO``), SIGTERM / SIGINT save a resumable ``last.ckpt`` and exit 143 / 130 (``SystemExit``), and
    with ``--ckpt_path`` the given init arguments win over the checkpoint's where safe.
    """
    from speechkit.lightning_cli import run

    run(
        argv,
        parser_kwargs={"exit_on_error": False},  # main() prints a parse error as one line, not usage + a dump
    )


CKPT_PATH_KEYWORDS = ("last", "best", "hpc")  # --ckpt_path values Lightning resolves itself, not files


def ckpt_path_from(args: Sequence[str]) -> str | None:
    """The ``--ckpt_path`` a LightningCLI command line resolves to: the last one given, in a ``-c`` YAML or on it."""
    path: str | None = None
    args = list(args)
    for index, arg in enumerate(args):
        following = args[index + 1] if index + 1 < len(args) else None
        if arg in ("-c", "--config") and following is not None:
            path = _yaml_ckpt_path(following, path)
        elif arg.startswith("--config="):
            path = _yaml_ckpt_path(arg.split("=", 1)[1], path)
        elif arg == "--ckpt_path" and following is not None:
            path = following
        elif arg.startswith("--ckpt_path="):
            path = arg.split("=", 1)[1]
    return None if path in (None, "", "null", "None") else path


def _yaml_ckpt_path(config: str, current: str | None) -> str | None:
    """``ckpt_path`` of a YAML config file if it sets one (an unreadable file is left to jsonargparse to report)."""
    import yaml

    try:
        data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return current
    value = data.get("ckpt_path") if isinstance(data, dict) else None
    return str(value) if value is not None else current


def check_ckpt_path(path: str) -> None:
    """Raise a one-line ``SpeechkitError`` naming ``--ckpt_path`` unless it is a checkpoint file (or 'last', ...)."""
    if path in CKPT_PATH_KEYWORDS or path.startswith("registry") or "://" in path:
        return
    file = Path(path)
    if not file.is_file():
        raise SpeechkitError(f"--ckpt_path {path}: {'not a file' if file.exists() else 'no such file'}")
    from speechkit.checkpoints import checkpoint_file_problem  # torch + lightning: only when a path is given

    problem = checkpoint_file_problem(file)
    if problem is not None:
        raise SpeechkitError(f"--ckpt_path {path}: {problem}; expected a .ckpt written by speechkit fit")


def _run_command(command: str, args: Sequence[str]) -> int:
    if command in LIGHTNING_COMMANDS:
        ckpt_path = ckpt_path_from(args)
        if ckpt_path is not None:
            check_ckpt_path(ckpt_path)
        run_lightning_cli([command, *args])
        return 0
    from speechkit.commands import run_target

    return run_target(subcommand_target(command), f"speechkit {command}", args)


def _prog(command: str, args: Sequence[str]) -> str:
    """``speechkit evaluate wer`` for a command of a group, else ``speechkit <command>`` (the error prefix)."""
    if command in SUBCOMMANDS and args:
        target = subcommand_target(command)
        if isinstance(target, CommandGroup) and args[0] in target.names():
            return f"speechkit {command} {args[0]}"
    return f"speechkit {command}"


def main(argv: Sequence[str] | None = None) -> int:
    """``speechkit <command> ...``: a user error is one line ``speechkit <command>: error: ...`` and status 2.

    Errors that jsonargparse wraps (a task's or ``DataConfig``'s ``SpeechkitError`` while LightningCLI builds it)
    are unwrapped to their root; an unwritable or missing user path and a non-UTF-8 file are one line too. Any other
    exception is a bug and keeps its traceback; ``SPEECHKIT_DEBUG=1`` shows the traceback of every error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"speechkit {__version__}")
        return 0
    command = argv[0]
    if command not in LIGHTNING_COMMANDS and command not in SUBCOMMANDS:
        print(f"speechkit: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return _run_command(command, argv[1:])
    except BrokenPipeError:  # the reader went away (`speechkit evaluate ... | head`): stop quietly, as `cat` does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush of stdout would raise again
        return 141  # 128 + SIGPIPE
    except Exception as error:  # noqa: BLE001 - user errors become one line; anything else is re-raised
        message = None if debug_enabled() else user_error_message(error)
        if message is None:
            raise
        print(f"{_prog(command, argv[1:])}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
