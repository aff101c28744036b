import pytest
import torch
from torch import nn

from speechkit.distill.dataset import (
    ExpertConfig,
    TrajectoryMatcher,
    expert_loss,
    matching_loss,
    parameters_of,
    train_expert,
)
from speechkit.errors import SpeechkitError


def squared_error(outputs, targets):
    return ((outputs.squeeze(-1) - targets) ** 2)


def regression(n=12, d=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(n, generator=generator,
                                                                                   dtype=torch.float64)
    torch.manual_seed(seed)
    return nn.Linear(d, 1).double(), x, y


def test_matching_the_real_data_with_the_experts_rate_costs_nothing():
    """Synthetic set = the real data, the expert's rate, full-batch GD: the unrolled steps retrace the expert's."""
    model, x, y = regression()
    trajectory = train_expert(model, x, y, ExpertConfig(epochs=6, lr=0.05, batch_size=0), loss_fn=squared_error)
    syn_x = x.clone().requires_grad_(True)
    loss = matching_loss(model, trajectory[1], trajectory[5], syn_x, y, torch.tensor(0.05, dtype=torch.float64), 4,
                         loss_fn=squared_error)
    assert loss.item() < 1e-20
    loss.backward()
    assert syn_x.grad.abs().max().item() < 1e-9


def test_gradient_to_the_synthetic_set_matches_finite_differences():
    model, x, y = regression(seed=1)
    trajectory = train_expert(model, x, y, ExpertConfig(epochs=4, lr=0.05, batch_size=0), loss_fn=squared_error)
    syn_x = (x[:5] + 0.3).clone().requires_grad_(True)
    lr = torch.tensor(0.04, dtype=torch.float64)

    def loss_at(values):
        return matching_loss(model, trajectory[0], trajectory[2], values, y[:5], lr, 3, loss_fn=squared_error)

    loss_at(syn_x).backward()
    numeric = torch.zeros_like(syn_x)
    for i in range(syn_x.shape[0]):
        for j in range(syn_x.shape[1]):
            step = torch.zeros_like(syn_x)
            step[i, j] = 1e-6
            numeric[i, j] = (loss_at(syn_x.detach() + step) - loss_at(syn_x.detach() - step)) / 2e-6
    assert torch.allclose(syn_x.grad, numeric, atol=1e-6, rtol=1e-4)


def test_clipping_loss_and_gradient_penalty():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    params = {k: v.clone().requires_grad_(True) for k, v in parameters_of(model).items()}
    x, y = torch.randn(8, 4) * 10, torch.randint(0, 3, (8,))
    ce = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
    clipped = expert_loss(model, params, x, y, loss_clip=1.0)
    assert clipped.item() == pytest.approx(ce.clamp_max(1.0).mean().item(), rel=1e-6)
    penalised = expert_loss(model, params, x, y, grad_penalty=0.1)
    grads = torch.autograd.grad(ce.mean(), list(model.parameters()))
    assert penalised.item() == pytest.approx(ce.mean().item() + 0.1 * sum((g ** 2).sum() for g in grads).item(),
                                             rel=1e-5)


def test_smooth_experts_move_less_per_epoch(one_thread):
    torch.manual_seed(0)
    x, y = torch.randn(200, 10) * 3, torch.randint(0, 4, (200,))
    moves = []
    for config in (ExpertConfig(epochs=5, lr=0.2, batch_size=20), ExpertConfig(epochs=5, lr=0.2, batch_size=20,
                                                                               loss_clip=1.0, grad_penalty=0.1)):
        torch.manual_seed(1)
        trajectory = train_expert(nn.Linear(10, 4), x, y, config, torch.Generator().manual_seed(0))
        moves.append(sum(torch.cat([(b[k] - a[k]).flatten() for k in a]).norm().item()
                         for a, b in zip(trajectory, trajectory[1:])))
    assert moves[1] < moves[0]


def test_matcher_lowers_the_matching_loss(one_thread):
    torch.manual_seed(0)
    centers = torch.randn(3, 8) * 2
    y = torch.arange(3).repeat_interleave(40)
    x = centers[y] + torch.randn(120, 8)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    trajectories = []
    for seed in range(3):
        torch.manual_seed(seed)
        for layer in model:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        trajectories.append(train_expert(model, x, y, ExpertConfig(epochs=6, lr=0.05, batch_size=30),
                                         torch.Generator().manual_seed(seed)))
    syn_y = torch.arange(3)
    matcher = TrajectoryMatcher(model, trajectories, torch.randn(3, 8), syn_y, syn_steps=10, expert_epochs=2,
                                max_start_epoch=3, lr_init=0.05, lr_syn=0.1)
    losses = [matcher.step() for _ in range(60)]
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10
    with pytest.raises(SpeechkitError, match="exceeds"):
        TrajectoryMatcher(model, trajectories, torch.randn(3, 8), syn_y, expert_epochs=4, max_start_epoch=3)
