"""Automatic backend choice: measure the candidates on this host, keep the fastest correct one.

Selection is per role (analysis = encode, synthesis = decode) and per window shape (``tiling``:
a few fixed shapes, whatever the image size; portrait and landscape share one), because the
fastest runtime for a thumbnail is not always the fastest for a photo.

A candidate is admitted only when it reproduces the bundle's reference (``reference.npz``, made
by the numpy backend at the lowest and the highest quality, on a real photo crop) on this host:
its analysis latents round to the reference integers on at least ``MIN_LATENT_AGREEMENT`` of the
coded elements, and its synthesis is at least ``MIN_SYNTHESIS_PSNR`` dB from the reference's. A
runtime whose int8 kernels differ on this CPU is therefore rejected here, never silently used.

Measurements are cached per candidate (runtime version included) in ``$EDGECODEC_CACHE``
(default ``~/.cache/edgecodec/backends.json``), keyed by host, CPU, bundle digest and thread
count; installing another runtime measures only that one. The chosen backend is re-checked once
per process before use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
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

log = logging.getLogger("edgecodec")

ROLES = ("analysis", "synthesis", "fast_synthesis")  # encode, decode, decode with the fast synthesis


def roles(bundle) -> tuple[str, ...]:
    """The roles a bundle has transforms for (the fast synthesis is optional)."""
    return ROLES if "fast" in bundle.decoders else ROLES[:2]


MIN_LATENT_AGREEMENT = 0.995  # coded latents that must round to the reference integers, each quality
# z only steers the tables: its int8 requantization rounds a step apart between runtimes on 3-6% of
# elements, which moved the reference stream's bits by -2.5%..+0.1% here; a broken one costs far more
MAX_HYPER_RATE = 1.03  # bits of the reference stream with the candidate's z / with the reference z
MIN_SYNTHESIS_PSNR = 45.0  # dB against the reference synthesis (runtimes agree at >= 56 dB where correct)
CACHE_VERSION = 2
# the distributions whose version keys a backend's measurements (a new version is measured again)
RUNTIME_DISTS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime-qnn"),
    "openvino": ("openvino",),
    "tflite": ("ai-edge-litert", "tflite-runtime"),
    "numpy": ("numpy",),
}


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
    """Window sizes that share a measurement: sides rounded up to 256 px, portrait = landscape."""
    a, b = -(-max(h, w) // 256) * 256, -(-min(h, w) // 256) * 256
    return (a, b)


def _cpu_identity() -> tuple[str, str]:
    """CPU model and a digest of its feature flags: int8 kernels differ between CPUs of one model name."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                key = ln.split(":", 1)[0].strip().lower()
                if key in ("model name", "cpu part", "hardware") and not model:
                    model = ln.split(":", 1)[1].strip()
                elif key in ("flags", "features") and not flags:
                    flags = hashlib.sha256(" ".join(sorted(ln.split(":", 1)[1].split())).encode()).hexdigest()[:12]
    except OSError:
        pass
    return model or platform.processor(), flags


def _host_key(bundle, threads: int | None) -> str:
    # the fast synthesis is outside the model digest: its own checksum keys its measurements
    fast = bundle.fast_info.get("sha256", {}).get("weights", "")
    ident = [CACHE_VERSION, platform.node(), platform.machine(), *_cpu_identity(), os.cpu_count(), bundle.digest, threads]
    ident += [fast] if fast else []
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def _version(name: str) -> str:
    for dist in RUNTIME_DISTS.get(name, ()):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return ""


def candidate_key(cand: Candidate) -> str:
    return f"{cand.label}@{_version(cand.name)}"


def cache_path() -> Path:
    env = os.environ.get("EDGECODEC_CACHE")
    if env:
        return Path(env)
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "edgecodec" / "backends.json"


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home must not stop decoding


@contextlib.contextmanager
def _measuring(path: Path):
    """Hold an exclusive lock beside the cache while choosing: processes that start together (batch
    workers, parallel commands) then measure one at a time, on an otherwise idle host, and the later
    ones find the earlier one's measurements. No lock where the folder is read-only or has no flock."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path.with_name(path.name + ".lock"), "a")
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
    finally:
        f.close()  # closing releases the lock


def _reference_qualities(ref: dict) -> list[int]:
    return sorted(int(k[1:].split(".")[0]) for k in ref if k.startswith("q") and k.endswith(".y"))


def reference(bundle) -> dict[str, np.ndarray]:
    """The selection reference: the bundle's ``reference.npz``, else made here with the numpy backend."""
    cached = getattr(bundle, "_selection_reference", None)
    if cached is not None:
        return cached
    ref = None
    p = bundle.path / "reference.npz"
    if p.is_file():
        with np.load(p) as a:
            ref = dict(a)
        if not _reference_qualities(ref):
            ref = None  # an older bundle's single-quality reference: make the current one
    if ref is None:
        from .numpy_backend import NumpyBackend

        ref = make_reference(bundle, NumpyBackend(bundle))
    bundle._selection_reference = ref
    return ref


def _synthetic_photo(side: int = 256) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / side
    x = np.stack([0.5 + 0.4 * np.sin(24 * xx + 3 * yy), 0.5 + 0.3 * np.cos(20 * yy), 0.3 + 0.4 * xx * yy], axis=2)
    x = (x + rng.normal(0, 0.03, x.shape)).clip(0, 1)
    return np.rint(255 * x).astype(np.uint8)


def make_reference(bundle, backend: Backend, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Reference outputs of ``backend`` (the numpy backend) at the lowest and highest quality.

    ``image`` (HxWx3 uint8, a real photo crop at export) defaults to a synthetic texture. Stores the
    latents, which of them the stream codes (the skip rule's mask), the coded integers and their
    synthesis.
    """
    from ..codec import model_input

    x = model_input(_synthetic_photo() if image is None else image, bundle.downsample)
    out = {"x": x}
    for q in sorted({1, bundle.levels}):
        gain, inv_gain = bundle.gains(q)
        y, z = backend.analysis(x, gain)
        parse, _ = bundle.entropy_model.encode(y[0], np.rint(z[0]).astype(np.int64))
        y_hat = parse.y[None].astype(np.float32)
        out.update({f"q{q}.gain": gain, f"q{q}.inv_gain": inv_gain, f"q{q}.y": y, f"q{q}.z": z, f"q{q}.coded": parse.coded[None],
                    f"q{q}.y_hat": y_hat, f"q{q}.x_hat": backend.synthesis(y_hat, inv_gain)})  # fmt: skip
        if "fast" in bundle.decoders:
            out[f"q{q}.x_hat_fast"] = backend.fast_synthesis(y_hat, inv_gain)
    return out


def _rate(bundle, z: np.ndarray, y: np.ndarray) -> float:
    """Model bits of the rounded latents ``y`` (1, M, h, w) and of ``z`` under the tables ``z`` chooses."""
    em = bundle.entropy_model
    zi = np.clip(np.rint(z[0]), -127, 127).astype(np.int64)
    table, base, coded = em.y_params(zi, y.shape[-2:])
    yi = np.clip(np.rint(y[0]), -127, 127).astype(np.int64)
    zt = em._z_table(zi.shape)
    return em.z_tables.model_bits(zi.ravel(), zt.ravel()) + em.y_tables.model_bits((yi - base)[coded], table[coded])


def check(backend: Backend, role: str, ref: dict[str, np.ndarray]) -> str | None:
    """None when the backend reproduces the reference for ``role`` at every stored quality, else what is wrong."""
    for q in _reference_qualities(ref):
        r = {k.split(".", 1)[1]: v for k, v in ref.items() if k.startswith(f"q{q}.")}
        if role == "analysis":
            y, z = backend.analysis(ref["x"], r["gain"])
            for name, got in (("y", y), ("z", z)):
                if got.shape != r[name].shape:
                    return f"{name} shape {got.shape} != {r[name].shape}"
            coded = r["coded"].astype(bool)
            agree = float(np.mean(np.rint(y)[coded] == np.rint(r["y"])[coded])) if coded.any() else 1.0
            if not agree >= MIN_LATENT_AGREEMENT:
                return (f"quality {q}: latents round to the reference on {100 * agree:.2f}% of coded elements "
                        f"(needs {100 * MIN_LATENT_AGREEMENT:.1f}%)")  # fmt: skip
            if f"q{q}.rate" not in ref:  # the reference stream's own bits, once per process
                ref[f"q{q}.rate"] = np.asarray(_rate(backend.bundle, r["z"], r["y"]))
            ratio = _rate(backend.bundle, z, r["y"]) / max(float(ref[f"q{q}.rate"]), 1.0)
            if not ratio <= MAX_HYPER_RATE:
                extra = f"{100 * (ratio - 1):.1f}% more bits (at most {100 * (MAX_HYPER_RATE - 1):.0f}%)"
                return f"quality {q}: its hyper-latents cost the reference stream {extra}"
        else:
            if role == "fast_synthesis" and "x_hat_fast" not in r:  # a reference made before the bundle had it
                from .numpy_backend import NumpyBackend

                r["x_hat_fast"] = ref[f"q{q}.x_hat_fast"] = NumpyBackend(backend.bundle).fast_synthesis(r["y_hat"], r["inv_gain"])
            got = _run(backend, role, r["y_hat"], r["inv_gain"])
            want = r["x_hat_fast" if role == "fast_synthesis" else "x_hat"]
            if got.shape != want.shape:
                return f"x_hat shape {got.shape} != {want.shape}"
            mse = float(np.mean((np.clip(got, 0, 1) - np.clip(want, 0, 1)) ** 2)) * 255**2
            db = 10 * np.log10(255**2 / max(mse, 1e-12))
            if not db >= MIN_SYNTHESIS_PSNR:
                return f"quality {q}: synthesis is {db:.1f} dB from the reference (needs {MIN_SYNTHESIS_PSNR:.0f} dB)"
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
    if role == "analysis":
        return backend.analysis(a, b)
    return backend.fast_synthesis(a, b) if role == "fast_synthesis" else backend.synthesis(a, b)


class AutoBackend(Backend):
    """Routes each call to the fastest checked backend for its role and window shape."""

    name = "auto"

    def __init__(self, bundle, threads: int | None = None, names: list[str] | None = None, repeat: int = 2, cache: Path | None = None,
                 announce=None):  # fmt: skip
        super().__init__(bundle, "auto", threads)
        self.names = names
        self.repeat = repeat
        self.cache_file = cache or cache_path()
        self.key = _host_key(bundle, threads)
        self.announce = announce  # called once, with one line, when this process has to measure
        self._announced = False
        self._cands: list[Candidate] | None = None
        self._open: dict[str, Backend | None] = {}
        self._load_errors: dict[str, str] = {}
        self._checked_here: dict[tuple[str, str], str | None] = {}
        self._choice: dict[tuple[str, tuple[int, int]], Backend] = {}
        self._last: dict[str, Backend] = {}  # role -> the backend its last call ran on
        self.report: list[dict] = []  # every candidate's status for the last selection
        self.reports: dict[str, list[dict]] = {}  # the same, per role

    def candidates(self) -> list[Candidate]:
        """This host's candidates, listed once per set of installed runtime versions and cached: listing
        devices imports every runtime (~0.4 s), which a cached start must not pay."""
        if self._cands is None:
            names = self.names or list(base.REGISTRY)
            artifacts = sorted(self.bundle.manifest.get("artifacts", {}))
            listing = json.dumps([[n, _version(n)] for n in names] + [artifacts])
            data = _load_cache(self.cache_file)
            known = data.get(self.key, {}).get("listings", {}).get(listing)
            if known is None:
                found = candidates(self.bundle, self.names)
                data.setdefault(self.key, {}).setdefault("listings", {})[listing] = [
                    [c.name, c.device, c.available, c.reason] for c in found
                ]
                _save_cache(self.cache_file, data)
            else:
                found = [Candidate(n, d, bool(a), r) for n, d, a, r in known]
            # the numpy reference last: it is the fallback, and being timed last lets the early stop cut it short
            self._cands = sorted(found, key=lambda c: c.name == "numpy")
        return self._cands

    @property
    def memory_per_pixel(self) -> dict[str, int]:
        """The most any available candidate needs, so a window fits whichever is chosen."""
        from ..tiling import bytes_per_pixel

        classes = {c.name: backend_class(c.name) for c in self.candidates() if c.available}
        return {role: max([bytes_per_pixel(cls, role) for cls in classes.values()] or [bytes_per_pixel(None, role)]) for role in ROLES[:2]}

    def _backend(self, cand: Candidate) -> Backend | None:
        if cand.label not in self._open:
            try:
                self._open[cand.label] = backend_class(cand.name)(self.bundle, device=cand.device, threads=self.threads)
            except EdgecodecError as e:
                self._open[cand.label] = None
                self._load_errors[cand.label] = str(e)
        return self._open[cand.label]

    def _check(self, be: Backend, role: str) -> str | None:
        try:
            return check(be, role, reference(self.bundle))
        except Exception as e:
            return f"failed: {type(e).__name__}: {e}"

    def _say(self, role: str) -> None:
        if not self._announced:
            self._announced = True
            what = "encoding" if role == "analysis" else "decoding" if role == "synthesis" else "fast decoding"
            msg = f"choosing a backend for {what} on this host (measured once, cached in {self.cache_file})"
            log.info(msg)
            if self.announce:
                self.announce(msg)

    def _entries(self, data: dict) -> dict:
        return data.setdefault(self.key, {}).setdefault("candidates", {})

    def _measure(self, cand: Candidate, role: str, entry: dict, shape: tuple[int, int], skey: str, best_t: float,
                 best_probe: float) -> None:  # fmt: skip
        """Fill ``entry`` (this candidate's cache for ``role``): its check, then its time at ``shape``."""
        self._say(role)
        be = self._backend(cand)
        if be is None:
            entry["check"] = "load error: " + self._load_errors.get(cand.label, "")
            return
        if "check" not in entry:
            # one run on the reference first: a candidate several times slower than a checked one there
            # (the numpy reference, typically) is neither checked nor timed at the photo's size
            ref = reference(self.bundle)
            q = _reference_qualities(ref)[0]
            a = ref["x"] if role == "analysis" else ref[f"q{q}.y_hat"]
            b = ref[f"q{q}.gain" if role == "analysis" else f"q{q}.inv_gain"]
            try:
                _run(be, role, a[..., : a.shape[2] // 4, : a.shape[3] // 4], b)  # loads/compiles: not part of the probe
                t = time.perf_counter()
                _run(be, role, a, b)
            except Exception as e:
                entry["check"] = f"failed: {type(e).__name__}: {e}"
                return
            entry["probe_ms"] = round(1e3 * (time.perf_counter() - t), 3)
            if entry["probe_ms"] > 3 * best_probe:
                entry["check"] = "slower"
                return
            entry["check"] = self._check(be, role) or "ok"
            self._checked_here[(cand.label, role)] = None if entry["check"] == "ok" else entry["check"]
        if entry["check"] != "ok":
            return
        a, b = _inputs(self.bundle, role, shape)
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
            entry["check"] = f"failed: {type(e).__name__}: {e}"
            return
        entry.setdefault("ms", {})[skey] = round(1e3 * float(np.min(times)), 3)  # the least disturbed run

    def last_used(self, role: str) -> Backend:
        return self._last.get(role, self)

    def select(self, role: str, shape: tuple[int, int]) -> Backend:
        be = self._select(role, shape)
        self._last[role] = be
        return be

    def _select(self, role: str, shape: tuple[int, int]) -> Backend:
        sc = size_class(*shape)
        if (role, sc) in self._choice:
            return self._choice[(role, sc)]
        with _measuring(self.cache_file):
            return self._select_locked(role, shape, sc)

    def _select_locked(self, role: str, shape: tuple[int, int], sc: tuple[int, int]) -> Backend:
        skey = f"{sc[0]}x{sc[1]}"
        while True:
            data = _load_cache(self.cache_file)
            entries = self._entries(data)
            keys = {c.label: candidate_key(c) for c in self.candidates() if c.available}
            changed = False
            for cand in self.candidates():
                if not cand.available:
                    continue
                entry = entries.setdefault(keys[cand.label], {}).setdefault(role, {})
                if entry.get("check", "ok") == "ok" and skey not in entry.get("ms", {}) or "check" not in entry:
                    known = [e[role]["ms"][skey] / 1e3 for e in entries.values() if skey in e.get(role, {}).get("ms", {})]
                    probes = [
                        e[role]["probe_ms"] for e in entries.values() if e.get(role, {}).get("check") == "ok" and "probe_ms" in e[role]
                    ]
                    self._measure(cand, role, entry, shape, skey, min(known, default=float("inf")), min(probes, default=float("inf")))
                    changed = True
            ok = []
            for i, c in enumerate(self.candidates()):
                e = entries[keys[c.label]][role] if c.available else {}
                if e.get("check") == "ok" and skey in e.get("ms", {}):
                    ok.append((e["ms"][skey], i, c))
            self.report = self.reports[role] = self._report(entries, keys, role, skey)
            if changed:
                _save_cache(self.cache_file, data)
            slower = [e for e in entries.values() if e.get(role, {}).get("check") == "slower"]
            if not ok and slower:  # the faster ones all failed after all: measure the slower ones in full
                for e in slower:
                    e[role] = {}
                _save_cache(self.cache_file, data)
                continue
            if not ok:
                raise BackendUnavailableError(
                    "no backend passed the check: " + "; ".join(f"{r['backend']}: {r['status']}" for r in self.report)
                )
            cand = min(ok)[2]
            be = self._backend(cand)
            here = (cand.label, role)
            if here not in self._checked_here and be is not None:
                self._checked_here[here] = self._check(be, role)  # a cached "ok" is re-checked once per process
            if be is not None and self._checked_here.get(here) is None:
                self._choice[(role, sc)] = be
                return be
            # the cache was stale (another CPU under the same name, a changed runtime): record and choose again
            data = _load_cache(self.cache_file)
            self._entries(data).setdefault(keys[cand.label], {})[role] = {"check": self._checked_here.get(here) or "load error"}
            _save_cache(self.cache_file, data)

    def _report(self, entries: dict, keys: dict, role: str, skey: str) -> list[dict]:
        rows = []
        for cand in self.candidates():
            row = {"backend": cand.name, "device": cand.device, "role": role, "size": skey}
            if not cand.available:
                row["status"] = "unavailable: " + cand.reason
            else:
                e = entries.get(keys[cand.label], {}).get(role, {})
                status = e.get("check", "not measured")
                row["status"] = status if status != "ok" or skey not in e.get("ms", {}) else "ok"
                if status == "slower":
                    row["status"] = f"not timed: {e['probe_ms']:.0f} ms on the reference, over 3x the fastest checked one"
                if status.startswith("load error"):
                    row["status"] = "load error"
                    row["detail"] = status[len("load error: ") :]
                if skey in e.get("ms", {}):
                    row["ms"] = e["ms"][skey]
                if row["status"] != "ok" and not row["status"].startswith(("load error", "not measured", "failed", "not timed")):
                    row["status"] = "mismatch: " + status
            rows.append(row)
        return rows

    def survey(self) -> list[dict]:
        """Every candidate with its check for every role on this host (measured once, then cached)."""
        data = _load_cache(self.cache_file)
        entries = self._entries(data)
        rows, changed = [], False
        for cand in self.candidates():
            row = {"backend": cand.name, "device": cand.device, "available": cand.available, "reason": cand.reason}
            if cand.available:
                e = entries.setdefault(candidate_key(cand), {})
                for role in roles(self.bundle):
                    ent = e.setdefault(role, {})
                    if ent.get("check", "slower") == "slower":  # never checked, or cut short by selection's probe
                        be = self._backend(cand)
                        if be is None:
                            ent["check"] = "load error: " + self._load_errors.get(cand.label, "")
                        else:
                            ent["check"] = self._check(be, role) or "ok"
                        changed = True
                    row[role] = ent["check"]
                    row[role + "_ms"] = ent.get("ms", {})
            rows.append(row)
        if changed:
            _save_cache(self.cache_file, data)
        return rows

    def analysis(self, x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.select("analysis", x.shape[2:]).analysis(x, gain)

    def synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        return self.select("synthesis", (16 * y_hat.shape[2], 16 * y_hat.shape[3])).synthesis(y_hat, inv_gain)

    def fast_synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        return self.select("fast_synthesis", (16 * y_hat.shape[2], 16 * y_hat.shape[3])).fast_synthesis(y_hat, inv_gain)

    def measured_ms(self, role: str, shape: tuple[int, int]) -> float:
        """The chosen backend's measured time (ms) for ``role`` on a window of ``shape`` (its size
        class, scaled to the pixels of ``shape``): what ``codec.decode(decoder='auto')`` weighs."""
        be = self.select(role, shape)
        sc = size_class(*shape)
        entry = self._entries(_load_cache(self.cache_file)).get(candidate_key(Candidate(be.name, be.device, True)), {}).get(role, {})
        ms = entry.get("ms", {}).get(f"{sc[0]}x{sc[1]}")
        if ms is None:  # the cache was not writable: time it here
            a, b = _inputs(self.bundle, role, shape)
            t = time.perf_counter()
            _run(be, role, a, b)
            ms = 1e3 * (time.perf_counter() - t)
        return float(ms) * (shape[0] * shape[1]) / (sc[0] * sc[1])

    def describe(self) -> dict:
        return {
            "backend": "auto",
            "chosen": {f"{r}@{s[0]}x{s[1]}": f"{b.name}:{b.device}" for (r, s), b in self._choice.items()},
        }

    def chosen_label(self) -> str:
        labels = sorted({f"{b.name}:{b.device}" for b in self._choice.values()})
        return "auto(" + ", ".join(labels) + ")" if labels else "auto"


def estimate_ms(backend: Backend, role: str, shape: tuple[int, int]) -> float:
    """``backend``'s measured time (ms) for ``role`` on a window of ``shape``: the selection's own
    measurement (cached per host), made here for an explicitly chosen backend on first use."""
    if isinstance(backend, AutoBackend):
        return backend.measured_ms(role, shape)
    if backend.name not in base.REGISTRY:  # a backend object from elsewhere: time it once here
        a, b = _inputs(backend.bundle, role, shape)
        _run(backend, role, a, b)
        t = time.perf_counter()
        _run(backend, role, a, b)
        return 1e3 * (time.perf_counter() - t)
    timers = getattr(backend.bundle, "_estimators", None)
    if timers is None:
        timers = backend.bundle._estimators = {}
    key = (backend.name, backend.device, backend.threads)
    auto = timers.get(key)
    if auto is None:
        auto = timers[key] = AutoBackend(backend.bundle, threads=backend.threads, names=[backend.name])
        auto._cands = [c for c in auto.candidates() if c.device == backend.device] or auto.candidates()
    return auto.measured_ms(role, shape)


def choose(bundle, threads: int | None = None, announce=None) -> Backend:
    return AutoBackend(bundle, threads=threads, announce=announce)
