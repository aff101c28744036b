import pytest
import torch
from torch import nn

from speechkit.compress.quant.formats import fake_quant_int
from speechkit.compress.quant.sensitivity import (
    canonical_correlations,
    cca_score,
    prune_score,
    qbert_omega,
    qbert_sensitivity,
    taylor_score,
)
from speechkit.errors import SpeechkitError


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))


def test_qbert_omega_is_abs_mean_plus_std() -> None:
    eig = torch.tensor([[1.0, 3.0], [-4.0, -4.0]])
    assert qbert_omega(eig).tolist() == [3.0, 4.0]


def test_qbert_ranks_the_layer_with_scaled_loss_higher() -> None:
    torch.manual_seed(0)
    model = nn.ModuleDict({"a": nn.Linear(6, 3), "b": nn.Linear(6, 3)})
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))

    def loss_fn(m: nn.Module, batch: torch.Tensor) -> torch.Tensor:  # branch b's loss is scaled by 10
        return torch.tanh(m["a"](batch)).pow(2).mean() + 10 * torch.tanh(m["b"](batch)).pow(2).mean()

    omega = qbert_sensitivity(model, loss_fn, [x, x * 0.5], units=["a", "b"], iters=30)
    assert omega.shape == (2,) and omega[1] > 3 * omega[0]


def test_cca_score_zero_for_identical_or_linearly_related_outputs() -> None:
    a = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    assert cca_score(a, a) == pytest.approx(0.0, abs=1e-9)
    mixed = a @ torch.randn(5, 5, generator=torch.Generator().manual_seed(2)) + 3
    assert cca_score(a, mixed) == pytest.approx(0.0, abs=1e-9)
    noisy = fake_quant_int(a, 2)
    assert 0 < cca_score(a, noisy) < 1
    assert torch.all(canonical_correlations(a, torch.randn(200, 5)) < 0.5)


def test_prune_and_taylor_scores() -> None:
    model = _mlp()
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(3))
    target = model(x).detach()
    with torch.no_grad():
        model[4].weight[:, :4] = 0  # inputs 0..3 of the last layer do not matter
    loss_fn = lambda m: (m(x) - target).pow(2).mean()  # noqa: E731
    scores = prune_score(model, loss_fn, ["*"], sparsity=0.5)
    assert set(scores) == {"0", "2", "4"} and all(v >= -1e-12 for v in scores.values())
    with torch.no_grad():
        model[4].weight.zero_()  # layer 4's input then has zero gradient
    taylor = taylor_score(model, lambda m: m(x).pow(2).sum() + 1.0, ["2", "4"])
    assert taylor["4"] == 0.0 and taylor["2"] == 0.0  # nothing upstream of a zero layer matters either
    taylor = taylor_score(_mlp(), lambda m: m(x).pow(2).sum(), ["0", "4"])
    assert taylor["0"] > 0 and taylor["4"] > 0


def test_unmatched_module_name_is_an_error() -> None:
    with pytest.raises(SpeechkitError, match="nope"):
        prune_score(_mlp(), lambda m: torch.tensor(0.0), ["nope"])
    with pytest.raises(SpeechkitError, match="units"):
        qbert_sensitivity(_mlp(), lambda m, b: m(b).sum(), [torch.zeros(1, 6)], units=["nope"])
