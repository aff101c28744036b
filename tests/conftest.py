"""Fixtures for the whole suite."""

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def speechkit_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep converted weights in a temporary cache, never in the user's home."""
    old = os.environ.get("SPEECHKIT_CACHE")
    os.environ["SPEECHKIT_CACHE"] = str(tmp_path_factory.mktemp("speechkit-cache"))
    yield Path(os.environ["SPEECHKIT_CACHE"])
    if old is None:
        os.environ.pop("SPEECHKIT_CACHE", None)
    else:
        os.environ["SPEECHKIT_CACHE"] = old


@pytest.fixture
def one_thread():
    """One intra-op thread for small tensors: on a 2-core machine extra threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
