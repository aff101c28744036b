import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.losses.flow_matching import FlowHead, flow_matching_loss, ot_path, sample_ode


def test_path_ends_and_velocity_is_the_time_derivative():
    x0, x1 = torch.randn(4, 3), torch.randn(4, 3)
    start, _ = ot_path(x0, x1, torch.zeros(4))
    end, _ = ot_path(x0, x1, torch.ones(4))
    assert torch.equal(start, x0) and torch.allclose(end, x1)
    end, _ = ot_path(x0, x1, torch.ones(4), sigma_min=0.1)
    assert torch.allclose(end, 0.1 * x0 + x1)
    t, h = torch.rand(4, dtype=torch.float64), 1e-6
    x0, x1 = x0.double(), x1.double()
    numeric = (ot_path(x0, x1, t + h, 0.1)[0] - ot_path(x0, x1, t - h, 0.1)[0]) / (2 * h)
    assert torch.allclose(numeric, ot_path(x0, x1, t, 0.1)[1], atol=1e-8)


def oracle(sigma_min: float):
    """The exact velocity toward the target passed as the condition: x0 recovered from x_t."""
    def velocity(x_t, t, x1):
        tt = t[:, None]
        x0 = (x_t - tt * x1) / (1 - (1 - sigma_min) * tt)
        return x1 - (1 - sigma_min) * x0
    return velocity


def test_an_oracle_velocity_has_zero_loss_and_one_euler_step_lands_on_the_target():
    x1 = torch.randn(16, 5, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    assert flow_matching_loss(oracle(0.0), x1, x1, generator=generator).item() < 1e-20
    x0 = torch.randn(16, 5, dtype=torch.float64)
    assert torch.allclose(sample_ode(oracle(0.0), x1, 5, steps=1, x0=x0), x1, atol=1e-12)
    assert torch.allclose(sample_ode(oracle(0.0), x1, 5, steps=4, method="midpoint", x0=x0), x1, atol=1e-12)


def test_a_two_class_mixture_is_learned(one_thread):
    """Condition = one-hot class; class 0 around (-2, 1), class 1 around (2, -1), std 0.3."""
    torch.manual_seed(0)
    means = torch.tensor([[-2.0, 1.0], [2.0, -1.0]])
    head = FlowHead(dim=2, cond_dim=2, width=64, blocks=2, time_dim=16)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(1500):
        labels = torch.randint(0, 2, (256,))
        x1 = means[labels] + 0.3 * torch.randn(256, 2)
        loss = flow_matching_loss(head, x1, torch.nn.functional.one_hot(labels, 2).float(), generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for label in (0, 1):
        cond = torch.nn.functional.one_hot(torch.full((2000,), label), 2).float()
        for steps in (1, 10):
            samples = sample_ode(head, cond, 2, steps=steps, generator=torch.Generator().manual_seed(1))
            if steps == 10:
                assert (samples.mean(0) - means[label]).abs().max().item() < 0.1
            else:  # one Euler step still lands in the right mode
                assert ((samples - means[label]).norm(dim=1) < 1.5).float().mean().item() > 0.9


def test_bad_input_is_clear():
    with pytest.raises(SpeechkitError, match="same shape"):
        ot_path(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(SpeechkitError, match="one time per example"):
        ot_path(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(SpeechkitError, match="steps"):
        sample_ode(oracle(0.0), torch.zeros(2, 3), 3, steps=0)
    with pytest.raises(SpeechkitError, match="FlowHead"):
        FlowHead(2, 2)(torch.zeros(4, 3), torch.zeros(4), torch.zeros(4, 2))
