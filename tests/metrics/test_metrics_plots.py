"""PNG plots are written, with undefined values and many groups."""

import math

from speechkit.metrics.plots import plot_metrics, plot_wer


def test_plot_wer_groups_and_classes(tmp_path):
    groups = {f"system {i}": {"wer": 0.1 * i, "wer_raw": 0.12 * i, "cer": 0.05, "cer_raw": math.nan} for i in range(5)}
    path = plot_wer(groups, tmp_path / "a" / "wer.png", {"substitutions": 3, "insertions": 1})
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_plot_metrics(tmp_path):
    path = plot_metrics({"recall@1": 0.5, "ndcg@10": 0.7}, tmp_path / "r.png")
    assert path.stat().st_size > 1000
