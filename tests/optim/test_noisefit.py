"""NoiseFiT: unbiased noise, hooks off = identical outputs, zero noise = alpha * CE, SNR layer selection."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.optim import NoiseFiT, adaptive_noise


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def test_adaptive_noise_is_unbiased():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(1, 16, generator=g, dtype=torch.float64)
    draws = adaptive_noise(h.expand(10000, 16), base_std=0.5, generator=g) - h  # (10000, 16)
    std = draws.std(0)
    assert (draws.mean(0).abs() < 4 * std / 100).all()
    assert (std > 0).all()


def test_noise_scale_follows_the_formula():
    h = torch.tensor([[0.0, 1.0, 2.0, 3.0, 10.0]], dtype=torch.float64)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    xi = torch.randn(h.shape, generator=g2, dtype=torch.float64)
    median, mad = 2.0, 1.0  # |h - 2| = (2, 1, 0, 1, 8)
    weight = torch.exp(-0.1 * (h - median).abs() / (mad + 1e-6))
    var = h.var(-1, keepdim=True)
    factor = torch.exp(var / (var + 1e-6)).clamp(max=5.0)  # one row: var / mean(var) = 1
    expected = h + 0.2 * mad * weight * factor * xi
    torch.testing.assert_close(adaptive_noise(h, 0.2, generator=g1), expected)


def test_hooks_disabled_give_identical_outputs_and_enabled_perturb():
    net, x = _net(), torch.randn(4, 6, dtype=torch.float64)
    reference = net(x)
    noisefit = NoiseFiT(noise_std=0.5, faithful_std=False)
    noisefit.attach([net[1], net[3]])
    assert torch.equal(net(x), reference)
    with noisefit.noisy():
        assert not torch.allclose(net(x), reference)
    assert torch.equal(net(x), reference)
    noisefit.detach()
    with noisefit.noisy():
        assert torch.equal(net(x), reference)


def test_zero_noise_hybrid_loss_is_alpha_times_ce():
    net, x, y = _net(), torch.randn(5, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    noisefit = NoiseFiT(noise_std=0.0, alpha=0.3, lam=0.7)
    noisefit.attach([net[1], net[3]])
    loss = noisefit.loss(lambda: net(x), y)
    torch.testing.assert_close(loss, 0.3 * F.cross_entropy(net(x), y))


def test_hybrid_loss_terms_by_hand():
    g = torch.Generator().manual_seed(1)
    z, z1, z2 = (torch.randn(2, 4, 5, generator=g, dtype=torch.float64) for _ in range(3))
    y = torch.tensor([[0, 1, 2, -100], [3, 4, -100, -100]])
    keep = y != -100
    noisefit = NoiseFiT(alpha=0.5, lam=0.1, temperature=2.0)
    kl = lambda p, q: F.kl_div(q, p, log_target=True, reduction="none").sum(-1)  # KL(p || q) from log-probs
    teacher = F.log_softmax(z / 2.0, -1)
    soft = 0.5 * (kl(teacher, F.log_softmax(z1, -1)) + kl(teacher, F.log_softmax(z2, -1)))[keep].mean()
    consistency = kl(F.log_softmax(z2, -1), F.log_softmax(z1, -1))[keep].mean()
    ce = F.cross_entropy(z[keep], y[keep])
    torch.testing.assert_close(noisefit.hybrid_loss(z, z1, z2, y), 0.5 * ce + 0.5 * soft + 0.1 * consistency)


def test_snr_selection_picks_the_layer_with_the_largest_ratio():
    class Scale(nn.Module):
        def __init__(self, offset: float):
            super().__init__()
            self.offset = offset

        def forward(self, x):
            return x + self.offset  # mean|h| grows with the offset, the noise (MAD-scaled) does not

    layers = nn.ModuleList([Scale(0.0), Scale(5.0), Scale(1.0)])
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def run():
        return [layer(x) for layer in layers]

    noisefit = NoiseFiT(n_layers=1)
    snr = noisefit.layer_snr(list(layers), run, torch.Generator().manual_seed(0))
    assert snr.argmax().item() == 1 and snr.argmin().item() == 0
    assert noisefit.select_layers(list(layers), run) == [1]
    smallest = NoiseFiT(n_layers=2, select="smallest")
    assert smallest.select_layers(list(layers), run) == [0, 2]


def test_bad_input():
    with pytest.raises(SpeechkitError, match="alpha"):
        NoiseFiT(alpha=1.5)
    with pytest.raises(SpeechkitError, match="n_layers"):
        NoiseFiT(n_layers=5).select_layers([nn.Identity()], lambda: None)
