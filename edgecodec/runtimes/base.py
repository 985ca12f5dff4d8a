"""The ``Backend`` seam: runtimes run only the analysis and synthesis transforms.

Numpy in, numpy out, NCHW float32. Backends never see the entropy model, so
they cannot change what a bitstream means (see docs/bitstream.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..errors import BackendUnavailableError, BundleError, InputError


class Backend(ABC):
    name: str = ""
    extra: str = ""  # the pip extra that installs this runtime

    target: str | None = None  # the bundle artifact it runs ("onnx", "tflite", "openvino"); None: transforms.npz
    memory_per_pixel: dict[str, int] | None = None  # peak working bytes per window pixel per role (``tiling``)
    tile_workers: int = 1  # windows run at once: more only where the runtime does not use the cores itself
    fixed_windows: bool = False  # static-shape devices: always the fixed window shapes, never one per image size
    runtime_module: str | None = None  # import name of the runtime; its absence makes the backend unavailable

    def __init__(self, bundle, device: str | None = None, threads: int | None = None):
        why = self.probe()
        if why:
            raise BackendUnavailableError(why)
        self.bundle = bundle
        self.device = device or "CPU"
        self.threads = threads

    @classmethod
    def probe(cls) -> str | None:
        """None when the runtime can be imported, else why not (one line, naming the extra to install)."""
        if cls.runtime_module and importlib.util.find_spec(cls.runtime_module) is None:
            return f"{cls.runtime_module} is not installed (pip install 'edgecodec[{cls.extra}]')"
        return None

    @classmethod
    def devices(cls) -> list[str]:
        """Devices this runtime can use on this host (only called when ``probe()`` is None)."""
        return ["CPU"]

    @abstractmethod
    def analysis(self, x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (1, 3, H, W) in [0, 1] and gain (1, M, 1, 1) -> (y, z), both float32."""

    @abstractmethod
    def synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        """Integer-valued latents (1, M, h, w) and inverse gain -> image (1, 3, 16h, 16w)."""

    def fast_synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        """The same as ``synthesis`` with the bundle's fast synthesis (``Bundle.decoders``)."""
        raise BundleError(f"the {self.name} backend has no fast synthesis")

    def decoder(self, name: str):
        """The synthesis callable of decoder ``name`` ('full' or 'fast')."""
        if name not in DECODERS:
            raise InputError(f"unknown decoder {name!r}; choose one of: {', '.join(DECODERS)}, auto")
        if name == "fast" and "fast" not in self.bundle.decoders:
            raise BundleError(f"bundle {self.bundle.path} has no fast decoder (python -m edgecodec.export.fast_target)")
        return self.synthesis if name == "full" else self.fast_synthesis

    def describe(self) -> dict:
        return {"backend": self.name, "device": self.device, "threads": self.threads}

    def last_used(self, role: str) -> Backend:
        """The backend that ran ``role`` last (itself; ``AutoBackend``: the one it routed to)."""
        return self


DECODERS = {"full": "synthesis", "fast": "fast_synthesis"}  # decoder name -> transform role


@dataclass(frozen=True)
class BackendSpec:
    name: str
    device: str | None

    @classmethod
    def parse(cls, text: str) -> BackendSpec:
        name, _, device = text.partition(":")
        name = name.strip().lower()
        if name not in REGISTRY and name != "auto":
            raise InputError(f"unknown backend {name!r}; choose one of: auto, {', '.join(REGISTRY)}")
        return cls(name, device.strip() or None)


# name -> (module, class); imported lazily so the core never imports a runtime
REGISTRY: dict[str, tuple[str, str] | type] = {
    "onnxruntime": ("edgecodec.runtimes.onnxruntime_backend", "OnnxRuntimeBackend"),
    "numpy": ("edgecodec.runtimes.numpy_backend", "NumpyBackend"),
    "openvino": ("edgecodec.runtimes.openvino_backend", "OpenVinoBackend"),
    "tflite": ("edgecodec.runtimes.tflite_backend", "TfliteBackend"),
}


def backend_class(name: str) -> type[Backend]:
    if name not in REGISTRY:
        raise InputError(f"unknown backend {name!r}; choose one of: {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    if isinstance(entry, type):  # a class registered directly (plugins, tests)
        return entry
    mod, cls = entry
    return getattr(importlib.import_module(mod), cls)


def cores() -> int:
    """The CPUs this process may run on (its affinity, where the OS has one): what worker processes
    times runtime threads should add up to."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def available_class(spec: str | BackendSpec) -> tuple[BackendSpec, type[Backend] | None]:
    """The spec that ``open_backend`` would open (``$EDGECODEC_BACKEND`` applied to 'auto') and its
    class, None for 'auto'; BackendUnavailableError when that runtime is not installed here. Nothing
    is loaded: a driver can check a name for its workers without paying for a model."""
    if isinstance(spec, str):
        spec = BackendSpec.parse(spec)
    if spec.name == "auto" and os.environ.get("EDGECODEC_BACKEND", "auto") != "auto":
        spec = BackendSpec.parse(os.environ["EDGECODEC_BACKEND"])
    if spec.name == "auto":
        return spec, None
    cls = backend_class(spec.name)
    why = cls.probe()
    if why:
        raise BackendUnavailableError(f"backend {spec.name} is unavailable: {why}")
    return spec, cls


def open_backend(spec: str | BackendSpec, bundle, threads: int | None = None, announce=None) -> Backend:
    """Instantiate a backend by name; 'auto' (or ``$EDGECODEC_BACKEND`` when set) measures and picks.

    ``announce`` (a callable taking one line) is told when 'auto' has to measure on this host.
    """
    spec, cls = available_class(spec)
    if cls is None:
        from .selection import choose

        return choose(bundle, threads=threads, announce=announce)
    return cls(bundle, device=spec.device, threads=threads)
