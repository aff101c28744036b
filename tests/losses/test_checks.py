"""check_finite: raises with the step on NaN / inf, passes finite losses through."""

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.losses import check_finite


def test_check_finite():
    loss = torch.tensor(1.5, requires_grad=True)
    assert check_finite(loss, 3) is loss
    with pytest.raises(SpeechkitError, match="loss: became nan at step 17"):
        check_finite(torch.tensor(float("nan")), 17)
    with pytest.raises(SpeechkitError, match="z_loss: became inf at step 2"):
        check_finite(torch.tensor([1.0, float("inf")]), 2, name="z_loss")
