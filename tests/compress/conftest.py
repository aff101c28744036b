"""Shared calibration data for the compression tests: correlated, anisotropic layer inputs."""

import pytest
import torch


@pytest.fixture
def correlated_layer() -> tuple[torch.Tensor, torch.Tensor]:
    """A weight ``(32, 64)`` and inputs ``(512, 64)`` with strongly correlated, log-uniformly scaled features."""
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(16, 64, generator=g)  # 16 latent factors -> 64 correlated features
    scales = torch.exp(torch.empty(64).uniform_(0, 3, generator=g))
    x = (torch.randn(512, 16, generator=g) @ mixing + 0.1 * torch.randn(512, 64, generator=g)) * scales
    w = torch.randn(32, 64, generator=g)
    return w, x
