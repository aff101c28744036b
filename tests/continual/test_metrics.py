"""Average / last accuracy and forgetting on a hand-made accuracy matrix; the PNG."""

import math

import pytest

from speechkit.continual import (
    average_accuracy,
    check_accuracy_matrix,
    forgetting,
    last_accuracy,
    plot_accuracy_over_time,
    seen_accuracy,
)
from speechkit.errors import SpeechkitError

# R[t][j]: accuracy on task j after task t
MATRIX = [[0.9, math.nan, math.nan],
          [0.6, 0.8, math.nan],
          [0.3, 0.5, 0.7]]


def test_hand_computed_values():
    seen = seen_accuracy(MATRIX)
    assert seen == pytest.approx([0.9, 0.7, 0.5])
    assert average_accuracy(seen) == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert last_accuracy(seen) == pytest.approx(0.5)
    assert forgetting(MATRIX) == pytest.approx(((0.9 - 0.3) + (0.8 - 0.5)) / 2)
    weighted = seen_accuracy(MATRIX, test_counts=[10, 30, 60])
    assert weighted == pytest.approx([0.9, (0.6 * 10 + 0.8 * 30) / 40, (0.3 * 10 + 0.5 * 30 + 0.7 * 60) / 100])
    assert forgetting([[0.5]]) == 0.0


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first():
    matrix = [[0.4, 0, 0], [0.8, 0.9, 0], [0.5, 0.9, 0.7]]
    assert forgetting(matrix) == pytest.approx(((0.8 - 0.5) + 0.0) / 2)


@pytest.mark.parametrize("matrix, message", [
    ([[0.5, 0.5]], "square"),
    ([[1.5, 0], [0.5, 0.5]], r"in \[0, 1\]"),
    ([[0.5, 0], [math.nan, 0.5]], r"in \[0, 1\]"),
])
def test_bad_matrices_are_errors(matrix, message):
    with pytest.raises(SpeechkitError, match=message):
        check_accuracy_matrix(matrix)


def test_bad_counts_and_empty_lists_are_errors():
    with pytest.raises(SpeechkitError, match="3 positive counts"):
        seen_accuracy(MATRIX, [1, 2])
    with pytest.raises(SpeechkitError, match="no task accuracies"):
        average_accuracy([])


def test_png_is_written(tmp_path):
    path = plot_accuracy_over_time({"replay": MATRIX, "fine-tune": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
                                   tmp_path / "plots" / "acc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["acc.png"]
