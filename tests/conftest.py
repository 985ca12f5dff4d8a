"""Shared fixtures: the tiny test model, the shipped bundle, and the real-photo folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from tiny_model import GOLDEN  # noqa: E402


def shared_data() -> Path | None:
    """``$EDGECODEC_DATA`` or ``../shared/data`` beside the checkout; None when absent."""
    env = os.environ.get("EDGECODEC_DATA")
    p = Path(env) if env else TESTS.parents[1] / "shared" / "data"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def tiny_bundle():
    from edgecodec.bundle import Bundle

    return Bundle(GOLDEN / "tiny_bundle")


@pytest.fixture(scope="session")
def tiny_backend(tiny_bundle):
    from edgecodec.runtimes.numpy_backend import NumpyBackend

    return NumpyBackend(tiny_bundle)


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    d = shared_data()
    if d is None or not (d / "kodak").is_dir():
        pytest.skip("real photos not available (set EDGECODEC_DATA to the shared data folder)")
    return d / "kodak"
