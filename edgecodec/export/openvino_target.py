"""The ``openvino`` target: adds OpenVINO IR of the bundle's int8 QDQ ONNX transforms.

This target does not create a bundle: it reads ``analysis.int8.onnx`` and
``synthesis.int8.onnx`` from an existing one (made by the ``onnx`` target) and
writes ``analysis.int8.xml/.bin`` and ``synthesis.int8.xml/.bin`` next to them.

The QDQ pairs become OpenVINO ``FakeQuantize`` nodes, which the CPU plugin runs
as int8/u8 convolutions, so the IR decodes the same quantized network as the
ONNX graph. Weights are saved as they are (``compress_to_fp16=False``): the
default fp16 weight compression would touch the fp32 layers around the gains
(see ``onnx_target``).

One rewrite before conversion, ``int8_weights``: the ONNX analysis stores its int8
weights as uint8 with per-channel zero points (for ONNX Runtime's sake, see
``onnx_target``), which OpenVINO's CPU plugin runs in f32 on decompressed weights
(all seven analysis convs f32: 139 ms instead of 63 ms at 768x512). The zero points
are all 128, so ``q - 128`` is the same weight as an int8 code with the same scale
and zero point 0: the IR runs exactly the ONNX graph's weights as u8 x i8 kernels
(the earlier rewrite re-quantized them to max|w| / 127 and moved the latents: at
quality 10 they rounded to the numpy reference's integers on 96.3% of elements; now
99.98%, as ONNX Runtime).

Except the conv that reads the image, which keeps its uint8 weights, so f32: on
x86 without VNNI (AVX2-only, AVX-512 without VNNI) oneDNN's u8 x i8 kernels
(``jit_avx2_I8``) multiply with ``vpmaddubsw``, which adds the products of two
neighbouring input channels in int16 and saturates at 32767 (OpenVINO's oneDNN
does not halve the weights to avoid it: 32 input channels of 255 times weights of
127 come out as 16 x 32767). The pixels are dense 8-bit codes in every channel, so
with full-range weights 0.32% of that conv's pair sums saturated on Kodak crops
(7.7% of its outputs hit) and the encoder lost 0.41 dB at quality 1 and 4.1 dB at
quality 10 against fp32 (export validation, under ``ONEDNN_MAX_CPU_ISA=AVX2`` and
under qemu's AVX2-only EPYC-Rome alike; kodim23 at quality 4: 28.44 dB instead of
30.74). Every later int8 conv reads sparse ReLU outputs: none of their pair sums
saturated on the same crops, and the latents come out the same with and without
VNNI. The f32 conv costs 9 ms of CPU per 768x512 analysis on AVX-512 VNNI (61 ->
71 ms, one thread) and 6 ms under the AVX2 cap (162 -> 168 ms); 7-bit weights for
it (|w| <= 64 cannot saturate) were as fast as int8 but moved the latents (93.4%
round equal at quality 10), two exact 7-bit halves summed were as slow as f32.
``scripts/test-cpu-isa`` checks all of this on an AVX2-only CPU.

The manifest records the ``.xml`` under the role names the backend opens
(``analysis``, ``synthesis``) and the ``.bin`` weights under ``analysis_bin`` and
``synthesis_bin``, so both files of each model are checksummed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..bundle import add_artifact, extend_artifact
from ..errors import ExportError
from .onnx_target import ANALYSIS, SYNTHESIS

ROLES = {"analysis": ANALYSIS, "synthesis": SYNTHESIS}
FAST_ONNX = "fast_synthesis.int8.onnx"  # export.fast_target's


def ir_name(onnx_name: str) -> str:
    return onnx_name[: -len(".onnx")] + ".xml"


def int8_weights(src: Path, dst: Path) -> dict[str, str]:
    """Copy the QDQ graph at ``src`` to ``dst`` with every uint8 per-channel conv weight stored as symmetric
    int8 (zero point 0), except the weights of a conv that reads a graph input (the image), kept uint8.

    A weight whose ``q - zero_point`` fits int8 is converted exactly (same scale); any other is
    re-quantized to scale max|w| / 127 per output channel (not exact; the shipped bundle has none).
    Returns {conv name: "kept" | "exact" | "requantized"}.
    """
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    init = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    graph_inputs = {i.name for i in m.graph.input}

    def reads_graph_input(conv) -> bool:
        """True when the conv's data input is (a Q/DQ pair of) a graph input."""
        name = conv.input[0]
        while name in producer and producer[name].op_type in ("DequantizeLinear", "QuantizeLinear"):
            name = producer[name].input[0]
        return name in graph_inputs

    done: dict[str, str] = {}
    for conv in m.graph.node:
        dq = producer.get(conv.input[1]) if conv.op_type == "Conv" and len(conv.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in init or len(dq.input) < 3:
            continue
        q = numpy_helper.to_array(init[dq.input[0]])
        if q.dtype != np.uint8 or q.ndim != 4:  # activations are per-tensor and computed, not initializers
            continue
        if reads_graph_input(conv):
            done[conv.name] = "kept"
            continue
        shape = (-1, 1, 1, 1)
        scale = numpy_helper.to_array(init[dq.input[1]]).astype(np.float32).reshape(-1)
        zp = numpy_helper.to_array(init[dq.input[2]]).astype(np.int32).reshape(shape)
        d = q.astype(np.int32) - zp
        if d.min() >= -128 and d.max() <= 127:
            wq, s = d.astype(np.int8), scale
            done[conv.name] = "exact"
        else:
            w = d * scale.astype(np.float64).reshape(shape)
            s = np.abs(w).max(axis=(1, 2, 3)) / 127.0
            s[s == 0] = 1.0
            wq = np.clip(np.rint(w / s.reshape(shape)), -127, 127).astype(np.int8)
            s = s.astype(np.float32)
            done[conv.name] = "requantized"
        init[dq.input[0]].CopyFrom(numpy_helper.from_array(wq, dq.input[0]))
        init[dq.input[1]].CopyFrom(numpy_helper.from_array(s, dq.input[1]))
        init[dq.input[2]].CopyFrom(numpy_helper.from_array(np.zeros(len(s), np.int8), dq.input[2]))
    onnx.save(m, str(dst))
    return done


def export_openvino(bundle_dir: Path, progress: Callable[[str], None] = lambda s: None, roles: dict[str, str] | None = None) -> None:
    """Convert the bundle's ONNX transforms to IR: ``ROLES`` (plus the fast synthesis when the bundle
    has it) into a new ``openvino`` entry, or only ``roles`` added to the existing entry."""
    try:
        import openvino as ov
    except ImportError:
        raise ExportError("the openvino export needs openvino (pip install 'edgecodec[openvino]')") from None
    bundle_dir = Path(bundle_dir)
    files: dict[str, str] = {}
    todo = dict(roles or ROLES)
    if roles is None and (bundle_dir / FAST_ONNX).is_file():
        todo["fast_synthesis"] = FAST_ONNX
    for role, onnx_name in todo.items():
        src = bundle_dir / onnx_name
        if not src.is_file():
            raise ExportError(f"bundle {bundle_dir} lacks {onnx_name}; run `edgecodec export --target onnx` first")
        xml = ir_name(onnx_name)
        progress(f"converting {onnx_name} to OpenVINO IR {xml}")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                rewritten = Path(tmp) / onnx_name
                modes = int8_weights(src, rewritten)
                model = ov.convert_model(str(rewritten))
            ov.save_model(model, str(bundle_dir / xml), compress_to_fp16=False)
        except Exception as e:  # OpenVINO raises its own error types (GeneralFailure, OpConversionFailure, ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"OpenVINO could not convert {onnx_name}: {first}") from None
        if modes:
            counts = {k: sum(v == k for v in modes.values()) for k in ("exact", "requantized", "kept")}
            progress(f"{onnx_name}: uint8 conv weights as int8: {counts['exact']} exact, {counts['requantized']} re-quantized, "
                     f"{counts['kept']} kept uint8 (f32: the conv reading the image)")  # fmt: skip
        files[role] = xml
        files[f"{role}_bin"] = xml[: -len(".xml")] + ".bin"
    if roles is None:
        add_artifact(bundle_dir, "openvino", files, {"precision": "int8", "openvino": ov.__version__})
    else:
        extend_artifact(bundle_dir, "openvino", files)
