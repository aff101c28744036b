"""``speechkit bins`` and ``speechkit batch-sizes``: print bucketing config lines to paste.

``speechkit bins CUTS.jsonl.gz --num-buckets 30 [--num-subbuckets 2] [--tokenizer chars|whisper|sentencepiece
--tokenizer-path PATH] [--max-duration S]`` prints ``bucket_duration_bins`` (and ``bucket_max_tps`` for 2-D).

``speechkit batch-sizes -c conf.yaml --memory-budget-gb 16`` (model and bins from a LightningCLI config) or
``speechkit batch-sizes --model-class pkg.module:Class --init-args '{...}' --bins '[[2.5, 20], ...]'
--memory-budget-gb 16`` prints ``bucket_batch_size``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from speechkit.data.sampling import (
    CONFIG_KEY_BINS,
    SentencePieceTokenCounter,
    TokenCounter,
    WhisperTokenCounter,
    char_token_counter,
    estimate_bucket_bins,
)
from speechkit.errors import SpeechkitError

PRECISIONS = {"32": None, "32-true": None, "bf16-mixed": "bfloat16", "16-mixed": "float16"}


def make_token_counter(kind: str | None, path: str | None = None, language: str | None = None) -> TokenCounter | None:
    """A token counter by name: ``chars``, ``whisper`` (tokenizer folder ``path``) or ``sentencepiece``
    (``.model`` file ``path``); ``None`` for none (tokens must then be in ``cut.custom["num_tokens"]``)."""
    if kind in (None, "chars"):
        return char_token_counter if kind else None
    if path is None:
        raise SpeechkitError(f"--tokenizer {kind}: expected --tokenizer-path (a local tokenizer folder or file)")
    if not Path(path).exists():
        raise SpeechkitError(f"--tokenizer-path {path}: no such file or folder")
    if kind == "whisper":
        return WhisperTokenCounter(path, language=language)
    return SentencePieceTokenCounter(path)


def _load_cuts(path: str) -> Any:
    from lhotse import CutSet, load_manifest_lazy

    if not Path(path).is_file():
        raise SpeechkitError(f"{path}: no such cut manifest")
    cuts = load_manifest_lazy(path)
    if not isinstance(cuts, CutSet):
        raise SpeechkitError(f"{path}: expected a cut manifest (cuts_*.jsonl.gz), got {type(cuts).__name__}")
    return cuts


def bins_main(argv: Sequence[str] | None = None) -> int:
    """``speechkit bins``: estimate 1-D or 2-D bucket bins from a cut manifest and print config lines."""
    parser = argparse.ArgumentParser(prog="speechkit bins", description=__doc__.split("\n\n")[1])
    parser.add_argument("cuts", help="Lhotse cut manifest (cuts_train.jsonl.gz)")
    parser.add_argument("--num-buckets", type=int, default=30, help="duration buckets")
    parser.add_argument("--num-subbuckets", type=int, default=None, help="token sub-buckets (2-D); omit for 1-D")
    parser.add_argument("--tokenizer", choices=["chars", "whisper", "sentencepiece"], default=None,
                        help="how to count output tokens (prompt included for whisper)")
    parser.add_argument("--tokenizer-path", default=None, help="local Whisper tokenizer folder or SentencePiece model")
    parser.add_argument("--language", default=None, help="Whisper prompt language (e.g. english)")
    parser.add_argument("--max-duration", type=float, default=None, help="leave out longer cuts; last bin")
    parser.add_argument("--num-cuts", type=int, default=None, help="estimate from the first N cuts only")
    parser.add_argument("--token-outlier-threshold", type=float, default=4.0, help="z-score of tokens/second")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    counter = make_token_counter(args.tokenizer, args.tokenizer_path, args.language)
    cuts = _load_cuts(args.cuts)
    if args.num_cuts is not None:
        cuts = cuts.subset(first=args.num_cuts)
    bins = estimate_bucket_bins(cuts, args.num_buckets, args.num_subbuckets, counter, args.max_duration,
                                args.token_outlier_threshold)
    print(bins.to_config())
    return 0


def _find_key(tree: Any, key: str) -> Any:
    """First value of ``key`` anywhere in a nested YAML tree, or ``None``."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            found = _find_key(item, key)
            if found is not None:
                return found
    return None


def _parse_bins(text: str) -> list:
    """Bins from a JSON/YAML list or from a file holding ``bucket_duration_bins: [...]``."""
    path = Path(text)
    if path.is_file():
        found = _find_key(yaml.safe_load(path.read_text()), CONFIG_KEY_BINS)
        if found is None:
            raise SpeechkitError(f"--bins {text}: the file has no {CONFIG_KEY_BINS} key")
        return found
    try:
        bins = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpeechkitError(f"--bins: expected a list like [[2.5, 20], [5.0, 40]], got {text!r} ({error})")
    if not isinstance(bins, list) or not bins:
        raise SpeechkitError(f"--bins: expected a non-empty list, got {text!r}")
    return bins


def _instantiate_model(class_path: str, init_args: dict) -> Any:
    """Build the task as LightningCLI would (jsonargparse, nested ``class_path`` values included)."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningModule

    module_name = class_path.replace(":", ".").rsplit(".", 1)[0]
    try:
        importlib.import_module(module_name)
    except ImportError as error:
        raise SpeechkitError(f"model class {class_path!r}: cannot import {module_name!r} ({error})")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningModule, "model", required=True)
    config = {"model": {"class_path": class_path.replace(":", "."), "init_args": init_args}}
    try:
        return parser.instantiate(parser.parse_object(config)).model
    except Exception as error:  # jsonargparse reports schema errors as several exception types
        raise SpeechkitError(f"model {class_path!r} with init_args {init_args}: {error}")


def _model_and_bins(args: argparse.Namespace) -> tuple[Any, list, str | None]:
    """(model, bins, precision from the config) from ``-c`` or from the explicit options."""
    precision, bins, class_path, init_args = None, None, args.model_class, {}
    if args.config:
        if not Path(args.config).is_file():
            raise SpeechkitError(f"-c {args.config}: no such config file")
        tree = yaml.safe_load(Path(args.config).read_text()) or {}
        model = tree.get("model") or {}
        class_path, init_args = model.get("class_path"), model.get("init_args") or {}
        bins = _find_key(tree.get("data"), CONFIG_KEY_BINS)
        precision = _find_key(tree.get("trainer"), "precision")
    if args.init_args:
        init_args = {**init_args, **_json_object(args.init_args)}
    if args.bins:
        bins = _parse_bins(args.bins)
    if not class_path:
        raise SpeechkitError("expected the model: -c CONFIG (model.class_path) or --model-class module:Class")
    if not bins:
        raise SpeechkitError(f"expected bins: --bins or data...{CONFIG_KEY_BINS} in the -c config")
    return _instantiate_model(class_path, init_args), bins, None if precision is None else str(precision)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpeechkitError(f"--init-args: expected a JSON object, got {text!r} ({error})")
    if not isinstance(value, dict):
        raise SpeechkitError(f"--init-args: expected a JSON object, got {text!r}")
    return value


def batch_sizes_main(argv: Sequence[str] | None = None) -> int:
    """``speechkit batch-sizes``: search the largest batch size per bucket and print ``bucket_batch_size``."""
    import torch

    from speechkit.data.batch_size_search import find_batch_sizes, format_batch_sizes, make_training_step

    parser = argparse.ArgumentParser(prog="speechkit batch-sizes", description=__doc__.split("\n\n")[2])
    parser.add_argument("-c", "--config", default=None, help="LightningCLI config (model, data bins, precision)")
    parser.add_argument("--model-class", default=None, help="task class, module:Class or module.Class")
    parser.add_argument("--init-args", default=None, help="task __init__ arguments as a JSON object")
    parser.add_argument("--bins", default=None, help="bins as a JSON list, or a file with bucket_duration_bins")
    parser.add_argument("--memory-budget-gb", type=float, default=None,
                        help="GB (1e9 bytes); required on CPU (peak RSS), default 90%% of the GPU on CUDA")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                        help="autocast as in training (default: trainer.precision of -c, else 32)")
    parser.add_argument("--start", type=int, default=32, help="first batch size tried for the largest bucket")
    parser.add_argument("--tolerance", type=float, default=0.05, help="relative gap at which the search stops")
    parser.add_argument("--max-batch-size", type=int, default=4096)
    parser.add_argument("--tokens-per-second", type=float, default=12.0, help="tokens for 1-D bins")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.device == "cpu" and args.memory_budget_gb is None:
        raise SpeechkitError("--memory-budget-gb: required on CPU (the search compares it with peak memory)")
    model, bins, config_precision = _model_and_bins(args)
    precision = args.precision or config_precision or "32"
    if precision not in PRECISIONS:
        raise SpeechkitError(f"precision {precision!r}: expected one of {sorted(PRECISIONS)}")
    dtype = PRECISIONS[precision] and getattr(torch, PRECISIONS[precision])
    step = make_training_step(model, args.device, autocast_dtype=dtype)
    budget = None if args.memory_budget_gb is None else args.memory_budget_gb * 1e9
    bins = [tuple(b) if isinstance(b, list) else b for b in bins]
    sizes = find_batch_sizes(step, bins, budget, args.device, args.start, args.tolerance, args.max_batch_size,
                             args.tokens_per_second)
    print(f"# {len(bins)} buckets, device {args.device}, budget {args.memory_budget_gb} GB, precision {precision}")
    print(format_batch_sizes(sizes))
    return 0
