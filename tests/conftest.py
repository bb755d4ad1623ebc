"""Shared fixtures. Real data in ``../shared`` is used when present and skipped cleanly otherwise."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    return Path(os.environ.get("SIAMTRACK_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # the suite runs on 2 cores, often next to a training job: keep torch from oversubscribing
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = _shared_root() / "data"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}")
    return root


@pytest.fixture(scope="session")
def shared_models() -> Path:
    root = _shared_root() / "models"
    if not root.is_dir():
        pytest.skip(f"shared models not found at {root}")
    return root
