"""The fast synthesis (issue 13) as bundle artifacts beside the full one, for every target.

It decodes the same streams, so nothing here touches the model digest: the entropy model and
``transforms.npz`` stay as they are. What the bundle gains:

* ``fast.npz``: the numpy backend's layers (``f_s.*``, the ``transforms.npz`` format), read back
  from the int8 ONNX graph like the full synthesis' (dequantized weights, each conv's input grid);
* the ``fast_synthesis`` role of the ``onnx`` (QDQ), ``tflite`` and ``openvino`` artifacts;
* the ``fast`` manifest entry: configuration, MAC count, provenance, and its measured cost;
* the selection reference (``reference.npz``) gains the fast decode of its crop.

The quantization follows the full synthesis' rules exactly (``onnx_target``/``tflite_target``):
the inverse-gain multiply and the first conv stay fp32, so no 8-bit grid touches ``y_hat``; every
other conv is int8; the output lands on the 8-bit pixel grid. Calibration inputs are the latents
of the shipped calibration crops at every level as the decoder parses them.

    python -m edgecodec.export.fast_target [--bundle DIR] [--weights FILE] [--targets onnx,tflite,openvino]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..bundle import FAST_FILE, MANIFEST, add_artifact, extend_artifact
from ..errors import ExportError
from .registry import WEIGHTS_DIR

ROLE = "fast_synthesis"
FAST_ONNX, FAST_TFLITE = "fast_synthesis.int8.onnx", "fast_synthesis.int8.tflite"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "fast_synthesis.pt"
MAX_INT8_LOSS_DB = 0.5  # int8 vs float fast synthesis on the validation crops, any level: a broken export costs far more


def _artifacts(bundle_dir: Path) -> dict:
    import json

    return json.loads((Path(bundle_dir) / MANIFEST).read_text()).get("artifacts", {})


def calibration_latents(bundle_dir: Path, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(y_hat (1, M, h, w) float32, inv_gain (1, M, 1, 1)) of every image at every level, as parsed."""
    from ..bundle import Bundle
    from ..codec import code_latents, to_rgb8
    from ..runtimes.numpy_backend import NumpyBackend
    from ..tiling import max_memory

    bundle = Bundle(bundle_dir)
    be = NumpyBackend(bundle)  # the reference analysis: calibration does not depend on an installed runtime
    out = []
    for img in images:
        rgb = to_rgb8(img)[0]
        for q in range(1, bundle.levels + 1):
            parse = code_latents(rgb, q, be, bundle, max_memory(None))[0]
            out.append((parse.y[None].astype(np.float32), bundle.gains(q)[1]))
    return out


def export_fast_onnx(bundle_dir: Path, weights: Path, images: list[np.ndarray], progress: Callable[[str], None] = lambda s: None) -> None:
    """Write ``fast_synthesis.int8.onnx`` and ``fast.npz`` and register them (the ``fast`` entry)."""
    from ..export.bundle_builder import net_arrays
    from ..models.convert import export_synthesis_onnx
    from ..models.fast_synthesis import float_layers, load_weights, macs_per_pixel, receptive_field_latents
    from .onnx_target import _fp32_nodes, _pixel_grid, _quantize, half_float_weights, qdq_layers, write_reference

    bundle_dir = Path(bundle_dir)
    if "onnx" not in _artifacts(bundle_dir):
        raise ExportError(f"the fast synthesis needs a bundle with the onnx artifact at {bundle_dir}")
    model, meta = load_weights(weights)
    layers = float_layers(model)
    m = model.config.y_channels
    progress(f"fast synthesis: {macs_per_pixel(model.config):.0f} MAC/px, {len(layers)} convs")
    feeds = [{"y_hat": y, "inv_gain": g} for y, g in calibration_latents(bundle_dir, images)]
    if feeds and feeds[0]["y_hat"].shape[1] != m:
        raise ExportError(f"the fast synthesis reads {m} latent channels but the bundle has {feeds[0]['y_hat'].shape[1]}")
    with tempfile.TemporaryDirectory() as tmp:
        f32 = Path(tmp) / "fast.onnx"
        export_synthesis_onnx(layers, f32, m)
        progress(f"quantizing the fast synthesis to int8 ({len(feeds)} calibration inputs)")
        _quantize(f32, bundle_dir / FAST_ONNX, feeds, _fp32_nodes(f32, "synthesis"), unsigned_weights=False, overrides=_pixel_grid(f32))
    half_float_weights(bundle_dir / FAST_ONNX)
    np.savez_compressed(bundle_dir / FAST_FILE, **net_arrays("f_s", qdq_layers(bundle_dir / FAST_ONNX, layers)))
    extend_artifact(bundle_dir, "onnx", {ROLE: FAST_ONNX})
    info = {
        "config": model.config.to_dict(),
        "macs_per_pixel": macs_per_pixel(model.config),
        "receptive_field_latents": receptive_field_latents(model.config),
        "made_from": {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in meta.items()},
    }
    add_artifact(bundle_dir, "fast", {"weights": FAST_FILE}, info)
    write_reference(bundle_dir)  # the selection reference gains the fast decode


def export_fast_tflite(bundle_dir: Path, weights: Path, images: list[np.ndarray], progress: Callable[[str], None] = lambda s: None) -> None:
    """Write ``fast_synthesis.int8.tflite`` (the full synthesis' conversion rules) into the tflite entry."""
    from ..models.fast_synthesis import float_layers, load_weights
    from .tflite_target import _build_module, _check_precision, _convert, fp32_nodes, input_quantization

    bundle_dir = Path(bundle_dir)
    if "tflite" not in _artifacts(bundle_dir):
        raise ExportError(f"the fast synthesis' tflite artifact needs the tflite target at {bundle_dir} first")
    from ..models.convert import float_nets
    from ..models.train import load_checkpoint

    model, _ = load_weights(weights)
    m = model.config.y_channels
    # the analysis nets only keep the module's shape (with none, the converter emits no signature)
    nets = float_nets(load_checkpoint(WEIGHTS_DIR)[0])
    module = _build_module({"g_a": nets["g_a"], "h_a": nets["h_a"], "g_s": float_layers(model)}, m)
    data = [
        {"y_hat": np.ascontiguousarray(y.transpose(0, 2, 3, 1)), "inv_gain": np.ascontiguousarray(g.reshape(1, 1, 1, m))}
        for y, g in calibration_latents(bundle_dir, images)
    ]
    keep = fp32_nodes(module, module.synthesis, "synthesis")
    progress(f"converting the fast synthesis to int8 TFLite ({len(data)} calibration inputs)")
    content = _convert(module, module.synthesis, data, keep)
    _check_precision(content, "synthesis", keep)
    if input_quantization(content, "y_hat") is not None:
        raise ExportError("the TFLite fast synthesis quantizes y_hat, so integer latents are not exact")
    (bundle_dir / FAST_TFLITE).write_bytes(content)
    extend_artifact(bundle_dir, "tflite", {ROLE: FAST_TFLITE})


def export_fast_openvino(bundle_dir: Path, progress: Callable[[str], None] = lambda s: None) -> None:
    from .openvino_target import export_openvino

    if "openvino" not in _artifacts(bundle_dir):
        raise ExportError(f"the fast synthesis' OpenVINO IR needs the openvino target at {bundle_dir} first")
    export_openvino(Path(bundle_dir), progress, roles={ROLE: FAST_ONNX})


def _pixels(x: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.rint(np.clip(x[0, :, :h, :w].transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def int8_loss(bundle_dir: Path, weights: Path, images: list[np.ndarray], backend: str = "numpy") -> list[float]:
    """Per level: PSNR (vs the original) of the float fast synthesis minus that of ``backend``'s int8
    one, mean over ``images``: what the export's 8-bit grids cost."""
    import torch

    from ..bundle import Bundle
    from ..codec import psnr
    from ..models.fast_synthesis import load_weights
    from ..runtimes.base import open_backend

    model, _ = load_weights(weights)
    bundle = Bundle(bundle_dir)
    be = open_backend(backend, bundle)
    lat = calibration_latents(bundle_dir, images)
    per = {}
    for i, (y, g) in enumerate(lat):
        img = images[i // bundle.levels][..., :3]
        h, w = img.shape[:2]
        with torch.no_grad():
            fl = model(torch.from_numpy(y * g)).numpy()
        q8 = be.fast_synthesis(y, g)

        per.setdefault(i % bundle.levels, []).append(psnr(_pixels(fl, h, w), img) - psnr(_pixels(q8, h, w), img))
    return [round(float(np.mean(per[k])), 4) for k in sorted(per)]


def export_fast(
    bundle_dir: Path,
    weights: Path = DEFAULT_WEIGHTS,
    targets: list[str] | None = None,
    calib: Path | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> dict:
    """Add the fast synthesis to every target the bundle has (or ``targets``); returns the measured
    int8 loss per level on the validation crops (numpy backend), which must stay under ``MAX_INT8_LOSS_DB``."""
    from .registry import load_calibration, validation_images

    bundle_dir = Path(bundle_dir)
    if not Path(weights).is_file():
        raise ExportError(f"no fast synthesis weights at {weights}")
    have = _artifacts(bundle_dir)
    targets = targets or [t for t in ("onnx", "tflite", "openvino") if t in have]
    images = load_calibration(calib)
    t0 = time.perf_counter()
    if "onnx" in targets:
        export_fast_onnx(bundle_dir, weights, images, progress)
    if "tflite" in targets:
        export_fast_tflite(bundle_dir, weights, images, progress)
    if "openvino" in targets:
        export_fast_openvino(bundle_dir, progress)
    loss = int8_loss(bundle_dir, weights, [v[..., :3] for v in validation_images()])
    progress(f"fast synthesis exported to {', '.join(targets)} in {time.perf_counter() - t0:.0f} s; int8 loss per level (dB): {loss}")
    if max(loss) > MAX_INT8_LOSS_DB:
        raise ExportError(f"the int8 fast synthesis loses {max(loss):.2f} dB against its float weights (at most {MAX_INT8_LOSS_DB})")
    return {"int8_loss_db": loss}


def main(argv: list[str] | None = None) -> None:
    from ..bundle import default_bundle_path

    ap = argparse.ArgumentParser(description="add the fast synthesis to a bundle's targets")
    ap.add_argument("--bundle", type=Path, default=default_bundle_path())
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="fast_synthesis.pt, or a fast_train checkpoint")
    ap.add_argument("--targets", default="", help="comma-separated (default: every target the bundle has)")
    ap.add_argument("--calib", type=Path, default=None)
    a = ap.parse_args(argv)
    export_fast(a.bundle, a.weights, [t for t in a.targets.split(",") if t] or None, a.calib, progress=print)


if __name__ == "__main__":
    main()
