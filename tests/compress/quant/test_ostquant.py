import pytest
import torch
from torch import nn

from speechkit.compress.quant.ostquant import (
    LearnableOrthogonal,
    OrthoScale,
    OstQuantLinear,
    random_orthogonal,
    train_transforms,
)
from speechkit.errors import SpeechkitError
from speechkit.losses.kl_top import kl_top


def _random_transform(dim: int, seed: int, parametrisation: str = "cayley") -> OrthoScale:
    g = torch.Generator().manual_seed(seed)
    rotation = random_orthogonal(dim, g)
    t = OrthoScale(dim, parametrisation=parametrisation, init_rotation=rotation)  # type: ignore[arg-type]
    with torch.no_grad():
        t.rotation.generator.normal_(0, 0.3, generator=g)
        t.log_scale.normal_(0, 0.5, generator=g)
    return t


@pytest.mark.parametrize("parametrisation", ["cayley", "exp"])
def test_transform_pair_is_an_exact_equivalence(parametrisation: str) -> None:
    t = _random_transform(8, 0, parametrisation)
    x, w = torch.randn(5, 8), torch.randn(3, 8)
    assert torch.allclose(t.transform_activation(x) @ t.transform_weight(w).T, x @ w.T, atol=1e-5)


@pytest.mark.parametrize("parametrisation", ["cayley", "exp"])
def test_rotation_stays_orthogonal_through_training(parametrisation: str) -> None:
    rotation = LearnableOrthogonal(6, parametrisation)  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(rotation.parameters(), lr=0.1)
    target = torch.randn(6, 6)
    for _ in range(100):
        optimizer.zero_grad()
        (rotation() - target).pow(2).sum().backward()
        optimizer.step()
    o = rotation().detach()
    assert torch.allclose(o.T @ o, torch.eye(6), atol=1e-5)
    assert not torch.allclose(o, torch.eye(6))


def test_fusing_into_the_previous_layer_keeps_the_network() -> None:
    torch.manual_seed(0)
    prev, nxt = nn.Linear(4, 8), nn.Linear(8, 3)
    x = torch.randn(6, 4)
    before = nxt(prev(x))
    t = _random_transform(8, 1)
    wrapped = OstQuantLinear(nxt, t, weight_bits=16)
    assert torch.allclose(wrapped(prev(x)), before, atol=1e-3)  # 16-bit weights: equivalence up to rounding
    folded = wrapped.folded()
    t.fuse_into_previous(prev)
    assert torch.allclose(folded(prev(x)), before, atol=1e-3)


def test_learned_transforms_reduce_kl_top_of_a_w4a4_model() -> None:
    torch.manual_seed(0)
    hidden, head = nn.Linear(16, 32), nn.Linear(32, 20)
    with torch.no_grad():
        head.weight.mul_(3), head.bias.mul_(3)  # sharper output distributions
    x = torch.randn(128, 16)
    x[:, :2] *= 25  # two outlier channels: per-token 4-bit activations lose the others
    teacher = head(torch.relu(hidden(x))).detach()
    transform = OrthoScale(16)  # starts as the identity: plain W4A4 round-to-nearest
    layer = OstQuantLinear(hidden, transform, weight_bits=4, act_bits=4)
    plain = kl_top(head(torch.relu(layer(x))), teacher, k=10).item()
    history = train_transforms(lambda b: head(torch.relu(layer(b))), [x], [teacher], transform.parameters(),
                               steps=60, lr=0.01, k=10)
    assert history[0] == pytest.approx(plain)
    assert sum(history[-10:]) / 10 < 0.8 * plain  # measured: 0.0346 -> 0.022 (mean of the last 10 steps)
    o = transform.rotation().detach()
    assert torch.allclose(o.T @ o, torch.eye(16), atol=1e-5)


def test_bad_bits_and_pairs() -> None:
    with pytest.raises(SpeechkitError, match="weight_bits"):
        OstQuantLinear(nn.Linear(4, 4), OrthoScale(4), weight_bits=1)
    with pytest.raises(SpeechkitError, match="act_bits"):
        OstQuantLinear(nn.Linear(4, 4), OrthoScale(4), act_bits=17)
    with pytest.raises(SpeechkitError, match="teacher_logits"):
        train_transforms(lambda b: b, [torch.zeros(1)], [], OrthoScale(2).parameters())
