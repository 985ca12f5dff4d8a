"""The ``openvino`` target: adds OpenVINO IR of the bundle's int8 QDQ ONNX transforms.

This target does not create a bundle: it reads ``analysis.int8.onnx`` and
``synthesis.int8.onnx`` from an existing one (made by the ``onnx`` target) and
writes ``analysis.int8.xml/.bin`` and ``synthesis.int8.xml/.bin`` next to them.

The QDQ pairs become OpenVINO ``FakeQuantize`` nodes, which the CPU plugin runs
as int8/u8 convolutions, so the IR decodes the same quantized network as the
ONNX graph. Weights are saved as they are (``compress_to_fp16=False``): the
default fp16 weight compression would touch the fp32 layers around the gains
(see ``onnx_target``).

One rewrite before conversion: the ONNX analysis stores its int8 weights as
uint8 with per-channel zero points (for ONNX Runtime's sake, see ``onnx_target``);
OpenVINO's CPU plugin runs such convolutions in f32 on decompressed weights (all
analysis convs read ``f32`` in the executed op list). ``symmetric_weights``
re-quantizes them to symmetric int8 per channel, which it runs as u8 x i8
kernels: measured here, the 768x512 analysis takes 63 ms instead of 139 ms.

The manifest records the ``.xml`` under the role names the backend opens
(``analysis``, ``synthesis``) and the ``.bin`` weights under ``analysis_bin`` and
``synthesis_bin``, so both files of each model are checksummed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..bundle import add_artifact
from ..errors import ExportError
from .onnx_target import ANALYSIS, SYNTHESIS

ROLES = {"analysis": ANALYSIS, "synthesis": SYNTHESIS}


def ir_name(onnx_name: str) -> str:
    return onnx_name[: -len(".onnx")] + ".xml"


def symmetric_weights(src: Path, dst: Path) -> None:
    """Copy the QDQ graph at ``src`` to ``dst`` with every uint8 per-channel conv weight re-quantized to
    symmetric int8 (scale max|w| / 127 per output channel, zero point 0)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    init = {i.name: i for i in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in init or len(node.input) < 3:
            continue
        q = numpy_helper.to_array(init[node.input[0]])
        if q.dtype != np.uint8 or q.ndim != 4:  # activations are per-tensor and computed, not initializers
            continue
        shape = (-1, 1, 1, 1)
        scale = numpy_helper.to_array(init[node.input[1]]).astype(np.float64).reshape(shape)
        zp = numpy_helper.to_array(init[node.input[2]]).astype(np.float64).reshape(shape)
        w = (q - zp) * scale
        s = np.abs(w).max(axis=(1, 2, 3)) / 127.0
        s[s == 0] = 1.0
        wq = np.clip(np.rint(w / s.reshape(shape)), -127, 127).astype(np.int8)
        init[node.input[0]].CopyFrom(numpy_helper.from_array(wq, node.input[0]))
        init[node.input[1]].CopyFrom(numpy_helper.from_array(s.astype(np.float32), node.input[1]))
        init[node.input[2]].CopyFrom(numpy_helper.from_array(np.zeros(len(s), np.int8), node.input[2]))
    onnx.save(m, str(dst))


def export_openvino(bundle_dir: Path, progress: Callable[[str], None] = lambda s: None) -> None:
    try:
        import openvino as ov
    except ImportError:
        raise ExportError("the openvino export needs openvino (pip install 'edgecodec[openvino]')") from None
    bundle_dir = Path(bundle_dir)
    files: dict[str, str] = {}
    for role, onnx_name in ROLES.items():
        src = bundle_dir / onnx_name
        if not src.is_file():
            raise ExportError(f"bundle {bundle_dir} lacks {onnx_name}; run `edgecodec export --target onnx` first")
        xml = ir_name(onnx_name)
        progress(f"converting {onnx_name} to OpenVINO IR {xml}")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                symmetric = Path(tmp) / onnx_name
                symmetric_weights(src, symmetric)
                model = ov.convert_model(str(symmetric))
            ov.save_model(model, str(bundle_dir / xml), compress_to_fp16=False)
        except Exception as e:  # OpenVINO raises its own error types (GeneralFailure, OpConversionFailure, ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"OpenVINO could not convert {onnx_name}: {first}") from None
        files[role] = xml
        files[f"{role}_bin"] = xml[: -len(".xml")] + ".bin"
    add_artifact(bundle_dir, "openvino", files, {"precision": "int8", "openvino": ov.__version__})
