"""Validation after export: never a silent bad artifact.

On images not used for calibration, at every quality level:
* each int8 runtime's full pipeline (its encode and its decode) is compared with the fp32 model's:
  the PSNR loss must stay within ``max_psnr_loss`` dB;
* every pair of runtimes decodes the same stream (made by the fp32 model) to images that agree at
  ``min_agreement_db`` dB or more, and parses it identically;
* each runtime's executed op list must show int8 convolutions (no silent float fallback beyond
  the layers kept fp32 by design, ``FP32_CONVS``).
The report is printed, stored as ``validation.json`` in the bundle, and failures raise
``ExportError``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from ..errors import EdgecodecError, ExportError

TARGET_BACKEND = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "tflite"}
FP32_CONVS = {"analysis": 4, "synthesis": 1}  # at most this many convs per transform may run in float
CONV_OPS = {"conv", "qlinearconv", "convinteger", "conv_2d", "convolution", "depthwise_conv_2d"}


def int8_conv_share(ops: list[tuple[str, str]]) -> tuple[int, int]:
    """(int8 convs, all convs) in an executed op list of (op type, precision)."""
    convs = [p for op, p in ops if op.lower() in CONV_OPS]
    return sum(p.lower() in ("int8", "i8", "u8", "uint8") for p in convs), len(convs)


def validate(
    bundle_dir: Path,
    weights_dir: Path,
    images: list[np.ndarray],
    targets: list[str] | None = None,
    max_psnr_loss: float = 0.15,
    min_agreement_db: float = 40.0,
    progress=lambda s: None,
) -> dict:
    from .. import codec
    from ..bundle import Bundle, add_artifact
    from ..models.torch_backend import TorchBackend
    from ..runtimes.base import open_backend

    bundle = Bundle(bundle_dir)
    ref = TorchBackend(bundle, weights_dir, threads=2)
    runtimes = {}
    for target in targets or list(bundle.manifest.get("artifacts", {})):
        name = TARGET_BACKEND.get(target)
        if name is None:
            continue
        try:
            runtimes[name] = open_backend(name, bundle, threads=2)
        except EdgecodecError as e:
            progress(f"validation: {name} not checked ({e})")
    failures: list[str] = []
    report: dict = {"max_psnr_loss_db": max_psnr_loss, "min_agreement_db": min_agreement_db, "images": len(images), "levels": {}}
    for q in range(1, bundle.levels + 1):
        progress(f"validating quality {q}/{bundle.levels}")
        row: dict = {}
        fp = [codec.encode(img, q, ref, bundle) for img in images]
        row["fp32"] = {"psnr": float(np.mean([e.psnr for e in fp])), "bpp": float(np.mean([e.bpp for e in fp]))}
        decoded = {}
        for name, be in runtimes.items():
            own = [codec.encode(img, q, be, bundle) for img in images]
            psnr, bpp = float(np.mean([e.psnr for e in own])), float(np.mean([e.bpp for e in own]))
            row[name] = {"psnr": psnr, "bpp": bpp, "psnr_loss": row["fp32"]["psnr"] - psnr}
            if row[name]["psnr_loss"] > max_psnr_loss:
                failures.append(f"q{q} {name}: PSNR {row[name]['psnr_loss']:.2f} dB below fp32 (limit {max_psnr_loss})")
            decoded[name] = [codec.decode(e.data, be, bundle) for e in fp]
        for a, b in itertools.combinations(decoded, 2):
            worst = min(codec.psnr(x.image, y.image) for x, y in zip(decoded[a], decoded[b]))
            same_parse = all(x.parse.digest() == y.parse.digest() for x, y in zip(decoded[a], decoded[b]))
            row[f"{a}~{b}"] = {"min_psnr": worst, "same_parse": same_parse}
            if worst < min_agreement_db or not same_parse:
                failures.append(f"q{q} {a} vs {b}: decodes agree at {worst:.1f} dB (limit {min_agreement_db}), same parse {same_parse}")
        report["levels"][q] = row
    for name, be in runtimes.items():
        ops = {}
        for role in ("analysis", "synthesis"):
            n_int8, n_conv = int8_conv_share(be.executed_ops(role)) if hasattr(be, "executed_ops") else (0, 0)
            ops[role] = {"int8_convs": n_int8, "convs": n_conv}
        report.setdefault("ops", {})[name] = ops
        # fp32 by design (see onnx_target._fp32_nodes): the synthesis conv after the inverse gain; the last
        # two analysis convs, the first hyper-analysis conv and the last one (its z is a float output; a
        # runtime may still run it int8); anything beyond is a float fallback
        for role, by_design in FP32_CONVS.items():
            r = ops[role]
            if r["convs"] and r["int8_convs"] < r["convs"] - by_design:
                failures.append(f"{name}: {role} runs {r['convs'] - r['int8_convs']} float convs ({by_design} by design)")
    report["failures"] = failures
    report["passed"] = not failures
    (Path(bundle_dir) / "validation.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    add_artifact(Path(bundle_dir), "validation", {"report": "validation.json"}, {"passed": not failures})
    return report


def format_report(report: dict) -> str:
    lines = []
    names = [k for k in next(iter(report["levels"].values())) if "~" not in k]
    lines.append("quality  " + "  ".join(f"{n + ' bpp/PSNR':>22s}" for n in names))
    for q, row in report["levels"].items():
        lines.append(f"{q:>7}  " + "  ".join(f"{row[n]['bpp']:>10.4f} {row[n]['psnr']:>10.2f}" for n in names))
    pairs = [k for k in next(iter(report["levels"].values())) if "~" in k]
    for p in pairs:
        worst = min(row[p]["min_psnr"] for row in report["levels"].values())
        same = all(r[p]["same_parse"] for r in report["levels"].values())
        lines.append(f"{p}: decodes agree at >= {worst:.1f} dB, parse identical: {same}")
    for name, ops in report.get("ops", {}).items():
        lines.append(f"{name}: int8 convs analysis {ops['analysis']['int8_convs']}/{ops['analysis']['convs']}, "
                     f"synthesis {ops['synthesis']['int8_convs']}/{ops['synthesis']['convs']}")  # fmt: skip
    lines += [f"FAIL {f}" for f in report["failures"]] or ["validation passed"]
    return "\n".join(lines)


def check(report: dict) -> None:
    if report["failures"]:
        raise ExportError(f"export validation failed: {report['failures'][0]} (+{len(report['failures']) - 1} more; see validation.json)")
