"""Where the benchmarks find the Kodak images: ``$EDGECODEC_DATA/kodak``, else ``../shared/data/kodak``
beside the checkout (the same rule as the test suite's ``tests/conftest.py``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def default_kodak() -> Path:
    env = os.environ.get("EDGECODEC_DATA")
    return Path(env) / "kodak" if env else REPO.parent / "shared" / "data" / "kodak"


def timed_runs(fn, repeat: int) -> list[float]:
    """Seconds of ``repeat`` calls of ``fn`` after one warm-up call (the benchmarks' one timing loop)."""
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts
