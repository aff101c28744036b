import pytest
import torch
from torch import nn

from speechkit.compress.prune.minitron import (
    ActivationImportance,
    aggregate,
    block_importance,
    prune_channels,
    prune_heads,
    prune_neurons,
)
from speechkit.errors import SpeechkitError


class MLP(nn.Module):
    def __init__(self, dim: int = 6, inter: int = 10) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, inter), nn.Linear(inter, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_aggregation_hand_values() -> None:
    x = torch.tensor([[[3.0, -1.0], [0.0, 2.0]], [[4.0, 1.0], [0.0, -2.0]]])  # (B=2, S=2, C=2)
    # batch L2: [[5, sqrt2], [0, sqrt8]]; then sequence mean
    assert aggregate(x, "l2", "mean").tolist() == pytest.approx([2.5, (2**0.5 + 8**0.5) / 2])
    assert aggregate(x, "mean", "mean").tolist() == pytest.approx([1.75, 1.5])


def test_neuron_importance_equals_hand_computation() -> None:
    torch.manual_seed(0)
    model = MLP()
    x = torch.randn(3, 4, 6)
    with ActivationImportance(model, neurons=["fc1"]) as importance:
        model(x)
        model(x)
    expected = 2 * (x @ model.fc1.weight.T + model.fc1.bias).norm(dim=0).mean(dim=0)
    assert torch.allclose(importance.scores["fc1"], expected, atol=1e-5)
    model(x)  # hooks removed: nothing more accumulates
    assert torch.allclose(importance.scores["fc1"], expected, atol=1e-5)


def test_removing_zero_importance_neurons_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = MLP()
    with torch.no_grad():
        model.fc1.weight[[1, 4, 7]] = 0
        model.fc1.bias[[1, 4, 7]] = 0
    x = torch.randn(5, 6)
    before = model(x)
    with ActivationImportance(model, neurons=["fc1"]) as importance:
        model(x)
    assert importance.scores["fc1"][[1, 4, 7]].abs().sum() == 0
    kept = prune_neurons(model, "fc1", "fc2", importance.scores["fc1"], keep=7)
    assert 1 not in kept.tolist() and model.fc1.out_features == 7 and model.fc2.in_features == 7
    assert torch.allclose(model(x), before, atol=1e-6)


class Attention(nn.Module):
    def __init__(self, dim: int = 8, heads: int = 4) -> None:
        super().__init__()
        self.num_heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        projections = (self.q_proj, self.k_proj, self.v_proj)
        q, k, v = (p(x).reshape(b, t, self.num_heads, -1).transpose(1, 2) for p in projections)
        out = torch.softmax(q @ k.transpose(-1, -2), -1) @ v  # (B, H, T, Dh)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1))


def test_head_pruning_with_zero_output_slice_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = Attention()
    with torch.no_grad():  # head 2's value rows are zero, so its output is zero
        model.v_proj.weight[4:6] = 0
        model.v_proj.bias[4:6] = 0
    x = torch.randn(2, 5, 8)
    before = model(x)
    with ActivationImportance(model, heads={"out_proj": 4}) as importance:
        model(x)
    assert importance.scores["out_proj"].argmin().item() == 2
    heads = prune_heads(model, ["q_proj", "k_proj", "v_proj"], "out_proj", 4, importance.scores["out_proj"], keep=3,
                        attention="")
    assert heads.tolist() == [0, 1, 3] and model.num_heads == 3 and model.out_proj.in_features == 6
    assert model(x).shape == before.shape
    assert torch.allclose(model(x), before, atol=1e-6)


def test_channel_pruning_with_a_zero_channel_keeps_logits_and_shapes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(11, 6), nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 6), nn.Linear(6, 11))
    with torch.no_grad():  # channel 3 of the 6-wide stream is zero everywhere
        model[0].weight[:, 3] = 0
        model[3].weight[3] = 0
        model[3].bias[3] = 0
    tokens = torch.tensor([[1, 5, 7]])
    before = model(tokens)
    importance = torch.tensor([1.0, 2.0, 3.0, 0.0, 5.0, 6.0])
    prune_channels(model, importance, keep=5, readers=["1", "4"], writers=["3"], embeddings=["0"])
    assert model[0].weight.shape == (11, 5) and model[4].in_features == 5
    assert torch.allclose(model(tokens), before, atol=1e-6)


def test_layer_norm_channels_are_sliced() -> None:
    model = nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 2))
    prune_channels(model, torch.arange(6.0), keep=4, readers=["1"], norms=["0"])
    assert model[0].normalized_shape == (4,) and model(torch.randn(3, 4)).shape == (3, 2)


def test_block_importance_is_zero_for_an_unchanged_layer() -> None:
    h = torch.randn(2, 3, 4)
    bi = block_importance([h, h, 2 * h, -h])
    assert bi.tolist() == pytest.approx([0.0, 0.0, 2.0], abs=1e-6)


def test_bad_names_and_keep() -> None:
    with pytest.raises(SpeechkitError, match="fc9"):
        ActivationImportance(MLP(), neurons=["fc9"])
    with pytest.raises(SpeechkitError, match="keep"):
        prune_neurons(MLP(), "fc1", "fc2", torch.ones(10), keep=0)
