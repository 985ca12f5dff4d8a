"""Where the benchmarks find the Kodak images: ``$EDGECODEC_DATA/kodak``, else ``../shared/data/kodak``
beside the checkout (the same rule as the test suite's ``tests/conftest.py``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def default_kodak() -> Path:
    env = os.environ.get("EDGECODEC_DATA")
    return Path(env) / "kodak" if env else REPO.parent / "shared" / "data" / "kodak"
