"""Duration bucketing for encoder-decoder speech models: 1-D and 2-D bins, fixed per-bucket batch sizes, padding.

Implements the data-side methods of *Training and Inference Efficiency of Encoder-Decoder Speech Models*
(Żelasko et al., arXiv 2503.05931), as NeMo implements them in ``estimate_duration_bins_2d.py`` and
``FixedBucketBatchSizeConstraint2D``:

- :func:`estimate_bucket_bins`: duration bins of equal total audio (1-D), each split into token sub-bins of equal
  total output tokens (2-D), token-per-second outliers dropped and reported, repeated duration bins merged.
- :class:`FixedBucketBatchSizeConstraint2D`: a Lhotse ``SamplingConstraint`` for ``DynamicBucketingSampler`` that
  puts a cut into the smallest (duration, tokens) bucket that holds it (strict or lenient) and yields batches of
  a fixed size per bucket. :class:`BucketFilter` drops, counts and logs the cuts that fit no bucket.
- :func:`padding_report`: the input and output padding fractions of a list of batches (the paper's measure of
  wasted compute).

Wiring (what a data module does)::

    bins = estimate_bucket_bins(cuts, num_buckets=30, num_subbuckets=2, token_counter=counter)
    constraint = build_constraint(bins.bins, batch_sizes, strict=True, max_tps=bins.max_tps,
                                  token_counter=counter)
    sampler = fixed_batch_sampler(cuts, constraint, shuffle=True, seed=seed, buffer_size=10000)
    # = DynamicBucketingSampler(cuts, constraint=constraint, duration_bins=constraint.max_seq_len_buckets, ...)
    #   + sampler.filter(BucketFilter(constraint)); counts in sampler.bucket_filter.num_dropped / .report()
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, Union

import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.dataset.sampling.dynamic_bucketing import DynamicBucketingSampler, FixedBucketBatchSizeConstraint

from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)

TokenCounter = Callable[[Cut], int]
Bin2D = tuple[float, int]
Bins = Union[list[float], list[Bin2D]]

NUM_TOKENS_KEY = "num_tokens"  # cut.custom key holding a precomputed token count (see with_num_tokens)
CONFIG_KEY_BINS = "bucket_duration_bins"
CONFIG_KEY_MAX_TPS = "bucket_max_tps"
CONFIG_KEY_BATCH_SIZE = "bucket_batch_size"


# ----------------------------------------------------------------------------------------------------------------
# Token counting
# ----------------------------------------------------------------------------------------------------------------


def cut_text(cut: Cut, text_field: str = "text") -> str:
    """The target text of a cut: its supervisions' text (or a ``custom`` field such as a translation) joined by
    spaces; the one reading of a transcript, shared by training (``SpeechDataset``) and token counting.

    Raises:
        SpeechkitError: the cut has no supervision, a supervision lacks the field, or the text is empty.
    """
    if not cut.supervisions:
        raise SpeechkitError(f"cut {cut.id!r} has no supervision: no text to train on")
    parts = []
    for sup in cut.supervisions:
        text = sup.text if text_field == "text" else (sup.custom or {}).get(text_field)
        if text is None:
            raise SpeechkitError(f"cut {cut.id!r}: supervision {sup.id!r} has no field {text_field!r}")
        parts.append(text)
    text = " ".join(parts).strip()
    if not text:
        raise SpeechkitError(f"cut {cut.id!r} has an empty transcript")
    return text


class TaskTokenCounter:
    """The tokens a task trains on for a cut: ``len(tokenize(cut_text(cut, text_field)))``.

    The one token count of speechkit: ``SpeechDataModule`` measures it in training (2-D bucket assignment and
    ``bucket_max_tps``), ``speechkit bins -c CONFIG`` estimates 2-D bins with it and ``speechkit batch-sizes -c
    CONFIG`` sizes 1-D buckets with it, so offline bins and training agree. ``tokenize`` is the task's own
    (``WhisperFinetune.tokenize``: prompt + ``" " + text`` + ``<|endoftext|>``).

    Args:
        tokenize: the task's ``tokenize(text) -> list[int]``.
        text_field: ``DataConfig.text_field`` (``text``, or a supervision ``custom`` field).
    """

    def __init__(self, tokenize: Callable[[str], Sequence[int]], text_field: str = "text") -> None:
        self.tokenize = tokenize
        self.text_field = text_field

    def __call__(self, cut: Cut) -> int:
        return len(self.tokenize(cut_text(cut, self.text_field)))


def task_token_counter(task: Any, text_field: str = "text") -> TaskTokenCounter | None:
    """The :class:`TaskTokenCounter` of a task, or ``None`` for a task without ``tokenize`` (a classifier)."""
    tokenize = getattr(task, "tokenize", None)
    return None if tokenize is None else TaskTokenCounter(tokenize, text_field)


def char_token_counter(cut: Cut) -> int:
    """One token per character of the transcript (no prompt); needs no tokenizer."""
    return len(cut_text(cut))


class WhisperTokenCounter:
    """Deprecated for bins: counts Whisper's bare tokenizer output for a cut (prefix tokens + text + end-of-text),
    which can differ by a token from what ``WhisperFinetune.tokenize`` feeds the decoder (it prepends a space).
    Use :class:`TaskTokenCounter` (``speechkit bins -c CONFIG``).

    Args:
        path: a local folder with a Whisper tokenizer (``tokenizer.json`` ...); never a hub name in tests.
        language: Whisper language name or code for the prompt (``None``: English-only models, no language token).
        task: ``"transcribe"`` or ``"translate"``.
    """

    def __init__(self, path: str, language: str | None = None, task: str = "transcribe") -> None:
        from transformers import WhisperTokenizerFast

        self.tokenizer = WhisperTokenizerFast.from_pretrained(path)
        self.tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)

    def __call__(self, cut: Cut) -> int:
        return len(self.tokenizer(cut_text(cut)).input_ids)


class SentencePieceTokenCounter:
    """Counts SentencePiece pieces of the transcript plus ``num_special`` tokens (e.g. BOS and EOS).

    Args:
        model_path: a SentencePiece ``.model`` file.
        num_special: tokens the task adds to every target sequence.
    """

    def __init__(self, model_path: str, num_special: int = 2) -> None:
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(model_path))
        self.num_special = num_special

    def __call__(self, cut: Cut) -> int:
        return len(self.processor.encode(cut_text(cut))) + self.num_special


def count_tokens(cut: Cut, token_counter: TokenCounter | None) -> int:
    """``cut.custom["num_tokens"]`` when present (precomputed), else ``token_counter(cut)``.

    Raises:
        SpeechkitError: neither is available.
    """
    if cut.custom is not None and NUM_TOKENS_KEY in cut.custom:
        return int(cut.custom[NUM_TOKENS_KEY])
    if token_counter is None:
        raise SpeechkitError(
            f"cut {cut.id!r}: 2-D bucketing needs a token count; pass token_counter= (CLI: -c CONFIG) or precompute "
            f"cut.custom[{NUM_TOKENS_KEY!r}] with with_num_tokens()"
        )
    return int(token_counter(cut))


def _attach_num_tokens(cut: Cut, token_counter: TokenCounter) -> Cut:
    return cut.with_custom(NUM_TOKENS_KEY, int(token_counter(cut)))


def with_num_tokens(cuts: CutSet, token_counter: TokenCounter) -> CutSet:
    """Lazily store each cut's token count in ``cut.custom["num_tokens"]`` so that samplers count once."""
    from functools import partial

    return cuts.map(partial(_attach_num_tokens, token_counter=token_counter))


# ----------------------------------------------------------------------------------------------------------------
# Bin estimation
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BucketBins:
    """Estimated bucket bins.

    Attributes:
        bins: 1-D: sorted duration upper bounds (s), one per bucket, the last one the maximum duration.
            2-D: sorted ``(duration, num_tokens)`` upper bounds; sub-buckets of one duration bucket share its
            duration. A cut belongs to the first bucket whose bounds hold it (``d <= D and n <= N``).
        max_tps: 2-D only: per bucket, the largest tokens-per-second kept by the outlier filter (``None`` in 1-D);
            strict assignment drops cuts above it.
        num_outliers: cuts whose tokens per second lay more than ``token_outlier_threshold`` standard deviations
            above their duration bucket's mean: left out of the token sub-bins (and dropped by strict training).
        num_too_long: cuts longer than ``max_duration``: left out of the estimate.
        num_cuts: cuts read.
    """

    bins: Bins
    max_tps: list[float] | None
    num_outliers: int
    num_too_long: int
    num_cuts: int

    @property
    def is_2d(self) -> bool:
        return bool(self.bins) and isinstance(self.bins[0], tuple)

    @property
    def num_buckets(self) -> int:
        return len(self.bins)

    def to_config(self, indent: int = 0) -> str:
        """YAML lines to paste under the data section of a config (``bucket_duration_bins: [...]`` ...)."""
        pad = " " * indent
        if self.is_2d:
            bins = ", ".join(f"[{d:g}, {n}]" for d, n in self.bins)
        else:
            bins = ", ".join(f"{d:g}" for d in self.bins)
        lines = [
            f"{pad}# {self.num_buckets} buckets from {self.num_cuts} cuts "
            f"({self.num_outliers} token-per-second outliers, {self.num_too_long} over max duration left out)",
            f"{pad}{CONFIG_KEY_BINS}: [{bins}]",
        ]
        if self.max_tps is not None:
            lines.append(f"{pad}{CONFIG_KEY_MAX_TPS}: [{', '.join(f'{t:g}' for t in self.max_tps)}]")
        return "\n".join(lines)


def _ceil(values: np.ndarray, decimals: int) -> np.ndarray:
    """Round up to ``decimals`` (rounding at 1e-6 first so that 0.1 + 0.2 stays 0.3)."""
    scale = 10.0**decimals
    return np.ceil(np.round(values * scale, 6)) / scale


def equal_mass_bounds(values: np.ndarray, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds splitting sorted ``values`` into ``num_bins`` bins of about equal sum.

    A value belongs to the first bin whose bound is ``>=`` it (``bisect_left``), so all values equal to a bound
    fall into the same bin. Each cut point is placed at the ``k/num_bins`` quantile of the cumulative sum,
    either after or before the group of equal values there, whichever ends closer to the target. So every bin's
    sum is within one tie group (one value where values are distinct) of ``sum / num_bins``.

    Written by hand instead of calling ``lhotse.dataset.sampling.dynamic_bucketing.estimate_duration_buckets``:
    Lhotse restarts its running sum at each boundary, so every bin overshoots by up to one value and the last
    bin absorbs all the overshoots (up to ``num_bins - 1`` values short); quantiles of the cumulative sum do not
    drift.

    Args:
        values: (N,) sorted ascending, non-negative.
        num_bins: desired number of bins (>= 1).

    Returns:
        ``(bounds, counts)``: distinct sorted upper bounds, the last one ``values[-1]``, and for each bound how
        many of the ``num_bins`` targets it absorbed (> 1 where repeated bounds were merged).
    """
    csum = np.cumsum(values)  # (N,)
    targets = csum[-1] * np.arange(1, num_bins) / num_bins  # (num_bins - 1,)
    at = np.minimum(np.searchsorted(csum, targets, side="left"), len(values) - 1)
    value = values[at]
    first = np.searchsorted(values, value, side="left")  # first index of the tie group
    last = np.searchsorted(values, value, side="right") - 1  # its last index
    below = np.where(first > 0, csum[np.maximum(first - 1, 0)], 0.0)
    take_group = (first == 0) | (csum[last] - targets <= targets - below)
    cuts = np.where(take_group, value, values[np.maximum(first - 1, 0)])
    return np.unique(np.append(cuts, values[-1]), return_counts=True)


def _tps_inliers(tps: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of tokens-per-second values whose upper-tail z-score is at most ``threshold``."""
    std = tps.std()
    if std == 0:
        return np.ones_like(tps, dtype=bool)
    return (tps - tps.mean()) / std <= threshold


def _collect_lengths(
    cuts: Iterable[Cut], need_tokens: bool, token_counter: TokenCounter | None, max_duration: float | None
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Durations and token counts of the cuts up to ``max_duration``; also counts read and too-long cuts."""
    durations, tokens, num_cuts, too_long = [], [], 0, 0
    for cut in cuts:
        num_cuts += 1
        if cut.duration <= 0:
            raise SpeechkitError(f"cut {cut.id!r}: duration {cut.duration} s; expected a positive duration")
        if max_duration is not None and cut.duration > max_duration:
            too_long += 1
            continue
        durations.append(cut.duration)
        tokens.append(count_tokens(cut, token_counter) if need_tokens else 0)
    return np.asarray(durations, dtype=np.float64), np.asarray(tokens, dtype=np.int64), num_cuts, too_long


def _token_subbins(
    durations: np.ndarray, tokens: np.ndarray, num_subbuckets: int, threshold: float
) -> tuple[list[int], float, int]:
    """Token upper bounds of one duration bucket, its max tokens per second and the number of outliers."""
    tps = tokens / durations
    keep = _tps_inliers(tps, threshold)
    bounds, _ = equal_mass_bounds(np.sort(tokens[keep]).astype(np.float64), num_subbuckets)
    return [int(b) for b in bounds], float(tps[keep].max()), int((~keep).sum())


def estimate_bucket_bins(
    cuts: Iterable[Cut],
    num_buckets: int,
    num_subbuckets: int | None = None,
    token_counter: TokenCounter | None = None,
    max_duration: float | None = None,
    token_outlier_threshold: float = 4.0,
) -> BucketBins:
    """Estimate 1-D duration bins, or 2-D (duration, output tokens) bins, from a sample of cuts.

    *Training and Inference Efficiency of Encoder-Decoder Speech Models* (Żelasko et al., 2025), section 2(a) of
    ``speech.md``: duration buckets hold equal total audio ``S = sum(d) / num_buckets``; in 2-D each duration
    bucket ``j`` is split into ``num_subbuckets`` token sub-buckets of equal total tokens
    ``T_j = sum(n) / num_subbuckets`` after dropping cuts with ``z(n / d) > token_outlier_threshold``
    (upper tail only); repeated duration bounds (skewed data) are merged and the merged bucket gets
    ``num_subbuckets x (number merged)`` sub-buckets. Durations are rounded up to milliseconds and ``max_tps`` up to
    1/100 token per second, so that rounding never pushes a cut out of its bucket.

    Args:
        cuts: the cuts to estimate from (read once; pass a sample for very large sets).
        num_buckets: number of duration buckets (fewer come back where bounds repeat).
        num_subbuckets: token sub-buckets per duration bucket; ``None`` for 1-D bins.
        token_counter: tokens of a cut's target sequence, prompt included (:class:`TaskTokenCounter`);
            not needed when every cut has ``custom["num_tokens"]``.
        max_duration: cuts longer than this are left out and counted; the last bin is this value
            (default: the longest cut).
        token_outlier_threshold: z-score above which a cut's tokens per second count as an outlier.

    Returns:
        The bins, per-bucket ``max_tps`` (2-D) and the counts of what was left out.

    Raises:
        SpeechkitError: bad ``num_buckets`` / ``num_subbuckets``, too few cuts, a cut with no duration or text.
    """
    if num_buckets < 1:
        raise SpeechkitError(f"num_buckets={num_buckets}; expected >= 1")
    if num_subbuckets is not None and num_subbuckets < 1:
        raise SpeechkitError(f"num_subbuckets={num_subbuckets}; expected >= 1 (or None for 1-D bins)")
    is_2d = num_subbuckets is not None
    durations, tokens, num_cuts, too_long = _collect_lengths(cuts, is_2d, token_counter, max_duration)
    if len(durations) < num_buckets:
        raise SpeechkitError(f"num_buckets={num_buckets} but only {len(durations)} cuts to estimate from")
    if too_long:
        log.warning("estimate_bucket_bins: %d of %d cuts longer than max_duration=%s s left out",
                    too_long, num_cuts, max_duration)
    order = np.argsort(durations, kind="stable")
    durations, tokens = durations[order], tokens[order]
    binned = _ceil(durations, 3)  # (N,) bins live on a millisecond grid
    if max_duration is not None:
        binned = np.minimum(binned, _ceil(np.asarray(max_duration), 3))
    bounds, counts = equal_mass_bounds(binned, num_buckets)
    if max_duration is not None:
        bounds[-1] = _ceil(np.asarray(max_duration), 3)
    if not is_2d:
        return BucketBins([float(b) for b in bounds], None, 0, too_long, num_cuts)
    return _estimate_2d(durations, tokens, binned, bounds, counts, num_subbuckets, token_outlier_threshold,
                        too_long, num_cuts)


def max_tokens_per_bucket(
    cuts: Iterable[Cut], duration_bins: Sequence[float], token_counter: TokenCounter
) -> list[int]:
    """The most tokens of a cut in each 1-D duration bucket (cuts longer than the last bin left out), made
    non-decreasing so that an empty bucket gets its shorter neighbour's count (at least 1): the target length the
    batch-size search gives a 1-D bucket, counted as training counts (:class:`TaskTokenCounter`)."""
    most = [0] * len(duration_bins)
    for cut in cuts:
        index = bisect_left(duration_bins, cut.duration)
        if index < len(duration_bins):
            most[index] = max(most[index], count_tokens(cut, token_counter))
    return [max(1, int(n)) for n in np.maximum.accumulate(most)]


def _estimate_2d(
    durations: np.ndarray,
    tokens: np.ndarray,
    binned: np.ndarray,
    bounds: np.ndarray,
    counts: np.ndarray,
    num_subbuckets: int,
    threshold: float,
    too_long: int,
    num_cuts: int,
) -> BucketBins:
    """Token sub-bins inside each duration bucket (see :func:`estimate_bucket_bins`)."""
    bucket_of = np.searchsorted(bounds, binned, side="left")  # (N,) duration bucket of each cut
    bins: list[Bin2D] = []
    max_tps: list[float] = []
    outliers = 0
    for j, (bound, merged) in enumerate(zip(bounds, counts)):
        inside = bucket_of == j
        token_bounds, tps, dropped = _token_subbins(durations[inside], tokens[inside], num_subbuckets * int(merged),
                                                    threshold)
        bins += [(float(bound), n) for n in token_bounds]
        max_tps += [float(_ceil(np.asarray(tps), 2))] * len(token_bounds)
        outliers += dropped
    if outliers:
        log.warning("estimate_bucket_bins: %d of %d cuts dropped as token-per-second outliers (z > %g)",
                    outliers, num_cuts, threshold)
    return BucketBins(bins, max_tps, outliers, too_long, num_cuts)


# ----------------------------------------------------------------------------------------------------------------
# Bucket assignment and the sampling constraint
# ----------------------------------------------------------------------------------------------------------------


def find_smallest_bucket(
    bins: Sequence[float] | Sequence[Bin2D],
    example_len: float | tuple[float, int],
    strict: bool = True,
    max_tps: Sequence[float] | None = None,
) -> int | None:
    """Index of the smallest bucket that holds an example, or ``None`` if none does.

    NeMo ``find_smallest_bucket`` (``speech.md`` 2(a)). 1-D: the first bin ``>=`` the duration. 2-D strict: only
    the sub-buckets of the first duration bucket that holds the duration, the first of them whose token bound
    holds the tokens, and (if ``max_tps`` is given) only if ``tokens / duration <= max_tps`` of that bucket.
    2-D lenient: the first bucket in order with ``d <= D and n <= N`` (more padding, nothing dropped that fits
    anywhere). E.g. bins ``[(10, 5), (10, 10), (20, 12), (20, 18)]``, example ``(8, 11)``: strict ``None``,
    lenient ``2``.

    Args:
        bins: sorted 1-D bounds or 2-D ``(duration, tokens)`` bounds.
        example_len: a duration, or ``(duration, tokens)``.
        strict: 2-D strict (True) or lenient (False) assignment.
        max_tps: per-bucket tokens-per-second ceiling, strict 2-D only.
    """
    if not isinstance(example_len, (tuple, list)):
        index = bisect_left(bins, example_len)
        return index if index < len(bins) else None
    duration, num_tokens = example_len
    if not strict:
        return next((i for i, (d, n) in enumerate(bins) if duration <= d and num_tokens <= n), None)
    bin_durations = [b[0] for b in bins]
    begin = bisect_left(bin_durations, duration)
    if begin == len(bins):
        return None
    end = bisect_right(bin_durations, bin_durations[begin])
    index = begin + bisect_left([b[1] for b in bins[begin:end]], num_tokens)
    if index == end:
        return None
    if max_tps is not None and num_tokens / duration > max_tps[index]:
        return None
    return index


@dataclass
class FixedBucketBatchSizeConstraint2D(FixedBucketBatchSizeConstraint):
    """Lhotse sampling constraint: 1-D or 2-D buckets with a fixed batch size per bucket.

    NeMo ``FixedBucketBatchSizeConstraint2D`` (``speech.md`` 2(a)): ``measure_length`` gives
    ``(duration, num_tokens)`` for 2-D bins (tokens from ``cut.custom["num_tokens"]`` or ``token_counter``) and
    ``select_bucket`` calls :func:`find_smallest_bucket`. Build the sampler with :func:`fixed_batch_sampler`:
    ``DynamicBucketingSampler`` must get ``duration_bins=c.max_seq_len_buckets`` (with ``None`` it would estimate
    1-D bins through this constraint and fail on the tuples) and a :class:`BucketFilter`, which drops and counts
    the cuts ``select_bucket`` has no bucket for (the sampler itself would fail on them).

    Attributes:
        max_seq_len_buckets: bins (inherited name); 2-D bins are stored as tuples.
        batch_sizes: one batch size per bucket.
        strict: 2-D strict assignment (True) or lenient (False).
        max_tps: per-bucket tokens-per-second ceiling (strict 2-D only).
        token_counter: counts a cut's tokens when ``custom["num_tokens"]`` is absent.
    """

    strict: bool = True
    max_tps: list[float] | None = None
    token_counter: TokenCounter | None = None

    def __post_init__(self) -> None:
        bins = self.max_seq_len_buckets
        if not bins:
            raise SpeechkitError("bucket bins: expected at least one bin, got an empty list")
        if isinstance(bins[0], (tuple, list)):
            self.max_seq_len_buckets = [(float(d), int(n)) for d, n in bins]
        if list(self.max_seq_len_buckets) != sorted(self.max_seq_len_buckets):
            raise SpeechkitError(f"bucket bins: expected sorted ascending, got {bins}")
        if len(self.batch_sizes) != len(bins):
            raise SpeechkitError(f"bucket batch sizes: {len(self.batch_sizes)} given for {len(bins)} buckets")
        if self.max_tps is not None and len(self.max_tps) != len(bins):
            raise SpeechkitError(f"bucket max_tps: {len(self.max_tps)} values given for {len(bins)} buckets")

    @property
    def is_2d(self) -> bool:
        return isinstance(self.max_seq_len_buckets[0], tuple)

    def measure_length(self, example: Cut) -> float | tuple[float, int]:
        if self.is_2d:
            return example.duration, count_tokens(example, self.token_counter)
        return example.duration

    def select_bucket(self, buckets: Any = None, example: Any = None, example_len: Any = None) -> int | None:
        """Bucket index of ``example`` (or of ``example_len``); ``buckets`` from the sampler is ignored: the
        constraint's own bins decide."""
        if example_len is None:
            example_len = self.measure_length(example)
        return find_smallest_bucket(self.max_seq_len_buckets, example_len, self.strict, self.max_tps)


class BucketFilter:
    """Sampler predicate (``sampler.filter(BucketFilter(constraint))``): keeps a cut iff the constraint has a
    bucket for it; counts, logs and remembers the first few of the others.

    Counts accumulate over epochs. They live in the process that iterates the sampler (the main process, or each data-loader worker when
    the sampler runs inside workers). The sampler's own ``get_report()`` counts the same cuts as discarded.
    """

    def __init__(self, constraint: FixedBucketBatchSizeConstraint2D, keep_examples: int = 10) -> None:
        self.constraint = constraint
        self.keep_examples = keep_examples
        self.num_kept = 0
        self.num_dropped = 0
        self.dropped_examples: list[tuple[str, Any]] = []

    def __call__(self, cut: Cut) -> bool:
        length = self.constraint.measure_length(cut)
        if self.constraint.select_bucket(example_len=length) is not None:
            self.num_kept += 1
            return True
        self.num_dropped += 1
        if len(self.dropped_examples) < self.keep_examples:
            self.dropped_examples.append((cut.id, length))
        if math.log10(self.num_dropped).is_integer():  # 1st, 10th, 100th ... drop
            log.warning("bucketing: %s", self.report())
        return False

    def report(self) -> str:
        mode = "strict" if self.constraint.strict else "lenient"
        return (f"{self.num_dropped} of {self.num_kept + self.num_dropped} cuts fit no bucket ({mode} assignment)"
                f" and were dropped; first ones (id, length): {self.dropped_examples}")


def _batch_sizes_for(bins: Bins, max_duration: float) -> list[int]:
    """``floor(max_duration / D)`` per bucket: about ``max_duration`` seconds of padded audio per batch."""
    durations = [b[0] if isinstance(b, (tuple, list)) else b for b in bins]
    return [max(1, int(max_duration // float(d))) for d in durations]


def build_constraint(
    bins: Bins,
    batch_sizes: Sequence[int] | None = None,
    strict: bool = True,
    max_tps: Sequence[float] | None = None,
    token_counter: TokenCounter | None = None,
    max_duration: float | None = None,
) -> FixedBucketBatchSizeConstraint2D:
    """The constraint for ``DynamicBucketingSampler`` from config values (``bucket_duration_bins``,
    ``bucket_batch_size``, ``bucket_max_tps``); checks lengths and order, raising :class:`SpeechkitError`.

    Args:
        bins: 1-D or 2-D bins (:class:`BucketBins`.bins or the config list).
        batch_sizes: one per bucket (``speechkit batch-sizes``). When ``None``, each bucket gets
            ``floor(max_duration / its duration bound)`` (at least 1): ``max_duration`` seconds of padded audio.
        strict: 2-D strict or lenient assignment.
        max_tps: per-bucket tokens-per-second ceiling (strict 2-D).
        token_counter: counts a cut's tokens when ``custom["num_tokens"]`` is absent (2-D).
        max_duration: seconds of padded audio per batch, used only without ``batch_sizes``.
    """
    if batch_sizes is None:
        if max_duration is None:
            raise SpeechkitError("bucket batch sizes: give bucket_batch_size or max_duration")
        batch_sizes = _batch_sizes_for(bins, max_duration)
    if any(int(b) < 1 for b in batch_sizes):
        raise SpeechkitError(f"bucket batch sizes: expected positive integers, got {list(batch_sizes)}")
    return FixedBucketBatchSizeConstraint2D(
        max_seq_len_buckets=list(bins),
        batch_sizes=[int(b) for b in batch_sizes],
        strict=strict,
        max_tps=None if max_tps is None else [float(t) for t in max_tps],
        token_counter=token_counter,
    )


def fixed_batch_sampler(
    cuts: CutSet, constraint: FixedBucketBatchSizeConstraint2D, **sampler_kwargs: Any
) -> DynamicBucketingSampler:
    """``DynamicBucketingSampler`` over the constraint's own bins, filtered by a :class:`BucketFilter` (kept as
    ``sampler.bucket_filter`` for its counts). ``sampler_kwargs``: shuffle, seed, rank, world_size, buffer_size,
    sync_buckets, drop_last ... (not max_duration / max_cuts / duration_bins / num_buckets: the constraint decides).
    Note: Lhotse's ``state_dict`` refuses samplers with a custom constraint; resume by skipping batches.

    Raises:
        SpeechkitError: ``sync_buckets=False``: Lhotse 1.33 then tests ``if bucket`` on ``queue.Queue`` objects
            (always true), may pick an empty bucket near the end of an epoch and stop there, silently losing the
            cuts left in other buckets (measured: 24 of 800 cuts, also with Lhotse's own constraints).
    """
    if sampler_kwargs.get("sync_buckets") is False:
        raise SpeechkitError("sync_buckets=False: Lhotse 1.33 loses the last cuts of an epoch on that path; "
                             "keep sync_buckets=True")
    sampler = DynamicBucketingSampler(cuts, constraint=constraint, duration_bins=constraint.max_seq_len_buckets,
                                      **sampler_kwargs)
    sampler.bucket_filter = BucketFilter(constraint)
    sampler.filter(sampler.bucket_filter)
    return sampler


# ----------------------------------------------------------------------------------------------------------------
# Padding
# ----------------------------------------------------------------------------------------------------------------


def _batch_lengths(batch: CutSet | Sequence[Any], token_counter: TokenCounter | None) -> np.ndarray:
    """(B, 2) array of (duration, num_tokens) for a batch of cuts or of (duration, num_tokens) pairs."""
    items = list(batch)
    if items and isinstance(items[0], Cut):
        return np.array([(c.duration, count_tokens(c, token_counter)) for c in items], dtype=np.float64)
    return np.asarray(items, dtype=np.float64).reshape(len(items), 2)


def padding_report(
    batches: Iterable[CutSet | Sequence[tuple[float, int]]], token_counter: TokenCounter | None = None
) -> dict[str, float]:
    """Input and output padding fractions over a list of batches.

    *Training and Inference Efficiency of Encoder-Decoder Speech Models*, ``speech.md`` 2(a): summed over batches,
    ``padding_in = 1 - sum_i x_i / sum_b |b| max_{i in b} x_i`` for input lengths ``x`` (durations) and the same
    for output lengths ``y`` (tokens): the fraction of the padded tensors that is padding.

    Args:
        batches: each a CutSet (tokens via ``custom["num_tokens"]`` or ``token_counter``) or a sequence of
            ``(duration, num_tokens)`` pairs.
        token_counter: counts tokens of cuts.

    Returns:
        ``padding_in``, ``padding_out``, ``num_batches``, ``num_examples``, ``mean_batch_size``.

    Raises:
        SpeechkitError: no non-empty batch.
    """
    real = np.zeros(2)
    padded = np.zeros(2)
    num_batches = num_examples = 0
    for batch in batches:
        lengths = _batch_lengths(batch, token_counter)  # (B, 2)
        if len(lengths) == 0:
            continue
        real += lengths.sum(axis=0)
        padded += len(lengths) * lengths.max(axis=0)
        num_batches += 1
        num_examples += len(lengths)
    if num_batches == 0:
        raise SpeechkitError("padding_report: expected at least one non-empty batch")
    fractions = [1.0 - r / p if p > 0 else 0.0 for r, p in zip(real, padded)]
    return {
        "padding_in": float(fractions[0]),
        "padding_out": float(fractions[1]),
        "num_batches": num_batches,
        "num_examples": num_examples,
        "mean_batch_size": num_examples / num_batches,
    }
