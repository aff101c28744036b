"""Loss-based sample re-weighting (Sow et al. 2025): weight properties and the LinUpper ratio."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.losses import LossReweighter, sample_weights

STRATEGIES = ["linupper", "quadratic", "extremes", "upper", "uniform"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_weights_sum_to_one_permutation_equivariant_and_uniform_at_large_r(strategy):
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(9, generator=g, dtype=torch.float64) * 4
    w = sample_weights(losses, strategy)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    perm = torch.randperm(9, generator=g)
    torch.testing.assert_close(sample_weights(losses[perm], strategy), w[perm])
    torch.testing.assert_close(sample_weights(losses, strategy, r=1e9), torch.full((9,), 1 / 9, dtype=torch.float64))
    torch.testing.assert_close(sample_weights(torch.full((4,), 2.0), strategy), torch.full((4,), 0.25))


def test_linupper_ratio_and_flat_upper_half():
    losses = torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0], dtype=torch.float64)  # midpoint 2.0
    w = sample_weights(losses, "linupper", delta=1.0, r=0.4)
    torch.testing.assert_close(w[2:], torch.full((3,), float(w[2]), dtype=torch.float64))
    assert (w[0] / w[2]).item() == pytest.approx(math.exp(-2.5), rel=1e-12)  # = 0.0821


def test_quadratic_and_extremes_shapes():
    losses = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)  # x = -1, 0, 1
    q, e = sample_weights(losses, "quadratic", r=1.0), sample_weights(losses, "extremes", r=1.0)
    assert q[1] > q[0] and q[0] == pytest.approx(q[2].item())
    assert (q[1] / q[0]).item() == pytest.approx(math.e)
    assert e[1] < e[0] and (e[0] / e[1]).item() == pytest.approx(math.e)


def test_reweighter_is_a_weighted_mean_with_warmup_and_gradient():
    losses = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64, requires_grad=True)
    module = LossReweighter("linupper", warmup_steps=10, gather=False)
    assert module(losses, step=3).item() == pytest.approx(losses.mean().item())
    out = module(losses, step=10)
    w = sample_weights(losses, "linupper")
    assert out.item() == pytest.approx((w * losses).sum().item())
    out.backward()
    torch.testing.assert_close(losses.grad, w)  # weights carry no gradient


def test_bad_input():
    with pytest.raises(SpeechkitError, match="strategy"):
        LossReweighter("lin-upper")
    with pytest.raises(SpeechkitError, match="^r:"):
        sample_weights(torch.rand(3), r=0.0)
    with pytest.raises(SpeechkitError, match="losses"):
        LossReweighter()(torch.rand(3, 2))


def _ddp_worker(rank: int, world: int, port: int, path: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    every = torch.tensor([0.2, 1.0, 3.0, 0.7, 2.2], dtype=torch.float64)
    local = (every[:2] if rank == 0 else every[2:]).clone().requires_grad_(True)  # unequal batch sizes
    out = LossReweighter("linupper", gather=True)(local)
    out.backward()
    torch.save({"out": out.detach(), "grad": local.grad}, f"{path}.{rank}")
    dist.destroy_process_group()


def test_ddp_gathers_the_global_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # fork: the children inherit this test module (spawn would re-import it by a package path)
    mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path / "r")), nprocs=2, join=True, start_method="fork")
    every = torch.tensor([0.2, 1.0, 3.0, 0.7, 2.2], dtype=torch.float64)
    w = sample_weights(every, "linupper")
    parts = [torch.load(tmp_path / f"r.{rank}") for rank in range(2)]
    # DDP averages the ranks' gradients: world * sum_local w_i l_i per rank -> the global weighted sum
    assert (parts[0]["out"] + parts[1]["out"]).item() / 2 == pytest.approx((w * every).sum().item())
    torch.testing.assert_close(torch.cat([parts[0]["grad"], parts[1]["grad"]]) / 2, w)
