import math

import numpy as np
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.rl import group_advantages, grpo_loss, k3_kl, token_entropy, token_log_probs


def test_group_advantages_have_zero_mean_and_unit_unbiased_std():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0], [0.2, 0.5, 0.9, 0.1, 0.3]])
    adv = group_advantages(rewards, eps=0.0)
    assert torch.allclose(adv.mean(dim=1), torch.zeros(2), atol=1e-6)
    assert torch.allclose(adv.std(dim=1, unbiased=True), torch.ones(2), atol=1e-6)
    row = rewards[1].numpy()
    assert np.allclose(adv[1].numpy(), (row - row.mean()) / row.std(ddof=1), atol=1e-6)


def test_equal_rewards_give_zero_advantage_and_zero_policy_loss():
    adv = group_advantages(torch.ones(1, 4))
    assert torch.equal(adv, torch.zeros(1, 4))
    logp = torch.randn(4, 3, requires_grad=True)
    out = grpo_loss(logp, logp.detach(), adv.flatten(), torch.ones(4, 3), kl_coef=0, entropy_coef=0)
    assert out.loss.item() == 0.0


@pytest.mark.parametrize("rewards", [torch.ones(3, 1), torch.ones(4)])
def test_groups_of_one_or_flat_rewards_are_refused(rewards):
    with pytest.raises(SpeechkitError, match="rewards"):
        group_advantages(rewards)


def test_k3_is_non_negative_and_zero_only_at_the_reference():
    a, b = torch.randn(100), torch.randn(100)
    assert bool((k3_kl(a, b) >= 0).all())
    assert torch.equal(k3_kl(a, a), torch.zeros(100))
    assert bool((k3_kl(a, b)[a != b] > 0).all())


def test_on_policy_gradient_is_advantage_weighted_log_likelihood():
    """rho = 1 and no KL / entropy: the loss gradient equals that of -token-mean(A * log pi)."""
    torch.manual_seed(0)
    logits = torch.randn(4, 5, 7, requires_grad=True)
    tokens = torch.randint(0, 7, (4, 5))
    mask = torch.ones(4, 5)
    mask[1, 3:] = 0
    adv = torch.tensor([1.0, -0.5, 0.3, -0.8])
    logp = token_log_probs(logits, tokens)
    grpo_loss(logp, logp.detach(), adv, mask, kl_coef=0, entropy_coef=0).loss.backward()
    grad = logits.grad.clone()
    logits.grad = None
    reference = -((adv[:, None] * token_log_probs(logits, tokens)) * mask).sum() / mask.sum()
    reference.backward()
    assert torch.allclose(grad, logits.grad, atol=1e-6)


def test_loss_is_the_hand_value_with_clipping_kl_and_entropy():
    logp = torch.log(torch.tensor([[0.5, 0.2]]))
    old = torch.log(torch.tensor([[0.25, 0.2]]))  # ratios 2.0 and 1.0
    ref = torch.log(torch.tensor([[0.4, 0.1]]))
    ent = torch.tensor([[1.0, 3.0]])
    out = grpo_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 2), ref, ent, clip=0.2, kl_coef=0.1,
                    entropy_coef=0.01)
    policy = -(min(2.0, 1.2) + 1.0) / 2
    k3 = [math.exp(d) - d - 1 for d in (math.log(0.4 / 0.5), math.log(0.1 / 0.2))]
    assert out.policy.item() == pytest.approx(policy)
    assert out.kl.item() == pytest.approx(sum(k3) / 2)
    assert out.entropy.item() == pytest.approx(2.0)
    assert out.clip_fraction.item() == pytest.approx(0.5)
    assert out.loss.item() == pytest.approx(policy + 0.1 * sum(k3) / 2 - 0.01 * 2.0, rel=1e-6)


def test_entropy_bonus_raises_entropy():
    logits = torch.tensor([[[2.0, 0.0, -1.0, 0.5]]], requires_grad=True)
    mask = torch.ones(1, 1)
    logp = token_log_probs(logits, torch.zeros(1, 1, dtype=torch.long))
    loss = grpo_loss(logp, logp.detach(), torch.zeros(1), mask, entropy=token_entropy(logits), kl_coef=0,
                     entropy_coef=1.0).loss
    loss.backward()
    with torch.no_grad():
        stepped = logits - 0.1 * logits.grad
    assert token_entropy(stepped).item() > token_entropy(logits).item()


def test_grpo_learns_a_bandit(one_thread):
    """One prompt, four tokens, reward 1 for token 2: 200 steps of G = 8 samples drive P(token 2) above 0.9."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.zeros(4, requires_grad=True)
    reference = torch.log_softmax(torch.zeros(4), -1)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(200):
        with torch.no_grad():
            samples = torch.multinomial(torch.softmax(logits, -1), 8, replacement=True, generator=generator)
        rewards = (samples == 2).float()[None]
        log_probs = torch.log_softmax(logits, -1)[samples][:, None]
        out = grpo_loss(log_probs, log_probs.detach(), group_advantages(rewards).flatten(), torch.ones(8, 1),
                        reference[samples][:, None], token_entropy(logits).expand(8, 1))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert torch.softmax(logits, -1)[2].item() > 0.9


def test_bad_shapes_are_clear_errors():
    logp = torch.zeros(2, 3)
    with pytest.raises(SpeechkitError, match="mask: expected shape"):
        grpo_loss(logp, logp, torch.zeros(2), torch.ones(2, 4))
    with pytest.raises(SpeechkitError, match="advantages"):
        grpo_loss(logp, logp, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(SpeechkitError, match="no response token"):
        grpo_loss(logp, logp, torch.zeros(2), torch.zeros(2, 3))
    with pytest.raises(SpeechkitError, match="tokens: expected shape"):
        token_log_probs(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
