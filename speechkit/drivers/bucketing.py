"""``speechkit bins`` and ``speechkit batch-sizes``: print bucketing config lines to paste.

The methods live in :mod:`speechkit.data.sampling` and :mod:`speechkit.data.batch_size_search`; these commands
build a task and read a run's configuration, so they sit with the drivers. Both take a training run's
configuration as ``speechkit fit`` does (``-c CONFIG`` and overrides, resolved by
:mod:`speechkit.config`), so the cuts, the task and its token count are the ones training will use: 2-D bins count
tokens with the task's own ``tokenize`` (:class:`speechkit.data.sampling.TaskTokenCounter`), as
``SpeechDataModule`` does when it assigns a cut to a bucket.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import yaml

from speechkit.commands import command
from speechkit.config import FitArgs, ResolvedConfig, resolve_fit_config
from speechkit.data.sampling import (
    CONFIG_KEY_BINS,
    SentencePieceTokenCounter,
    TokenCounter,
    WhisperTokenCounter,
    char_token_counter,
    estimate_bucket_bins,
    max_tokens_per_bucket,
    task_token_counter,
)
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar

if TYPE_CHECKING:
    from speechkit.data.batch_size_search import StepFn

PRECISIONS = {"32": None, "32-true": None, "bf16-mixed": "bfloat16", "16-mixed": "float16"}
Precision = Literal["32", "32-true", "bf16-mixed", "16-mixed"]
TokenizerKind = Literal["chars", "whisper", "sentencepiece"]
DATA_CONFIG = "data.init_args.config"  # SpeechDataModule's DataConfig in a resolved config
DEFAULT_NUM_BUCKETS = 30


def make_token_counter(kind: Optional[str], path: Optional[str] = None,
                       language: Optional[str] = None) -> Optional[TokenCounter]:
    """A token counter by name, for a manifest without a config: ``chars``, ``whisper`` (deprecated: the bare
    tokenizer; tokenizer folder ``path``) or ``sentencepiece`` (``.model`` file ``path``); ``None`` for none."""
    if kind in (None, "chars"):
        return char_token_counter if kind else None
    if path is None:
        raise SpeechkitError(f"--tokenizer {kind}: expected --tokenizer_path (a local tokenizer folder or file)")
    if not Path(path).exists():
        raise SpeechkitError(f"--tokenizer_path {path}: no such file or folder")
    if kind == "whisper":
        warnings.warn("--tokenizer whisper counts the bare tokenizer's tokens, which can differ from what the task "
                      "trains on; use -c CONFIG (the task's own tokenize)", FutureWarning, stacklevel=2)
        return WhisperTokenCounter(path, language=language)
    return SentencePieceTokenCounter(path)


def read_cuts(paths: Any, num_cuts: Optional[int] = None) -> Any:
    """The cut manifest(s) ``paths`` (one path or a list, concatenated), the first ``num_cuts`` only if given."""
    from speechkit.data.manifests import load_cuts

    for path in [paths] if isinstance(paths, (str, Path)) else list(paths):
        if not Path(path).is_file():
            raise SpeechkitError(f"{path}: no such cut manifest")
    cuts = load_cuts(paths, "cuts")
    return cuts if num_cuts is None else cuts.subset(first=num_cuts)


def task_counter(resolved: ResolvedConfig) -> TokenCounter:
    """The token count of the configured task (built as ``speechkit fit`` builds it) for the configured text."""
    task = resolved.model()
    counter = task_token_counter(task, resolved.get(f"{DATA_CONFIG}.text_field", "text"))
    if counter is None:
        raise SpeechkitError(f"model {type(task).__name__} has no tokenize(text): 2-D bins need the task's tokens")
    return counter


@command(positional=("cuts",), fit_config=True)
def bins(
    cuts: Optional[str] = None,
    *,
    config: FitArgs = FitArgs(),
    num_buckets: Optional[int] = None,
    num_subbuckets: Optional[int] = None,
    tokenizer: Optional[TokenizerKind] = None,
    tokenizer_path: Optional[str] = None,
    language: Optional[str] = None,
    max_duration: Optional[float] = None,
    num_cuts: Optional[int] = None,
    token_outlier_threshold: float = 4.0,
) -> None:
    """Estimate 1-D / 2-D bucket bins from a cut manifest and print the config lines to paste.

    Prints ``bucket_duration_bins`` (and ``bucket_max_tps`` for 2-D bins) for ``data.init_args.config``. With
    ``-c CONFIG`` the cuts default to the run's ``train_cuts``, the buckets to its ``num_buckets``, and 2-D bins
    count each cut's tokens with the run's task (``tokenize``: the prompt and end-of-text included), exactly as
    training counts them when it assigns cuts to buckets.

    Args:
        cuts: Lhotse cut manifest (``cuts_train.jsonl.gz``); default with ``-c``: the config's ``train_cuts``.
        config: the training run whose cuts and task are used.
        num_buckets: duration buckets (default: the config's ``num_buckets``, else 30).
        num_subbuckets: token sub-buckets per duration bucket (2-D bins); omit for 1-D.
        tokenizer: without ``-c``: how to count tokens (``whisper`` is deprecated: the bare tokenizer, without the
            task's leading space).
        tokenizer_path: local Whisper tokenizer folder or SentencePiece model, for ``--tokenizer``.
        language: Whisper prompt language for ``--tokenizer whisper`` (e.g. english).
        max_duration: leave out longer cuts; the last bin.
        num_cuts: estimate from the first N cuts only.
        token_outlier_threshold: z-score of tokens per second above which a cut is an outlier.

    Examples:
        speechkit bins -c conf/whisper/fsdd_tiny_en.yaml --num_subbuckets 2
        speechkit bins out/fsdd/cuts_train.jsonl.gz --num_buckets 4
    """
    resolved = resolve_fit_config(config.args, require=("data",)) if config else None
    data = (resolved.get(DATA_CONFIG) or {}) if resolved else {}
    paths = cuts or data.get("train_cuts")
    if not paths:
        raise SpeechkitError("expected a cut manifest: CUTS, or -c CONFIG with data.init_args.config.train_cuts")
    if resolved is not None and tokenizer is not None:
        raise SpeechkitError("--tokenizer: with -c CONFIG the task's own tokenize counts the tokens; drop one")
    counter = make_token_counter(tokenizer, tokenizer_path, language)
    if resolved is not None and num_subbuckets is not None:
        counter = task_counter(resolved)
    estimated = estimate_bucket_bins(read_cuts(paths, num_cuts), num_buckets or data.get("num_buckets")
                                     or DEFAULT_NUM_BUCKETS, num_subbuckets, counter, max_duration,
                                     token_outlier_threshold)
    print(estimated.to_config())


# ------------------------------------------------------------------ batch-sizes
def _parse_bins(text: str) -> list:
    """Bins from a JSON/YAML list, or from a file holding ``bucket_duration_bins: [...]`` (``speechkit bins``'
    output) or a training config holding ``data.init_args.config.bucket_duration_bins``."""
    path = Path(text)
    if path.is_file():
        tree = yaml.safe_load(path.read_text()) or {}
        config = (((tree.get("data") or {}).get("init_args") or {}).get("config") or {}) if "data" in tree else tree
        if config.get(CONFIG_KEY_BINS) is None:
            raise SpeechkitError(f"--bins {text}: the file has no {CONFIG_KEY_BINS} (top level or data config)")
        return config[CONFIG_KEY_BINS]
    try:
        bins = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpeechkitError(f"--bins: expected a list like [[2.5, 20], [5.0, 40]], got {text!r} ({error})")
    if not isinstance(bins, list) or not bins:
        raise SpeechkitError(f"--bins: expected a non-empty list, got {text!r}")
    return bins


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpeechkitError(f"--init-args: expected a JSON object, got {text!r} ({error})")
    if not isinstance(value, dict):
        raise SpeechkitError(f"--init-args: expected a JSON object, got {text!r}")
    return value


def _explicit_config(model_class: Optional[str], init_args: Optional[str]) -> list[str]:
    """``--model_class`` / ``--init_args`` as ``speechkit fit`` overrides of the model."""
    args = [f"--model={model_class.replace(':', '.')}"] if model_class else []
    for key, value in (_json_object(init_args) if init_args else {}).items():
        args.append(f"--model.init_args.{key}={json.dumps(value)}")
    return args


def _search_buckets(resolved: ResolvedConfig, model: Any, bins: list, tokens_per_second: Optional[float]) -> list:
    """The search's buckets: 2-D bins as given; 1-D bins with the most task tokens of the config's training cuts
    in each bucket (as training will count them), or ``tokens_per_second`` when given or without cuts."""
    bins = [tuple(b) if isinstance(b, list) else b for b in bins]
    train_cuts = resolved.get(f"{DATA_CONFIG}.train_cuts")
    counter = task_token_counter(model, resolved.get(f"{DATA_CONFIG}.text_field", "text"))
    if isinstance(bins[0], tuple) or tokens_per_second is not None or not train_cuts or counter is None:
        return bins
    tokens = max_tokens_per_bucket(read_cuts(train_cuts), bins, counter)
    logging.getLogger(__name__).info("1-D buckets: most task tokens per bucket %s (from %s)", tokens, train_cuts)
    return list(zip(bins, tokens))


def _bucket_progress(step: StepFn, buckets: list, bar: Any) -> StepFn:
    """``step`` that first moves ``bar`` to the bucket of its shape: ``find_batch_sizes`` searches the buckets from
    the last to the first, so the place of a step's bucket in that order is the number of buckets done."""
    order = [tuple(map(float, b)) if isinstance(b, (tuple, list)) else (float(b),) for b in reversed(buckets)]

    def stepped(batch_size: int, duration_s: float, num_tokens: int) -> Any:
        shape = (float(duration_s), float(num_tokens))
        done = next((i for i, key in enumerate(order) if key == shape[: len(key)]), bar.n)
        bar.update(max(0, done - bar.n))
        bar.set_postfix(batch_size=batch_size, refresh=False)
        return step(batch_size, duration_s, num_tokens)

    return stepped


@command(fit_config=True)
def batch_sizes(
    *,
    config: FitArgs = FitArgs(),
    model_class: Optional[str] = None,
    init_args: Optional[str] = None,
    bins: Optional[str] = None,
    memory_budget_gb: Optional[float] = None,
    device: Optional[Literal["cpu", "cuda"]] = None,
    precision: Optional[Precision] = None,
    start: int = 32,
    tolerance: float = 0.05,
    max_batch_size: int = 4096,
    tokens_per_second: Optional[float] = None,
) -> None:
    """Search the largest batch size per bucket and print ``bucket_batch_size`` to paste.

    The task, the bins (``data.init_args.config.bucket_duration_bins``) and the precision (``trainer.precision``)
    come from ``-c CONFIG`` and its overrides; ``--model_class`` / ``--init_args`` / ``--bins`` / ``--precision``
    give or replace them. 1-D buckets are searched with the most tokens the task counts for a training cut of each
    bucket (``--tokens_per_second`` instead, or without training cuts: 12).

    Args:
        config: the training run (task, bins, precision).
        model_class: task class, ``module:Class`` or ``module.Class`` (replaces the config's).
        init_args: task ``__init__`` arguments as a JSON object (over the config's).
        bins: bins as a JSON list, or a file with ``bucket_duration_bins`` (replaces the config's).
        memory_budget_gb: GB (1e9 bytes); required on CPU (peak RSS), default 90 % of the GPU on CUDA.
        device: ``cpu`` or ``cuda`` (default: cuda when available).
        precision: autocast as in training (default: the config's ``trainer.precision``, else 32).
        start: first batch size tried for the largest bucket.
        tolerance: relative gap at which the search stops.
        max_batch_size: largest batch size tried.
        tokens_per_second: target tokens of a 1-D bucket per second of audio (default: measured, see above).

    Examples:
        speechkit batch-sizes -c conf/whisper/lora.yaml --memory_budget_gb 70 --device cuda
        speechkit batch-sizes --model_class pkg.tasks:Task --init_args '{"width": 64}' \\
            --bins '[[2.0, 10], [4.0, 20]]' --memory_budget_gb 8 --device cpu
    """
    import torch

    from speechkit.data.batch_size_search import find_batch_sizes, format_batch_sizes, make_training_step

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and memory_budget_gb is None:
        raise SpeechkitError("--memory-budget-gb: required on CPU (the search compares it with peak memory)")
    explicit = _explicit_config(model_class, init_args)
    if not config and not model_class:
        raise SpeechkitError("expected the model: -c CONFIG (model.class_path) or --model-class module:Class")
    resolved = resolve_fit_config([*config.args, *explicit], require=("model",))
    chosen = _parse_bins(bins) if bins else resolved.get(f"{DATA_CONFIG}.{CONFIG_KEY_BINS}")
    if not chosen:
        raise SpeechkitError(f"expected bins: --bins or data.init_args.config.{CONFIG_KEY_BINS} in the -c config")
    configured = resolved.get("trainer.precision")
    precision = precision or (None if configured is None else str(configured)) or "32"
    if precision not in PRECISIONS:
        raise SpeechkitError(f"precision {precision!r}: expected one of {sorted(PRECISIONS)}")
    model = resolved.model()
    buckets = _search_buckets(resolved, model, chosen, tokens_per_second)
    dtype = PRECISIONS[precision] and getattr(torch, PRECISIONS[precision])
    step = make_training_step(model, device, autocast_dtype=dtype)
    budget = None if memory_budget_gb is None else memory_budget_gb * 1e9
    with progress_bar(desc="batch-size search", total=len(buckets), unit="bucket") as bar:
        sizes = find_batch_sizes(_bucket_progress(step, buckets, bar), buckets, budget, device, start, tolerance,
                                 max_batch_size, tokens_per_second or 12.0)
        bar.update(len(buckets) - bar.n)
    print(f"# {len(buckets)} buckets, device {device}, budget {memory_budget_gb} GB, precision {precision}")
    print(format_batch_sizes(sizes))
