import torch

from speechkit.compress.prune.prunenet import (
    MAX_REWARD,
    PolicyNet,
    policy_loss,
    relaxed_keep_probabilities,
    select_rows,
    spectral_ks_reward,
    train_policy,
)


def test_removing_appended_zero_rows_keeps_the_spectrum() -> None:
    w = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    padded = torch.cat([w, torch.zeros(3, 4)])
    sv = torch.linalg.svdvals(padded.double())
    assert spectral_ks_reward(sv, padded[:6]) == MAX_REWARD
    assert spectral_ks_reward(sv, padded[:3]) < MAX_REWARD


def test_policy_gradient_raises_the_probability_of_sampled_rows() -> None:
    torch.manual_seed(0)
    policy = PolicyNet(hidden=4, inter=8)
    w = torch.randn(8, 4)
    rows = torch.tensor([0, 3, 5])
    alpha_before = policy(w)[rows].detach()
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.05)
    for _ in range(5):
        optimizer.zero_grad()
        policy_loss(policy(w), rows, reward=1.0).backward()
        optimizer.step()
    assert bool((policy(w)[rows] > alpha_before).all())


def test_relaxed_probabilities_follow_alpha() -> None:
    alpha = torch.tensor([0.05, 0.95]).repeat(5000, 1)
    o = relaxed_keep_probabilities(alpha, torch.Generator().manual_seed(0))
    assert o[:, 0].mean() < 0.2 and o[:, 1].mean() > 0.8


def test_trained_policy_selects_the_requested_row_count() -> None:
    weights = [torch.randn(12, 5, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    policy = train_policy(weights, sparsity=0.25, episodes=3, lr=1e-2)
    rows = select_rows(policy, weights[0], 0.5)
    assert rows.shape == (6,) and rows.unique().numel() == 6
