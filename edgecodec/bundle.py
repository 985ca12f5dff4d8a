"""A model bundle: a folder with ``manifest.json``, the parse-deciding ``entropy.npz``,
the numpy-reference ``transforms.npz`` and one artifact set per export target.

The model digest identifies what a bitstream means: the sha256 of the
canonical JSON of ``manifest["model"]`` (configuration plus the sha256 of both
``.npz`` files). Runtime artifacts are derived from the same weights and do not
enter it, so re-exporting TFLite does not invalidate streams.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np

from .container import QUALITY_STEPS
from .entropy.cdf import CdfTables
from .entropy.intnet import IntNet
from .entropy.latents import EntropyModel, LatentConfig
from .errors import BundleError

MANIFEST = "manifest.json"
ENCODER_FILE = "encoder.npz"
FAST_FILE = "fast.npz"  # the fast synthesis for the numpy backend (``export.fast_target``)
BUNDLE_VERSION = 1


def quality_steps(quality: float, levels: int) -> int:
    """``quality`` (1..levels, a multiple of 1/16) in 1/16 steps; ValueError otherwise."""
    if isinstance(quality, bool) or not isinstance(quality, (int, float, np.integer, np.floating)):
        raise ValueError(f"quality must be a number, got {quality!r}")
    q16 = float(quality) * QUALITY_STEPS
    if not (q16 == round(q16) and QUALITY_STEPS <= q16 <= QUALITY_STEPS * levels):
        raise ValueError(f"quality must be 1..{levels} in steps of 1/{QUALITY_STEPS}, got {quality!r}")
    return int(round(q16))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_digest(model_section: dict) -> str:
    return hashlib.sha256(json.dumps(model_section, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def default_bundle_path() -> Path:
    return Path(__file__).resolve().parent / "data" / "bundle"


class Bundle:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_bundle_path()
        self._verified: dict[Path, str] = {}
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"no model bundle at {self.path} (missing {MANIFEST}); pass --model with an exported bundle folder")
        try:
            self.manifest = json.loads(mpath.read_text())
            model = self.manifest["model"]
            self.digest = model_digest(model)
            self.latent = LatentConfig(**model["latent"])
            self.levels = int(model["levels"])
            self.downsample = int(model.get("downsample", 64))
        except (ValueError, KeyError, TypeError) as e:
            raise BundleError(f"model bundle manifest at {mpath} is invalid ({e})") from None
        if self.manifest.get("bundle_version") != BUNDLE_VERSION:
            raise BundleError(f"bundle version {self.manifest.get('bundle_version')} is not supported (expected {BUNDLE_VERSION})")
        for key, name in (("entropy_sha256", "entropy.npz"), ("transforms_sha256", "transforms.npz")):
            f = self.path / name
            if not f.is_file():
                raise BundleError(f"model bundle {self.path} lacks {name}")
            if sha256_file(f) != model[key]:
                raise BundleError(f"{f} does not match its manifest checksum; re-export the bundle")

    @property
    def digest_bytes(self) -> bytes:
        return bytes.fromhex(self.digest)[:16]

    @cached_property
    def entropy_model(self) -> EntropyModel:
        with np.load(self.path / "entropy.npz") as a:
            arrays = dict(a)
        return EntropyModel(
            self.latent,
            IntNet.from_arrays(arrays, "hyper."),
            CdfTables.from_arrays(arrays, "y."),
            CdfTables.from_arrays(arrays, "z."),
        )

    @cached_property
    def transforms(self) -> dict[str, np.ndarray]:
        with np.load(self.path / "transforms.npz") as a:
            return dict(a)

    @cached_property
    def _gain_table(self) -> dict[str, np.ndarray]:
        """Only the gain vectors of ``transforms.npz``: a runtime backend needs nothing else of it,
        and loading every layer's weights costs a cold start ~0.1 s and ~10 MB."""
        if "transforms" in self.__dict__:
            return self.transforms
        with np.load(self.path / "transforms.npz") as a:
            return {k: a[k] for k in ("gain", "inv_gain")}

    def gains(self, quality: float) -> tuple[np.ndarray, np.ndarray]:
        """(gain, inverse gain) for quality 1..levels in steps of 1/16, each shaped (1, M, 1, 1) float32.

        A trained level returns its stored vectors. Between levels l and l+1 the vectors interpolate
        geometrically, ``g_l * (g_(l+1) / g_l) ** (k / 16)``, computed as four square roots and ``k``
        products in float64: IEEE-754 rounds each of those exactly, so every device gets the same bits
        (``exp``/``pow`` may differ in the last bit between math libraries)."""
        q16 = quality_steps(quality, self.levels)
        level, k = divmod(q16 - QUALITY_STEPS, QUALITY_STEPS)
        t = self._gain_table
        m = self.latent.y_channels
        out = []
        for name in ("gain", "inv_gain"):
            a = t[name][level]
            if k:
                a64, r = np.asarray(a, np.float64), np.asarray(t[name][level + 1], np.float64) / np.asarray(a, np.float64)
                for _ in range(4):
                    r = np.sqrt(r)
                for _ in range(k):
                    a64 = a64 * r
                a = a64
            out.append(np.asarray(a).reshape(1, m, 1, 1).astype(np.float32))
        return out[0], out[1]

    @cached_property
    def _rd_weights(self) -> np.ndarray | None:
        if "encoder" not in self.manifest.get("artifacts", {}):
            return None
        with np.load(self.artifact("encoder", "weights")) as a:
            w = np.asarray(a["rd_weight"], np.float64)
        if w.shape != (self.levels, self.latent.y_channels) or not np.isfinite(w).all() or (w < 0).any():
            raise BundleError(f"bundle {self.path} has invalid encoder weights (shape {w.shape})")
        return w

    def rd_weight(self, quality: float) -> np.ndarray | None:
        """Per-channel rate-distortion weights for the encoder's rounding at ``quality`` (None: the bundle
        has none, so the encoder rounds to nearest), linear between levels. Encoder-only: not part of
        the model digest."""
        w = self._rd_weights
        if w is None:
            return None
        level, k = divmod(quality_steps(quality, self.levels) - QUALITY_STEPS, QUALITY_STEPS)
        return w[level] if not k else w[level] + (w[level + 1] - w[level]) * (k / QUALITY_STEPS)

    @property
    def decoders(self) -> tuple[str, ...]:
        """The synthesis transforms this bundle ships: 'full', and 'fast' when it has the fast one."""
        return ("full", "fast") if "fast" in self.manifest.get("artifacts", {}) else ("full",)

    @property
    def fast_info(self) -> dict:
        """The fast synthesis' manifest entry (configuration, MAC count, provenance); {} without one."""
        return dict(self.manifest.get("artifacts", {}).get("fast", {}))

    @cached_property
    def fast_transforms(self) -> dict[str, np.ndarray]:
        """The fast synthesis' numpy layers (``f_s.*``, the ``transforms.npz`` layer format)."""
        with np.load(self.artifact("fast", "weights")) as a:
            return dict(a)

    def artifact(self, target: str, role: str) -> Path:
        """Path of a runtime artifact (``role``: 'analysis', 'synthesis' or 'fast_synthesis'), checksum-verified."""
        entry = self.manifest.get("artifacts", {}).get(target)
        if not entry or role not in entry.get("files", {}):
            raise BundleError(f"bundle {self.path} has no {target} {role} artifact; run `edgecodec export --target {target}`")
        rel = entry["files"][role]
        p = self.path / rel
        if not p.is_file():
            raise BundleError(f"bundle file {p} is missing")
        want = entry.get("sha256", {}).get(role)
        if want and self._verified.get(p) != want:
            if sha256_file(p) != want:
                raise BundleError(f"{p} does not match its manifest checksum; re-export the bundle")
            self._verified[p] = want
        return p


def half_if_exact(a):
    """Float arrays whose every value is a float16 go to disk as float16: half the bytes, same numbers.

    The shipped weights are fp16-rounded, so the float layers' weights are; readers cast back to float32.
    """
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.size >= 1024 and np.array_equal(a.astype(np.float16).astype(a.dtype), a):
        return a.astype(np.float16)
    return a


def write_bundle(path: Path, model_section: dict, entropy_arrays: dict, transform_arrays: dict, extra: dict | None = None) -> Path:
    """Write the core of a bundle (manifest + both .npz); artifacts are added by exporters."""
    path.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path / "entropy.npz", **entropy_arrays)
    np.savez_compressed(path / "transforms.npz", **{k: half_if_exact(v) for k, v in transform_arrays.items()})
    model = dict(model_section)
    model["entropy_sha256"] = sha256_file(path / "entropy.npz")
    model["transforms_sha256"] = sha256_file(path / "transforms.npz")
    manifest = {"format": "edgecodec-bundle", "bundle_version": BUNDLE_VERSION, "model": model, "artifacts": {}}
    manifest.update(extra or {})
    manifest["digest"] = model_digest(model)
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return path


def write_rd_weights(path: Path, weights: np.ndarray, strength: float) -> None:
    """Store per-level, per-channel rate-distortion weights (``models/rdo.py``) as the ``encoder``
    artifact. Encoder-only, so outside the model digest: streams do not depend on how the encoder
    chose its integers."""
    np.savez_compressed(Path(path) / ENCODER_FILE, rd_weight=np.asarray(weights, np.float32))
    add_artifact(Path(path), "encoder", {"weights": ENCODER_FILE}, {"strength": float(strength), "made_by": "float synthesis response"})


def extend_artifact(path: Path, target: str, files: dict[str, str]) -> None:
    """Add files (roles) to an existing target's entry, keeping its other files and metadata."""
    mpath = path / MANIFEST
    manifest = json.loads(mpath.read_text())
    entry = manifest.get("artifacts", {}).get(target)
    if entry is None:
        raise BundleError(f"bundle {path} has no {target} artifact to extend")
    entry["files"].update(files)
    entry.setdefault("sha256", {}).update({k: sha256_file(path / v) for k, v in files.items()})
    mpath.write_text(json.dumps(manifest, indent=1, sort_keys=True))


def add_artifact(path: Path, target: str, files: dict[str, str], meta: dict) -> None:
    mpath = path / MANIFEST
    manifest = json.loads(mpath.read_text())
    manifest.setdefault("artifacts", {})[target] = {
        "files": files,
        "sha256": {k: sha256_file(path / v) for k, v in files.items()},
        **meta,
    }
    mpath.write_text(json.dumps(manifest, indent=1, sort_keys=True))
