"""``speechkit batch-sizes`` shows its search as a progress bar over the buckets (total and time left on stderr;
stdout keeps only the lines to paste)."""

from __future__ import annotations

import re

import pytest
import yaml

from speechkit.cli import main
from speechkit.drivers.bucketing import _bucket_progress

from .test_bucketing import searched  # noqa: F401  (fixture: CharTask importable)

pytestmark = pytest.mark.usefixtures("one_thread")


class Bar:
    """What ``_bucket_progress`` uses of a tqdm bar."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, count: int = 1) -> None:
        self.n += count

    def set_postfix(self, **fields) -> None:
        pass


def positions(buckets: list, calls: list[tuple[int, float, int]]) -> list[int]:
    """The bar's count when each step starts."""
    bar, seen = Bar(), []
    stepped = _bucket_progress(lambda *shape: seen.append(bar.n), buckets, bar)
    for call in calls:
        stepped(*call)
    return seen


def test_the_bar_counts_the_buckets_searched_from_the_last():
    buckets = [(1.0, 10), (2.0, 20), (2.0, 40)]  # 2-D: two token sub-buckets of the same duration
    calls = [(8, 2.0, 40), (16, 2.0, 40), (12, 2.0, 20), (24, 1.0, 10), (48, 1.0, 10)]
    assert positions(buckets, calls) == [0, 0, 1, 2, 2]
    assert positions([1.0, 2.0, 3.0], [(4, 3.0, 36), (8, 1.0, 12)]) == [0, 2]  # 1-D; bucket 2.0 needed no trial


def test_batch_sizes_draws_the_bar_on_stderr(searched, tmp_path, capsys):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "model": {"class_path": "char_task_for_bucketing.CharTask"},
        "data": {"class_path": "speechkit.data.SpeechDataModule",
                 "init_args": {"config": {"bucket_duration_bins": [[1.0, 10], [2.0, 20], [3.0, 30]]}}}}))
    assert main(["batch-sizes", "-c", str(tmp_path / "run.yaml"), "--device", "cpu", "--memory-budget-gb", "1000",
                 "--max-batch-size", "4", "--start", "4"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"batch-size search: 100%\|[^|]*\| 3/3 \[", captured.err)
    assert "batch-size search" not in captured.out and "bucket_batch_size: [4, 4, 4]" in captured.out
