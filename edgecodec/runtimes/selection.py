"""Automatic backend choice: measure the candidates on this host, keep the fastest correct one.

Selection is per role (analysis = encode, synthesis = decode) and per size class
(the padded image size rounded up to 256 px), because the fastest runtime for a
thumbnail is not always the fastest for a photo. A candidate must reproduce the
bundle's reference outputs before its time counts. Choices are cached per host,
bundle digest, runtime versions and thread count in ``$EDGECODEC_CACHE`` (default
``~/.cache/edgecodec/backends.json``); a cached choice that no longer loads or
no longer passes the check is measured again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, EdgecodecError
from . import base
from .base import Backend, backend_class

ROLES = ("analysis", "synthesis")
RUNTIME_DISTS = ("numpy", "onnxruntime", "openvino", "ai-edge-litert", "tflite-runtime")


@dataclass(frozen=True)
class Candidate:
    name: str
    device: str
    available: bool
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}:{self.device}"


def candidates(bundle, names: list[str] | None = None) -> list[Candidate]:
    """Every (runtime, device) pair on this host, available or not and why."""
    out = []
    for name in names or list(base.REGISTRY):
        cls = backend_class(name)
        why = cls.probe()
        if why:
            out.append(Candidate(name, "-", False, why))
            continue
        if cls.target and cls.target not in bundle.manifest.get("artifacts", {}):
            out.append(Candidate(name, "-", False, f"bundle has no {cls.target} artifact (edgecodec export --target {cls.target})"))
            continue
        try:
            devices = cls.devices()
        except Exception as e:  # a runtime that cannot even list devices is unavailable, not fatal
            out.append(Candidate(name, "-", False, f"cannot list devices: {e}"))
            continue
        out.extend(Candidate(name, d, True) for d in devices)
    return out


def size_class(h: int, w: int) -> tuple[int, int]:
    return (-(-h // 256) * 256, -(-w // 256) * 256)


def _host_key(bundle, threads: int | None) -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    versions = {}
    for dist in RUNTIME_DISTS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    ident = [platform.node(), platform.machine(), cpu, os.cpu_count(), bundle.digest, versions, threads]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def cache_path() -> Path:
    env = os.environ.get("EDGECODEC_CACHE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgecodec" / "backends.json"


def _load_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home must not stop decoding


def reference(bundle) -> dict[str, np.ndarray]:
    """Small reference inputs/outputs: the bundle's ``reference.npz``, else made with the numpy backend."""
    p = bundle.path / "reference.npz"
    if p.is_file():
        with np.load(p) as a:
            return dict(a)
    from .numpy_backend import NumpyBackend

    return make_reference(bundle, NumpyBackend(bundle))


def make_reference(bundle, backend: Backend) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    x = np.clip(np.stack([0.5 + 0.4 * np.sin(6 * xx), 0.5 + 0.3 * np.cos(5 * yy), 0.3 + 0.4 * xx * yy]), 0, 1)
    x = (x + rng.normal(0, 0.02, x.shape)).clip(0, 1).astype(np.float32)[None]
    q = (bundle.levels + 1) // 2
    gain, inv_gain = bundle.gains(q)
    y, z = backend.analysis(x, gain)
    y_hat = np.clip(np.rint(y), -127, 127).astype(np.float32)
    return {"x": x, "gain": gain, "y": y, "z": z, "y_hat": y_hat, "inv_gain": inv_gain, "x_hat": backend.synthesis(y_hat, inv_gain)}


def check(backend: Backend, role: str, ref: dict[str, np.ndarray]) -> str | None:
    """None when the backend reproduces the reference for ``role``, else what is wrong."""
    if role == "analysis":
        y, z = backend.analysis(ref["x"], ref["gain"])
        for name, got in (("y", y), ("z", z)):
            want = ref[name]
            if got.shape != want.shape:
                return f"{name} shape {got.shape} != {want.shape}"
            err = float(np.sqrt(np.mean((got - want) ** 2)))
            if not err <= 0.1 * float(np.sqrt(np.mean(want**2))) + 0.05:
                return f"{name} differs from the reference (rms error {err:.3g})"
        return None
    got = backend.synthesis(ref["y_hat"], ref["inv_gain"])
    want = ref["x_hat"]
    if got.shape != want.shape:
        return f"x_hat shape {got.shape} != {want.shape}"
    mse = float(np.mean((np.clip(got, 0, 1) - np.clip(want, 0, 1)) ** 2)) * 255**2
    if not mse <= 255**2 / 10 ** (35 / 10):  # >= 35 dB PSNR against the reference
        return f"output differs from the reference ({10 * np.log10(255**2 / max(mse, 1e-12)):.1f} dB)"
    return None


def _inputs(bundle, role: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    h, w = shape
    q = (bundle.levels + 1) // 2
    gain, inv_gain = bundle.gains(q)
    if role == "analysis":
        return rng.random((1, 3, h, w), dtype=np.float32), gain
    y = np.clip(np.rint(rng.laplace(0, 1.0, (1, bundle.latent.y_channels, h // 16, w // 16))), -127, 127)
    return y.astype(np.float32), inv_gain


def _run(backend: Backend, role: str, a: np.ndarray, b: np.ndarray):
    return backend.analysis(a, b) if role == "analysis" else backend.synthesis(a, b)


class AutoBackend(Backend):
    """Routes each call to the fastest checked backend for its role and size class."""

    name = "auto"

    def __init__(self, bundle, threads: int | None = None, names: list[str] | None = None, repeat: int = 3, cache: Path | None = None):
        super().__init__(bundle, "auto", threads)
        self.names = names
        self.repeat = repeat
        self.cache_file = cache or cache_path()
        self.key = _host_key(bundle, threads)
        self._open: dict[str, Backend | None] = {}
        self._choice: dict[tuple[str, tuple[int, int]], Backend] = {}
        self._ref: dict | None = None
        self.report: list[dict] = []  # what the last measurement saw

    def _backend(self, cand: Candidate) -> Backend | None:
        if cand.label not in self._open:
            try:
                self._open[cand.label] = backend_class(cand.name)(self.bundle, device=cand.device, threads=self.threads)
            except EdgecodecError:
                self._open[cand.label] = None
        return self._open[cand.label]

    def _checked(self, be: Backend, role: str) -> str | None:
        if self._ref is None:
            self._ref = reference(self.bundle)
        try:
            return check(be, role, self._ref)
        except Exception as e:
            return f"failed: {type(e).__name__}: {e}"

    def _measure(self, role: str, sc: tuple[int, int]) -> Backend:
        a, b = _inputs(self.bundle, role, sc)
        best, best_t = None, float("inf")
        self.report = []
        for cand in candidates(self.bundle, self.names):
            row = {"backend": cand.name, "device": cand.device, "role": role, "size": list(sc)}
            self.report.append(row)
            if not cand.available:
                row["status"] = "unavailable: " + cand.reason
                continue
            be = self._backend(cand)
            if be is None:
                row["status"] = "load error"
                continue
            why = self._checked(be, role)
            if why:
                row["status"] = "mismatch: " + why
                continue
            try:
                times = []
                for i in range(self.repeat + 1):
                    t = time.perf_counter()
                    _run(be, role, a, b)
                    dt = time.perf_counter() - t
                    if i:
                        times.append(dt)
                    if dt > 3 * best_t:  # clearly slower than the best so far: stop timing it
                        times.append(dt)
                        break
            except Exception as e:
                row["status"] = f"failed: {type(e).__name__}: {e}"
                continue
            t_med = float(np.median(times))
            row.update(status="ok", ms=round(1e3 * t_med, 2))
            if t_med < best_t:
                best, best_t = be, t_med
        if best is None:
            raise BackendUnavailableError(
                "no backend passed the check: " + "; ".join(f"{r['backend']}: {r['status']}" for r in self.report)
            )
        return best

    def select(self, role: str, shape: tuple[int, int]) -> Backend:
        sc = size_class(*shape)
        key = (role, sc)
        if key in self._choice:
            return self._choice[key]
        data = _load_cache(self.cache_file)
        entry = data.get(self.key, {}).get(role, {}).get(f"{sc[0]}x{sc[1]}")
        chosen = None
        if entry:
            cand = Candidate(entry[0], entry[1], True)
            be = self._backend(cand) if entry[0] in (self.names or base.REGISTRY) else None
            if be is not None and self._checked(be, role) is None:
                chosen = be
        if chosen is None:
            chosen = self._measure(role, sc)
            data = _load_cache(self.cache_file)
            data.setdefault(self.key, {}).setdefault(role, {})[f"{sc[0]}x{sc[1]}"] = [chosen.name, chosen.device]
            _save_cache(self.cache_file, data)
        self._choice[key] = chosen
        return chosen

    def analysis(self, x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.select("analysis", x.shape[2:]).analysis(x, gain)

    def synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        return self.select("synthesis", (16 * y_hat.shape[2], 16 * y_hat.shape[3])).synthesis(y_hat, inv_gain)

    def describe(self) -> dict:
        return {
            "backend": "auto",
            "chosen": {f"{r}@{s[0]}x{s[1]}": f"{b.name}:{b.device}" for (r, s), b in self._choice.items()},
        }

    def chosen_label(self) -> str:
        labels = sorted({f"{b.name}:{b.device}" for b in self._choice.values()})
        return "auto(" + ", ".join(labels) + ")" if labels else "auto"


def choose(bundle, threads: int | None = None) -> Backend:
    return AutoBackend(bundle, threads=threads)
