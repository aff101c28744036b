import math

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.rl import dpo_loss, simpo_loss


def test_dpo_at_the_reference_is_log_2():
    logps = torch.tensor([-3.0, -10.0, -0.5])
    other = torch.tensor([-4.0, -2.0, -7.0])
    assert torch.allclose(dpo_loss(logps, other, logps, other), torch.full((3,), math.log(2)))


def test_dpo_hand_value_and_gradient_favours_chosen():
    pc = torch.tensor([-2.0], requires_grad=True)
    pr = torch.tensor([-5.0], requires_grad=True)
    loss = dpo_loss(pc, pr, torch.tensor([-3.0]), torch.tensor([-4.0]), beta=0.5)
    margin = (-2.0 + 3.0) - (-5.0 + 4.0)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.5 * margin))))
    loss.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises log p(chosen), lowers log p(rejected)


def test_simpo_hand_value_uses_length_normalised_rewards():
    loss = simpo_loss(torch.tensor([-6.0]), torch.tensor([-6.0]), torch.tensor([3.0]), torch.tensor([2.0]),
                      beta=2.5, gamma=0.5)
    logit = 2.5 * (-2.0) - 2.5 * (-3.0) - 0.5
    assert loss.item() == pytest.approx(math.log1p(math.exp(-logit)))


def test_bad_input_is_clear():
    with pytest.raises(SpeechkitError, match="one shape"):
        dpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2))
    with pytest.raises(SpeechkitError, match="at least one token"):
        simpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.ones(1))
