"""Tests of speechkit.curvature: HVP vs the exact Hessian, Hutchinson exactness, power iteration vs eigvalsh."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speechkit.curvature import (hutchinson_samples, hutchinson_trace, hvp, power_iteration, sharpness_report,
                                 top_eigenvalue)
from speechkit.errors import SpeechkitError


pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp_problem(seed: int = 0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,))
    return net, x, y


def _flat_hessian(net: nn.Module, x, y) -> torch.Tensor:
    """Exact Hessian of the MLP's CE loss over all parameters, from torch.autograd.functional.hessian."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss_of(flat):
        tensors, i = {}, 0
        for name, shape in zip(names, shapes):
            k = shape.numel()
            tensors[name] = flat[i:i + k].reshape(shape)
            i += k
        logits = torch.func.functional_call(net, tensors, (x,))
        return nn.functional.cross_entropy(logits, y)

    return torch.autograd.functional.hessian(loss_of, flat0)


def test_hvp_equals_exact_hessian_times_vector():
    net, x, y = _mlp_problem()
    H = _flat_hessian(net, x, y)
    params = list(net.parameters())
    v = [torch.randn_like(p) for p in params]
    loss = nn.functional.cross_entropy(net(x), y)
    hv = torch.cat([t.reshape(-1) for t in hvp(loss, net, v)])
    expected = H @ torch.cat([t.reshape(-1) for t in v])
    torch.testing.assert_close(hv, expected, rtol=1e-10, atol=1e-12)


def test_hutchinson_exact_for_diagonal_quadratic():
    a = torch.tensor([0.5, 2.0, -1.0, 7.0, 3.25], dtype=torch.float64)
    theta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * (a * theta * theta).sum()  # H = diag(a)
    samples = hutchinson_samples(loss, [theta], n_samples=7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(samples, torch.full((7,), float(a.sum()), dtype=torch.float64), rtol=0, atol=1e-12)


def test_hutchinson_dense_spd_within_3_percent():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(20, 20, generator=g, dtype=torch.float64)
    a = m @ m.T / 20 + torch.eye(20, dtype=torch.float64)
    theta = torch.randn(20, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * theta @ a @ theta
    estimate = hutchinson_trace(loss, [theta], n_samples=2000, generator=g)
    assert abs(estimate - float(a.trace())) / float(a.trace()) < 0.03


def test_power_iteration_recovers_lambda_max_of_spd_quadratic():
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(50, 50, generator=g, dtype=torch.float64))
    eig = torch.linspace(0.1, 5.0, 50, dtype=torch.float64)
    eig[-1] = 10.0  # a clear gap so that 200 iterations converge to 1e-4
    a = q @ torch.diag(eig) @ q.T
    theta = torch.randn(50, dtype=torch.float64, requires_grad=True)
    value, vector = power_iteration(0.5 * theta @ a @ theta, [theta], iters=200, tol=1e-12, generator=g)
    assert abs(value - 10.0) < 1e-4
    assert abs(abs(float(vector[0] @ q[:, -1])) - 1.0) < 1e-4


def test_power_iteration_matches_eigvalsh_on_small_network():
    net, x, y = _mlp_problem(seed=1)
    eigenvalues = torch.linalg.eigvalsh(_flat_hessian(net, x, y))
    dominant = eigenvalues[eigenvalues.abs().argmax()]  # power iteration finds the largest |lambda|
    second = eigenvalues.abs().sort().values[-2]
    assert second < 0.9 * dominant.abs(), "test network needs a spectral gap"
    loss = nn.functional.cross_entropy(net(x), y)
    value = top_eigenvalue(loss, net, iters=1000, tol=1e-12, generator=torch.Generator().manual_seed(0))
    assert abs(value - float(dominant)) < 1e-5 * abs(float(dominant))


def test_sharpness_report_averages_over_batches():
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    scales = [1.0, 3.0]  # loss_b = 0.5 * s_b * ||theta - 1||^2 -> H = s_b I
    report = sharpness_report([theta], lambda s: 0.5 * s * ((theta - 1) ** 2).sum(), scales, iters=5, n_samples=4)
    assert report.n_batches == 2 and report.n_params == 3
    assert report.top_eigenvalue == pytest.approx(2.0) and report.hessian_trace == pytest.approx(6.0)
    assert report.loss == pytest.approx(0.5 * 2.0 * 3)
    assert report.top_eigenvalue_std == pytest.approx(torch.tensor([1.0, 3.0]).std().item())


def test_bad_input_names_the_argument():
    theta = torch.randn(3, requires_grad=True)
    loss = (theta ** 2).sum()
    with pytest.raises(SpeechkitError, match="vector"):
        hvp(loss, [theta], [torch.randn(4)])
    with pytest.raises(SpeechkitError, match="n_samples"):
        hutchinson_trace(loss, [theta], n_samples=0)
    with pytest.raises(SpeechkitError, match="iters"):
        top_eigenvalue(loss, [theta], iters=0)
    with pytest.raises(SpeechkitError, match="loss"):
        top_eigenvalue(theta.detach().sum(), [theta])
    with pytest.raises(SpeechkitError, match="params"):
        hvp(loss, [], [])


def test_fisher_trace_equals_hessian_trace_of_softmax_regression():
    from speechkit.curvature import fisher_trace

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    w = (0.5 * torch.randn(3, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    # Softmax regression: H of the mean NLL = E_x[(diag p - p p^T) (x) x x^T] does not depend on y, = Fisher.
    hessian = torch.autograd.functional.hessian(
        lambda v: -torch.log_softmax(x @ v, -1)[:, 0].mean(), w.detach())
    exact = float(hessian.reshape(12, 12).trace())
    samples = [fisher_trace(torch.log_softmax(x @ w, -1), [w], n_samples=10, generator=g) for _ in range(20)]
    mean, std = torch.tensor(samples).mean().item(), torch.tensor(samples).std().item()
    assert abs(mean - exact) < 3 * std / 20 ** 0.5
    assert abs(mean - exact) < 0.05 * exact
