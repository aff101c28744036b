import pytest
import torch

from speechkit.compress.prune.magnitude import magnitude_prune
from speechkit.compress.prune.sparsegpt import sparsegpt
from speechkit.errors import SpeechkitError


def test_magnitude_prune_zeroes_the_smallest_entries() -> None:
    w = torch.tensor([[0.125, -5.0, 0.375], [-0.25, 4.0, 0.0625]])
    assert magnitude_prune(w, 0.5).tolist() == [[0.0, -5.0, 0.375], [0.0, 4.0, 0.0]]
    assert torch.equal(magnitude_prune(w, 0.0), w)


@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_sparsegpt_reconstruction_error_below_magnitude(correlated_layer, sparsity: float) -> None:
    w, x = correlated_layer
    pruned = sparsegpt(w, x, sparsity, blocksize=32)
    magnitude = magnitude_prune(w, sparsity)
    assert (magnitude == 0).sum().item() == int(sparsity * w.numel())
    assert (pruned == 0).sum().item() == 2 * int(sparsity * 32 * 32)  # exact per block of 32 columns
    error = torch.linalg.norm(x @ w.T - x @ pruned.T)
    assert error < 0.7 * torch.linalg.norm(x @ w.T - x @ magnitude.T)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_rejected(sparsity: float) -> None:
    with pytest.raises(SpeechkitError, match="sparsity"):
        sparsegpt(torch.randn(4, 8), torch.randn(16, 8), sparsity)
    with pytest.raises(SpeechkitError, match="sparsity"):
        magnitude_prune(torch.randn(4, 8), sparsity)
