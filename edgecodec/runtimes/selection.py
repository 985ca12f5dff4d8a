"""Automatic backend choice."""

from __future__ import annotations

from ..errors import BackendUnavailableError
from .base import Backend, backend_class

# fastest first, as measured on the reference machine (README, benchmarks/speed.py)
PREFERENCE = ("onnxruntime", "numpy")


def choose(bundle, threads: int | None = None) -> Backend:
    reasons = []
    for name in PREFERENCE:
        cls = backend_class(name)
        why = cls.probe()
        if why is None:
            try:
                return cls(bundle, threads=threads)
            except BackendUnavailableError as e:
                why = str(e)
        reasons.append(f"{name}: {why}")
    raise BackendUnavailableError("no backend is usable (" + "; ".join(reasons) + ")")
