import pytest
import torch
from torch import nn

from speechkit.compress.prune.lost import LowRankSparseLinear, lost_param_count, lostify
from speechkit.errors import SpeechkitError


def _weight() -> torch.Tensor:
    return torch.randn(10, 8, generator=torch.Generator().manual_seed(0))


def test_full_rank_factors_reproduce_the_weight_and_residual_completes_it() -> None:
    w = _weight()
    full = LowRankSparseLinear.from_dense(w, rank=8, n_channels=2)
    assert torch.allclose(full.low_rank_weight(), w, atol=1e-5)
    part = LowRankSparseLinear.from_dense(w, rank=3, n_channels=8, act="identity")
    residual = torch.zeros_like(w)
    residual[:, part.channels] = part.sparse_weight.detach()
    assert torch.allclose(part.low_rank_weight() + residual, w, atol=1e-5)


def test_channels_are_the_largest_l2_columns_of_the_chosen_source() -> None:
    w = torch.zeros(4, 6)
    w[:, 1], w[:, 4], w[:, 5] = 3.0, 1.0, 2.0
    layer = LowRankSparseLinear.from_dense(w, rank=1, n_channels=2, score_source="original")
    assert layer.channels.tolist() == [1, 5]


def test_forward_equals_the_dense_product_of_its_parts() -> None:
    torch.manual_seed(1)
    dense = nn.Linear(8, 10)
    layer = LowRankSparseLinear.from_dense(dense, rank=3, n_channels=4, gamma=0.3, act="silu")
    x = torch.randn(2, 5, 8)
    expected = (0.3 * nn.functional.silu(x @ layer.A.T) @ layer.B.T
                + 0.7 * x[..., layer.channels] @ layer.sparse_weight.T + dense.bias)
    assert torch.allclose(layer(x), expected, atol=1e-6)
    identity = LowRankSparseLinear.from_dense(dense.weight, rank=3, n_channels=8, gamma=0.5, act="identity")
    residual = dense.weight.detach() - identity.low_rank_weight().detach()
    closed_form = 0.5 * x @ identity.low_rank_weight().T + 0.5 * x @ residual.T  # k = d_in: all columns
    assert torch.allclose(identity(x), closed_form, atol=1e-5)


def test_param_count_and_from_scratch_training() -> None:
    torch.manual_seed(0)
    layer = LowRankSparseLinear(16, 12, rank=4, n_channels=3, bias=False)
    assert sum(p.numel() for p in layer.parameters()) == lost_param_count(16, 12, 4, 3) == 4 * 28 + 36
    target = nn.Linear(16, 12, bias=False)
    x = torch.randn(64, 16)
    y = target(x).detach()
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    first = (layer(x) - y).pow(2).mean().item()
    for _ in range(25):
        optimizer.zero_grad()
        loss = (layer(x) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_lostify_replaces_matched_linears() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    assert lostify(model, ["0"], rank_fraction=0.5, channel_fraction=0.25) == ["0"]
    assert isinstance(model[0], LowRankSparseLinear) and model[0].channels.numel() == 2
    assert model(torch.randn(3, 8)).shape == (3, 8)
    with pytest.raises(SpeechkitError, match="rank"):
        LowRankSparseLinear(8, 4, rank=5, n_channels=1)
    with pytest.raises(SpeechkitError, match="nope"):
        lostify(model, ["nope"])
