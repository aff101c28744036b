"""Per-bucket batch-size search (OOMptimizer, speech.md section 2(a)) on fake and real CPU training steps."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch
import yaml

from speechkit.commands import command_main
from speechkit.data.batch_size_search import (
    bisect_batch_size,
    current_rss_bytes,
    find_batch_sizes,
    make_training_step,
    peak_rss_bytes,
)
from speechkit.errors import SpeechkitError

batch_sizes_main = command_main("speechkit.drivers.bucketing:batch_sizes", "speechkit batch-sizes")


def fake_step(memory: float, cost, calls: list | None = None):
    """A step that runs out of memory iff batch_size * cost(duration, tokens) > memory."""

    def step(batch_size: int, duration_s: float, num_tokens: int) -> None:
        if calls is not None:
            calls.append((batch_size, duration_s))
        if batch_size * cost(duration_s, num_tokens) > memory:
            raise torch.OutOfMemoryError("fake: out of memory")

    return step


@pytest.mark.parametrize("memory", [60.0, 1000.0, 12345.6, 1e6])
@pytest.mark.parametrize("start", [1, 32, 500])
def test_search_is_within_tolerance_below_the_largest_fitting_size(memory, start):
    def cost(duration, tokens):
        return duration + 0.05 * tokens  # memory per example grows with both lengths

    buckets = [(d, int(12 * d)) for d in (1.0, 1.7, 2.5, 4.0, 6.3, 9.0, 15.0, 30.0)]
    calls: list = []
    sizes = find_batch_sizes(fake_step(memory, cost, calls), buckets, start=start,
                             max_batch_size=10**7)
    for (duration, tokens), size in zip(buckets, sizes):
        best = math.floor(memory / cost(duration, tokens))  # B*: the largest size that fits
        assert 1 <= size <= best and (best - size) / best <= 0.05
    assert sizes == sorted(sizes, reverse=True)  # longer buckets never get larger batches
    assert [d for _, d in calls[:1]] == [30.0]  # the largest bucket is searched first


def test_a_shorter_bucket_never_gets_a_smaller_size_than_a_longer_one_despite_noise():
    """A noisy probe (as CPU RSS drifts) under which short buckets fit only a batch of one."""
    trials: list = []

    def step(batch_size: int, duration_s: float, num_tokens: int) -> None:
        trials.append((batch_size, duration_s))
        if batch_size > (1 if duration_s < 2.0 else 40):  # drift: the later, shorter buckets look out of memory
            raise torch.OutOfMemoryError("fake: noisy out of memory")

    buckets = [(0.5, 10), (1.0, 30), (2.0, 20), (3.0, 20)]
    sizes = find_batch_sizes(step, buckets, start=8)
    assert sizes[3] >= 38 and sizes[2] >= sizes[3]  # (2.0, 20) is dominated by (3.0, 20)
    assert sizes[0] >= sizes[2]  # (0.5, 10) is dominated by both: never below their answers
    assert sizes[1] == 1  # (1.0, 30) has more tokens than any searched bucket: no floor, so the noise shows
    assert all(b > sizes[3] for b, d in trials if d == 2.0)  # nothing at or below a known fit is tried


def test_trials_grow_logarithmically():
    calls: list = []
    found = bisect_batch_size(lambda b: calls.append(b) or b <= 100_000, start=1, max_batch_size=10**9)
    assert found.batch_size <= 100_000 and (100_000 - found.batch_size) / 100_000 <= 0.05
    # doubling to 2^17 (18 trials) + bisection of a gap of 2^16 down to 5 % (about log2(20) + 1 more)
    assert len(found.trials) <= math.ceil(math.log2(100_000)) + 1 + math.ceil(math.log2(1 / 0.05)) + 2


def test_small_sizes_are_exact_and_no_fit_is_an_error():
    assert bisect_batch_size(lambda b: b <= 3, start=32).batch_size == 3
    assert bisect_batch_size(lambda b: True, start=32, max_batch_size=100).batch_size == 100
    with pytest.raises(SpeechkitError, match="bucket 0 .*a batch of 1 does not fit"):
        find_batch_sizes(fake_step(0.5, lambda d, n: 1.0), [1.0])


def test_errors_other_than_out_of_memory_propagate():
    def broken(batch_size, duration_s, num_tokens):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        find_batch_sizes(broken, [1.0], memory_budget=1e12)


def test_peak_rss_sees_a_temporary_allocation():
    size = 64 * 2**20

    def allocate():
        buffer = torch.ones(size // 4)  # touched: 64 MiB resident
        del buffer

    before = current_rss_bytes()
    assert peak_rss_bytes(allocate) - before >= 0.9 * size
    assert peak_rss_bytes(lambda: None) - current_rss_bytes() < 0.5 * size  # the high-water mark was reset


TINY_TASK = textwrap.dedent(
    '''
    import torch
    from lightning.pytorch import LightningModule


    class TinyTask(LightningModule):
        """Frames of 80 features through a 2-layer MLP; memory grows with batch size x duration."""

        def __init__(self, width: int = 256):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(80, width), torch.nn.ReLU(), torch.nn.Linear(width, 80))

        def synthetic_batch(self, batch_size, duration_s, num_tokens):
            return torch.randn(batch_size, int(50 * duration_s), 80)  # (B, T, 80)

        def training_step(self, batch, batch_idx):
            return {"loss": self.net(batch).pow(2).mean()}
    '''
)


@pytest.fixture
def tiny_task_module(tmp_path, monkeypatch):
    (tmp_path / "tiny_task_for_search.py").write_text(TINY_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    import tiny_task_for_search

    return tiny_task_for_search


def test_real_cpu_step_respects_the_byte_budget(tiny_task_module):
    torch.manual_seed(0)
    step = make_training_step(tiny_task_module.TinyTask(), "cpu")
    step(1, 1.0, 12)  # allocate the optimizer state before measuring the baseline
    budget = current_rss_bytes() + 60e6
    sizes = find_batch_sizes(step, [2.0, 8.0], memory_budget=budget, start=4)
    assert sizes[0] >= sizes[1] >= 1
    assert sizes[0] >= 3 * sizes[1]  # a quarter of the frames: several times the batch
    # RSS of a process that has run a thousand tests wobbles by a few MB between two identical steps (allocator
    # arenas): the re-measured peak of the chosen size may exceed what the search saw by that much, not more.
    noise = 16e6
    assert peak_rss_bytes(lambda: step(sizes[1], 8.0, 96)) <= budget + noise
    assert peak_rss_bytes(lambda: step(int(sizes[1] * 1.3) + 1, 8.0, 96)) > budget


def test_batch_sizes_cli_from_options_and_from_config(tiny_task_module, tmp_path, capsys):
    budget_gb = (current_rss_bytes() + 40e6) / 1e9
    args = ["--model-class", "tiny_task_for_search:TinyTask", "--init-args", '{"width": 64}',
            "--bins", "[[2.0, 10], [4.0, 20]]", "--memory-budget-gb", f"{budget_gb:.4f}", "--device", "cpu",
            "--tolerance", "0.25", "--start", "16"]
    assert batch_sizes_main(args) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["bucket_batch_size"]
    assert len(printed) == 2 and printed[0] >= printed[1] >= 1
    config = tmp_path / "conf.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"class_path": "tiny_task_for_search.TinyTask", "init_args": {"width": 64}},
        "data": {"class_path": "speechkit.data.SpeechDataModule",
                 "init_args": {"config": {"bucket_duration_bins": [[2.0, 10], [4.0, 20]]}}},
        "trainer": {"precision": "32-true"},
    }))
    assert batch_sizes_main(["-c", str(config), *args[6:]]) == 0
    from_config = yaml.safe_load(capsys.readouterr().out)["bucket_batch_size"]
    assert np.allclose(from_config, printed, rtol=0.5)  # same model and bins, searched to 25 %
    with pytest.raises(SpeechkitError, match="init-args"):
        batch_sizes_main(args[:3] + ["{not json"] + args[4:])
    with pytest.raises(SpeechkitError, match="memory-budget-gb"):
        batch_sizes_main(args[:6] + ["--device", "cpu"])
