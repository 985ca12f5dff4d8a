"""Runtime backends for the transforms (ONNX Runtime, numpy reference)."""

from .base import REGISTRY, Backend, BackendSpec, open_backend

__all__ = ["REGISTRY", "Backend", "BackendSpec", "open_backend"]
