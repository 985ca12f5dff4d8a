"""One exporter per target behind one registry (it also feeds the CLI's --target choices)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError, InputError

CALIB_DIR = Path(__file__).resolve().parents[1] / "data" / "calib"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "data" / "weights"


@dataclass(frozen=True)
class Exporter:
    name: str
    extra: str
    run: Callable[..., Path]
    creates_bundle: bool  # True: builds the bundle from a checkpoint; False: adds an artifact to one
    needs_weights: bool = True  # reads the float weights and calibration images (False: converts the ONNX artifact)


def load_calibration(folder: Path | None) -> list[np.ndarray]:
    from ..io import IMAGE_SUFFIXES, read_rgb8

    folder = Path(folder) if folder else CALIB_DIR
    if not folder.is_dir():
        raise InputError(f"calibration folder {folder} does not exist")
    imgs = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            imgs.append(np.ascontiguousarray(read_rgb8(p)[:512, :512]))
    if not imgs:
        raise InputError(f"no calibration images in {folder}")
    return imgs


def _onnx(checkpoint: Path, out: Path, calib: list[np.ndarray], progress) -> Path:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise ExportError(f"the onnx export needs {e.name} (pip install 'edgecodec[export]' and torch==2.13.0)") from None
    from .onnx_target import export_onnx_bundle

    return export_onnx_bundle(checkpoint, out, calib, progress=progress)


def _openvino(checkpoint: Path, out: Path, calib: list[np.ndarray], progress) -> Path:
    """Adds OpenVINO IR to the bundle at ``out`` (made by the onnx target); checkpoint and calib are unused."""
    import json

    from ..bundle import MANIFEST

    mpath = Path(out) / MANIFEST
    try:
        has_onnx = "onnx" in json.loads(mpath.read_text()).get("artifacts", {})
    except (OSError, ValueError):
        has_onnx = False
    if not has_onnx:
        raise ExportError(f"the openvino target needs a bundle with the onnx artifact at {out}; run `edgecodec export --target onnx` first")
    if importlib.util.find_spec("openvino") is None:
        raise ExportError("the openvino export needs openvino (pip install 'edgecodec[openvino]')")
    from .openvino_target import export_openvino

    export_openvino(Path(out), progress)
    return Path(out)


def _tflite(checkpoint: Path, out: Path, calib: list[np.ndarray], progress) -> Path:
    """Adds int8 TFLite transforms, converted from the checkpoint's float weights, to the bundle at ``out`` (made by the onnx target)."""
    import json

    from ..bundle import MANIFEST

    try:
        has_onnx = "onnx" in json.loads((Path(out) / MANIFEST).read_text()).get("artifacts", {})
    except (OSError, ValueError):
        has_onnx = False
    if not has_onnx:
        raise ExportError(f"the tflite target needs a bundle with the onnx artifact at {out}; run `edgecodec export --target onnx` first")
    for mod in ("tensorflow", "ai_edge_litert", "torch"):
        if importlib.util.find_spec(mod) is None:
            raise ExportError(f"the tflite export needs {mod} (pip install tensorflow-cpu 'edgecodec[tflite]' and torch==2.13.0)")
    from .tflite_target import export_tflite

    return export_tflite(Path(checkpoint), Path(out), calib, progress)


EXPORTERS: dict[str, Exporter] = {
    "onnx": Exporter("onnx", "export", _onnx, creates_bundle=True),
    "openvino": Exporter("openvino", "openvino", _openvino, creates_bundle=False, needs_weights=False),
    "tflite": Exporter("tflite", "tflite", _tflite, creates_bundle=False),
}


def validation_images() -> list[np.ndarray]:
    """Held-out images for validation: crops of the shipped Kodak photo (never used for calibration)."""
    from ..io import read_image

    photo = read_image(CALIB_DIR.parent / "kodim23.png")
    return [photo[:256, :256], photo[256:512, 384:640], photo[100:228, 500:692]]


def run_export(
    target: str,
    checkpoint: Path | None,
    out: Path,
    calib: Path | None,
    progress=lambda s: None,
    validate: bool = True,
    max_psnr_loss: float = 0.15,
) -> Path:
    """Export ``target`` (or ``all``, in registry order: onnx first, as it creates the bundle)."""
    names = list(EXPORTERS) if target == "all" else [target]
    for n in names:
        if n not in EXPORTERS:
            raise InputError(f"unknown export target {n!r}; choose one of: {', '.join(EXPORTERS)}, all")
    checkpoint = Path(checkpoint) if checkpoint else WEIGHTS_DIR
    images: list[np.ndarray] = []
    if any(EXPORTERS[n].needs_weights for n in names):
        if not checkpoint.joinpath("state.json").is_file():
            raise InputError(f"{checkpoint} is not a weights/checkpoint folder (no state.json)")
        images = load_calibration(calib)
    if not any(EXPORTERS[n].creates_bundle for n in names) and not Path(out).joinpath("manifest.json").is_file():
        raise InputError(f"{out} is not a bundle; export --target onnx first (or --target all)")
    for n in names:
        progress(f"[{n}] exporting" + (f" with {len(images)} calibration images" if EXPORTERS[n].needs_weights else ""))
        EXPORTERS[n].run(checkpoint, out, images, progress)
    if validate:
        from .validate import check, format_report
        from .validate import validate as run_validation

        targets = [t for t in (names if target != "all" else list(EXPORTERS))]
        report = run_validation(Path(out), checkpoint, validation_images(), targets, max_psnr_loss, progress=progress)
        progress(format_report(report))
        check(report)
    return out
