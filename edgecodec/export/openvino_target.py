"""The ``openvino`` target: adds OpenVINO IR of the bundle's int8 QDQ ONNX transforms.

This target does not create a bundle: it reads ``analysis.int8.onnx`` and
``synthesis.int8.onnx`` from an existing one (made by the ``onnx`` target) and
writes ``analysis.int8.xml/.bin`` and ``synthesis.int8.xml/.bin`` next to them.

The QDQ pairs become OpenVINO ``FakeQuantize`` nodes, which the CPU plugin runs
as int8/u8 convolutions, so the IR decodes the same quantized network as the
ONNX graph. Weights are saved as they are (``compress_to_fp16=False``): the
default fp16 weight compression would touch the fp32 layers around the gains
(see ``onnx_target``).

The manifest records the ``.xml`` under the role names the backend opens
(``analysis``, ``synthesis``) and the ``.bin`` weights under ``analysis_bin`` and
``synthesis_bin``, so both files of each model are checksummed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..bundle import add_artifact
from ..errors import ExportError
from .onnx_target import ANALYSIS, SYNTHESIS

ROLES = {"analysis": ANALYSIS, "synthesis": SYNTHESIS}


def ir_name(onnx_name: str) -> str:
    return onnx_name[: -len(".onnx")] + ".xml"


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
            model = ov.convert_model(str(src))
            ov.save_model(model, str(bundle_dir / xml), compress_to_fp16=False)
        except Exception as e:  # OpenVINO raises its own error types (GeneralFailure, OpConversionFailure, ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"OpenVINO could not convert {onnx_name}: {first}") from None
        files[role] = xml
        files[f"{role}_bin"] = xml[: -len(".xml")] + ".bin"
    add_artifact(bundle_dir, "openvino", files, {"precision": "int8", "openvino": ov.__version__})
