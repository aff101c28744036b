"""HarmonicHead and its distances: HarMax identity, scale invariance, hand values, reference head, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.losses import HarmonicHead, harmax_log_probs, pairwise_log_distance

ALL = ["euclidean", "manhattan", "minkowski", "chebyshev", "cosine", "mahalanobis", "mahalanobis_diagonal",
       "mahalanobis_cholesky", "hamming", "canberra", "bray_curtis", "bray_curtis_abs"]


def _head(distance: str, dim: int = 4, n_classes: int = 3, **kw) -> HarmonicHead:
    torch.manual_seed(0)
    return HarmonicHead(dim, n_classes, distance=distance, **kw).double()


def test_harmax_equals_power_form():
    d = torch.rand(6, 5, dtype=torch.float64) + 0.1
    for n in (1.0, 2.5, 7.0):
        power = d ** -n / (d ** -n).sum(-1, keepdim=True)
        torch.testing.assert_close(harmax_log_probs(torch.log(d), n).exp(), power, rtol=0, atol=1e-10)
        scaled = torch.log(d / d.amin(-1, keepdim=True))  # min-normalisation leaves p unchanged
        torch.testing.assert_close(harmax_log_probs(scaled, n), harmax_log_probs(torch.log(d), n), rtol=0, atol=1e-10)


@pytest.mark.parametrize("distance,kw", [
    ("euclidean", {}), ("manhattan", {}), ("minkowski", {"p": 0.5}), ("minkowski", {"p": 3.0}),
    ("chebyshev", {"smooth_alpha": None}), ("cosine", {}), ("canberra", {"denominator_min": 1e-30}),
    ("bray_curtis", {"denominator_min": 1e-30}), ("bray_curtis_abs", {"denominator_min": 1e-30})])
def test_scale_invariance_of_homogeneous_distances(distance, kw):
    head = _head(distance, eps=0.0, **kw)
    x = torch.randn(7, 4, dtype=torch.float64)
    reference = head(x)
    w = head.weight.detach().clone()
    for c in (0.1, 10.0):
        with torch.no_grad():
            head.weight.copy_(c * w)
        torch.testing.assert_close(head(c * x), reference, rtol=0, atol=1e-9)


def test_hand_computed_distances():
    x, w = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    expected = {
        "euclidean": math.sqrt(5), "manhattan": 3.0, "chebyshev": 2.0, "cosine": 1.0, "canberra": 2.0,
        "bray_curtis": 1.0, "bray_curtis_abs": 1.0, "minkowski": 9 ** (1 / 3),
        "hamming": abs(sig(1.0) - 0.5) + abs(0.5 - sig(2.0)),
    }
    kwargs = {"chebyshev": {"smooth_alpha": None}, "minkowski": {"p": 3.0}}
    for kind, value in expected.items():
        got = pairwise_log_distance(x, w, kind, **kwargs.get(kind, {})).exp().item()
        assert got == pytest.approx(value, rel=1e-12), kind
    smooth = pairwise_log_distance(x, w, "chebyshev", smooth_alpha=10.0).exp().item()
    assert smooth == pytest.approx(math.log(math.exp(10) + math.exp(20)) / 10, rel=1e-12)


def test_one_dimensional_probabilities_by_hand():
    head = HarmonicHead(1, 2, eps=0.0).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0], [2.0]]))
    p = head(torch.zeros(1, 1, dtype=torch.float64)).exp()  # d = (1, 2), n = 1 -> (1, 1/2) / 1.5
    torch.testing.assert_close(p, torch.tensor([[2 / 3, 1 / 3]], dtype=torch.float64))


def test_mahalanobis_with_identity_equals_euclidean():
    x = torch.randn(5, 4, dtype=torch.float64)
    euclid = _head("euclidean")
    for kind in ("mahalanobis", "mahalanobis_diagonal", "mahalanobis_cholesky"):
        head = _head(kind, mahalanobis_lambda=0.0)
        with torch.no_grad():
            head.weight.copy_(euclid.weight)
            if kind != "mahalanobis_diagonal":  # M = A A^T (+ 0 I) and M = L L^T with A = L = I
                head.factor.copy_(torch.eye(4))
            torch.testing.assert_close(head.metric_matrix(), torch.eye(4, dtype=torch.float64))
        torch.testing.assert_close(head(x), euclid(x), rtol=0, atol=1e-12)


def test_matches_official_gpt2_distlayer_formula():
    n_embd, vocab, alpha = 8, 6, 0.01
    head = _head("euclidean", dim=n_embd, n_classes=vocab, n=float(n_embd), eps=0.0, squared=True,
                 dim_normalize=True, prob_smoothing=alpha)
    x = torch.randn(3, 5, n_embd, dtype=torch.float64)
    w = head.weight.detach()
    # grow-crystals GPT2/model_l2loss.py::DistLayer, then cross_entropy(log p) renormalises with log_softmax.
    d2 = (w ** 2).sum(-1) + (x ** 2).sum(-1, keepdim=True) - 2 * x @ w.T
    d2 = d2 / n_embd
    d2 = d2 / d2.amin(-1, keepdim=True)
    s = d2 ** (-n_embd)
    p = s / s.sum(-1, keepdim=True) + alpha / vocab
    torch.testing.assert_close(head(x), torch.log_softmax(torch.log(p), -1), rtol=0, atol=1e-10)


@pytest.mark.parametrize("distance", ALL)
def test_gradients_match_finite_differences(distance):
    head = _head(distance, prob_smoothing=0.01)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(head, (x,), eps=1e-6, atol=1e-5)
    head(x)[torch.arange(3), torch.tensor([0, 1, 2])].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


def test_log_probabilities_normalised_for_every_distance():
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    for distance in ALL:
        out = _head(distance)(x)
        assert out.shape == (2, 3, 3)
        torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 3, dtype=torch.float64))


def test_bad_input_names_the_argument():
    with pytest.raises(SpeechkitError, match="distance"):
        HarmonicHead(4, 3, distance="hyperbolic")
    with pytest.raises(SpeechkitError, match="^n:"):
        HarmonicHead(4, 3, n=0.0)
    with pytest.raises(SpeechkitError, match="^p:"):
        HarmonicHead(4, 3, distance="minkowski", p=-1.0)
    with pytest.raises(SpeechkitError, match="^metric_init_scale:"):
        HarmonicHead(4, 3, distance="mahalanobis", metric_init_scale=0.0)
    with pytest.raises(SpeechkitError, match="^mahalanobis_lambda:"):
        HarmonicHead(4, 3, distance="mahalanobis", mahalanobis_lambda=-1.0)
    with pytest.raises(SpeechkitError, match="^metric_matrix:"):
        HarmonicHead(4, 3).metric_matrix()
    with pytest.raises(SpeechkitError, match="x: expected last dimension 4"):
        HarmonicHead(4, 3)(torch.randn(2, 5))
    with pytest.raises(SpeechkitError, match="distance"):
        pairwise_log_distance(torch.randn(2, 4), torch.randn(3, 4), "nope")


def _toy():
    """Baek et al. Fig. 1c: four classes at the corners of a square, a fifth at its centre."""
    centres = torch.tensor([[0.0, 0.0], [2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0]])
    g = torch.Generator().manual_seed(0)
    y = torch.arange(5).repeat_interleave(40)
    return centres, centres[y] + 0.3 * torch.randn(200, 2, generator=g), y


def test_harmonic_toy_learns_class_centres_with_bounded_weights():
    centres, x, y = _toy()
    torch.manual_seed(0)
    head = HarmonicHead(2, 5, n=4.0)
    linear = torch.nn.Linear(2, 5)
    norms = {"harmonic": [], "linear": []}
    for name, model, out in (("harmonic", head, head), ("linear", linear, lambda v: torch.log_softmax(linear(v), -1))):
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for step in range(600):
            opt.zero_grad()
            torch.nn.functional.nll_loss(out(x), y).backward()
            opt.step()
            if step % 100 == 99:
                norms[name].append(float(model.weight.detach().norm()))
    assert (head(x).argmax(-1) == y).float().mean() == 1.0
    assert (head.weight.detach() - centres).norm(dim=-1).max() < 0.5  # class vectors sit at the class centres
    harmonic = norms["harmonic"]  # converges to ||centres|| (bounded by the data), CE's keeps growing
    assert abs(harmonic[-1] - float(centres.norm())) < 0.1 * float(centres.norm())
    assert abs(harmonic[-1] - harmonic[-2]) < 0.01 * harmonic[-1]
    assert all(b > a for a, b in zip(norms["linear"], norms["linear"][1:]))  # CE keeps growing ||W||


def test_built_from_a_config_and_typo_names_the_key():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(HarmonicHead, "head")
    head = parser.instantiate(parser.parse_object(
        {"head": {"dim": 8, "n_classes": 10, "distance": "bray_curtis_abs", "n": 2.0}})).head
    assert isinstance(head, HarmonicHead) and head.distance == "bray_curtis_abs"
    with pytest.raises(Exception, match="distance"):
        parser.parse_object({"head": {"dim": 8, "n_classes": 10, "distance": "braycurtis"}})
