"""Shared fixtures: where the real data sets live, and small slices of them."""

import os
from pathlib import Path

import pytest
import torch

# The real data sets sit beside the checkout (../shared/data); SKMM_SHARED_DATA overrides.
SHARED_DATA = Path(
    os.environ.get(
        "SKMM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; missing data fails in CI and skips elsewhere."""
    if not SHARED_DATA.is_dir():
        message = f"real data sets not found at {SHARED_DATA} (set SKMM_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: a second torch thread only adds
    contention (threads spinning against each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
