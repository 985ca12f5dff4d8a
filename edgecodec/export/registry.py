"""One exporter per target behind one registry (it also feeds the CLI's --target choices)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError, InputError

CALIB_DIR = Path(__file__).resolve().parents[1] / "data" / "calib"


@dataclass(frozen=True)
class Exporter:
    name: str
    extra: str
    run: Callable[..., Path]
    creates_bundle: bool  # True: builds the bundle from a checkpoint; False: adds an artifact to one


def load_calibration(folder: Path | None) -> list[np.ndarray]:
    from ..io import IMAGE_SUFFIXES, read_image

    folder = Path(folder) if folder else CALIB_DIR
    if not folder.is_dir():
        raise InputError(f"calibration folder {folder} does not exist")
    imgs = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            img = read_image(p)
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            if img.dtype != np.uint8:
                img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
            imgs.append(np.ascontiguousarray(img[:, :, :3][:512, :512]))
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


EXPORTERS: dict[str, Exporter] = {
    "onnx": Exporter("onnx", "export", _onnx, creates_bundle=True),
}


def run_export(target: str, checkpoint: Path, out: Path, calib: Path | None, progress=lambda s: None) -> Path:
    names = list(EXPORTERS) if target == "all" else [target]
    for n in names:
        if n not in EXPORTERS:
            raise InputError(f"unknown export target {n!r}; choose one of: {', '.join(EXPORTERS)}, all")
    if not Path(checkpoint).joinpath("state.json").is_file():
        raise InputError(f"{checkpoint} is not a training checkpoint folder (no state.json)")
    images = load_calibration(calib)
    for n in names:
        progress(f"[{n}] exporting with {len(images)} calibration images")
        EXPORTERS[n].run(checkpoint, out, images, progress)
    return out
