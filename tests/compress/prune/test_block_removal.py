import math

import pytest
import torch
from torch import nn

from speechkit.compress.prune.block_removal import (
    angular_distance,
    angular_distance_profile,
    best_block,
    remove_blocks,
)
from speechkit.errors import SpeechkitError


def test_angular_distance_values() -> None:
    v = torch.tensor([1.0, 2.0, -1.0])
    assert angular_distance(v, v).item() == pytest.approx(0.0, abs=1e-7)
    assert angular_distance(v, 3 * v).item() == pytest.approx(0.0, abs=1e-7)
    assert angular_distance(v, -v).item() == pytest.approx(1.0)
    assert angular_distance(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(0.5)
    assert angular_distance(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])).item() == pytest.approx(0.25)


class Residual(nn.Module):
    def __init__(self, dim: int, identity: bool) -> None:
        super().__init__()
        self.mlp = nn.Linear(dim, dim)
        self.layer_idx = -1
        if identity:
            nn.init.zeros_(self.mlp.weight), nn.init.zeros_(self.mlp.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.mlp(x))


class Toy(nn.Module):
    def __init__(self, identity: set[int]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(Residual(8, i in identity) for i in range(6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        return x, states


def test_profile_finds_identity_block_and_removal_keeps_outputs() -> None:
    model = Toy(identity={2, 3})
    x = torch.randn(4, 5, 8)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 5, [1] * 1 + [0] * 4], dtype=torch.bool)
    out, states = model(x)
    profile = angular_distance_profile(states, n=2, mask=mask)
    assert profile.shape == (5,) and profile[2].item() == pytest.approx(0.0, abs=1e-6)
    assert best_block(profile) == 2
    assert angular_distance_profile(states, n=2, tokens="all")[2].item() == pytest.approx(0.0, abs=1e-6)
    remove_blocks(model, "layers", 2, 2)
    assert len(model.layers) == 4 and [layer.layer_idx for layer in model.layers] == [0, 1, 2, 3]
    assert torch.allclose(model(x)[0], out, atol=1e-6)


def test_profile_in_unit_interval() -> None:
    _, states = Toy(identity=set())(torch.randn(3, 4, 8))
    profile = angular_distance_profile(states, 1)
    assert bool(((profile >= 0) & (profile <= 1)).all()) and not math.isnan(profile.sum().item())


def test_bad_block_arguments() -> None:
    model = Toy(identity=set())
    with pytest.raises(SpeechkitError, match="n must"):
        angular_distance_profile([torch.zeros(1, 1, 2)] * 3, n=3)
    with pytest.raises(SpeechkitError, match="indices"):
        remove_blocks(model, "layers", 5, 2)
    with pytest.raises(SpeechkitError, match="layers"):
        remove_blocks(model, "decoder.layers", 0, 1)
    with pytest.raises(SpeechkitError, match="config_key"):
        remove_blocks(model, "layers", 0, 1, config_key="decoder_layers")
