"""The ``onnx`` target: trained checkpoint -> bundle with int8 QDQ ONNX transforms.

This target creates the bundle (the other targets add artifacts to it):

1. fp32 ONNX of the analysis (x, gain -> y, z) and synthesis (y_hat, inv_gain -> x_hat);
2. static QDQ quantization with ``onnxruntime.quantization`` from calibration
   images run at every quality level (int8 weights per channel, uint8 activations);
3. the numpy reference weights are read back from the QDQ graph (dequantized
   weights plus each conv's input quantization grid), so the numpy backend
   decodes what the int8 graph decodes;
4. the hyper-decoder goes to the integer path and the CDF tables are built.

Exactness of the synthesis input: ``y_hat`` is an integer tensor clamped to
[-127, 127] by the entropy model. The inverse-gain ``Mul`` and the first
synthesis conv stay fp32 (excluded from quantization), so no 8-bit grid ever
touches ``y_hat * inv_gain``; every later layer is int8. Likewise the last two
analysis convs and the gain ``Mul`` stay fp32 so ``y`` is rounded from a value
with little 8-bit noise in it (see ``_fp32_nodes``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..bundle import add_artifact, write_rd_weights
from ..codec import model_input
from ..errors import ExportError
from .bundle_builder import build_core_bundle

ANALYSIS, SYNTHESIS = "analysis.int8.onnx", "synthesis.int8.onnx"


class _Feeds:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - not used by the MinMax calibrator
        pass


def _pixel_grid(path: Path) -> dict:
    """Quantization override for the synthesis output: the Clip to [0, 1] gets scale 1/255, zero
    point 0, so its uint8 grid is exactly the 8-bit pixel grid and costs nothing beyond the
    rounding every decoder does anyway (a calibrated range, ~[-0.2, 1.26], would add ~0.1 dB of
    noise at the top qualities)."""
    import onnx

    clips = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Clip"]
    return {c.output[0]: [{"scale": np.array(1 / 255, np.float32), "zero_point": np.array(0, np.uint8)}] for c in clips}


def _quantize(src: Path, dst: Path, feeds: list[dict], exclude: list[str], unsigned_weights: bool, overrides: dict | None = None) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src),
        str(dst),
        _Feeds(feeds),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QUInt8 if unsigned_weights else QuantType.QInt8,
        nodes_to_exclude=exclude,
        calibrate_method=CalibrationMethod.MinMax,  # Percentile measured worse (-1.7 dB at the top quality), Entropy equal
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": not unsigned_weights, "TensorQuantOverrides": overrides or {}},
    )


def float_outputs(path: Path, names: list[str]) -> None:
    """Make graph outputs carry the float value from before their output QuantizeLinear.

    The quantizer puts Q/DQ on a tensor that is both a graph output and the input
    of a quantized conv (y feeds h_a); the output would then be snapped to an
    8-bit grid (y to steps of ~0.6) before the codec rounds it. Consumers inside
    the graph keep the quantized copy.
    """
    import onnx

    m = onnx.load(str(path))
    g = m.graph
    for name in names:
        dq = next((n for n in g.node if n.op_type == "DequantizeLinear" and name in n.output), None)
        if dq is None:
            continue
        q = next(n for n in g.node if n.op_type == "QuantizeLinear" and dq.input[0] in n.output)
        inner = name + "_dequantized"
        dq.output[0] = inner
        for n in g.node:
            for i, t in enumerate(n.input):
                if t == name:
                    n.input[i] = inner
        g.node.append(onnx.helper.make_node("Identity", [q.input[0]], [name], name=f"{name}_float_output"))
        if not any(inner in n.input for n in g.node):  # nothing inside uses the quantized copy
            g.node.remove(dq)
            g.node.remove(q)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def half_float_weights(path: Path) -> None:
    """Store float initializers that are exactly float16 (the fp32 layers' fp16-rounded weights) as
    float16 with a Cast back to float32: the layers still compute in fp32 with the same numbers,
    the file shrinks by their half. Runtimes fold the Cast at load time."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..bundle import half_if_exact

    m = onnx.load(str(path))
    g = m.graph
    casts = []
    for init in g.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        h = half_if_exact(numpy_helper.to_array(init))
        if h.dtype != np.float16:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(h, name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT, name=name + "_to_fp32"))
    for node in reversed(casts):
        g.node.insert(0, node)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def _fp32_nodes(path: Path, role: str) -> list[str]:
    """Nodes kept fp32: the gain Mul and the conv next to it; in the analysis also the conv before
    that one and the first hyper-analysis conv.

    The hyper-analysis reads y, whose range grows with the gain; on a shared 8-bit grid its small
    values vanish and z loses what it should describe: measured +9% rate at quality 3 on Kodak
    crops with that conv int8, none with it fp32 (it runs at 1/16 resolution: ~0.3 GMAC).
    The analysis' third conv: its int8 weights and output grid are the two largest sources of latent
    error (at the top quality ~60% of it: y is scaled by the largest gain there), which cost
    0.09 dB and +0.6% rate at quality 10 on Kodak crops; fp32 leaves 0.03 dB and +0.3%.
    Rescaling its output channels to equal ranges (cross-layer equalization) did not help.
    """
    import onnx

    nodes = list(onnx.load(str(path)).graph.node)
    gain_input = "gain" if role == "analysis" else "inv_gain"
    mul = next(n for n in nodes if n.op_type == "Mul" and gain_input in n.input)
    if role == "analysis":
        producer = {o: n for n in nodes for o in n.output}
        conv = next(n for n in nodes if n.op_type == "Conv" and n.output[0] in mul.input)
        relu = producer[conv.input[0]]
        before = producer[relu.input[0]]  # the analysis conv before it
        h_a0 = next(n for n in nodes if n.op_type == "Conv" and mul.output[0] in n.input)
        return [mul.name, before.name, conv.name, h_a0.name]
    conv = next(n for n in nodes if n.op_type == "Conv" and mul.output[0] in n.input)
    return [mul.name, conv.name]


def qdq_layers(path: Path, float_layers: list[dict]) -> list[dict]:
    """Float layer dicts with the QDQ graph's dequantized weights and input grids, in conv order."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"]
    if len(convs) != len(float_layers):
        raise ExportError(f"quantized graph {path.name} has {len(convs)} convs, expected {len(float_layers)}")

    def dequant(name: str) -> tuple[np.ndarray, dict]:
        """Float value of a conv input, plus its stored integer form when it is a quantized weight."""
        node = producer.get(name)
        if node is not None and node.op_type == "Cast":  # a float16-stored float weight
            return init[node.input[0]].astype(np.float64), {}
        if node is None or node.op_type != "DequantizeLinear":
            return init[name].astype(np.float64), {}
        q = init[node.input[0]]
        s = init[node.input[1]].astype(np.float64)
        zp = init[node.input[2]] if len(node.input) > 2 else np.zeros(s.shape, q.dtype)
        if s.ndim == 1 and q.ndim > 1:  # per-output-channel weights
            shape = (-1,) + (1,) * (q.ndim - 1)
            return (q.astype(np.float64) - zp.reshape(shape)) * s.reshape(shape), {"wq": q, "wscale": s, "wzp": zp}
        return (q.astype(np.float64) - zp) * s, {}

    out = []
    for conv, layer in zip(convs, float_layers):
        w, wint = dequant(conv.input[1])
        b, _ = dequant(conv.input[2])
        new = dict(layer, w=w, b=b, **wint)
        xin = producer.get(conv.input[0])
        if xin is not None and xin.op_type == "DequantizeLinear":
            s = float(init[xin.input[1]])
            zp_arr = init[xin.input[2]]
            lo, hi = (0, 255) if zp_arr.dtype == np.uint8 else (-128, 127)
            new["inq"] = [s, float(zp_arr), lo, hi]
        out.append(new)
    return out


def export_onnx_bundle(
    checkpoint: Path,
    out: Path,
    calib_images: list[np.ndarray],
    skip_below: int = 3,
    precision: int = 12,
    extrapolated_levels: int = 2,
    progress: Callable[[str], None] = lambda s: None,
) -> Path:
    """``extrapolated_levels`` adds quality levels below the trained ones by continuing the gain
    vectors geometrically (gain units interpolate and extrapolate; the README reports their
    measured rate and quality), so one model reaches ~0.1 bpp on Kodak."""
    import torch

    from ..models.convert import export_onnx_fp32, float_nets, gains, latent_config, z_prior
    from ..models.rdo import STRENGTH, rd_weights
    from ..models.train import load_checkpoint

    if not calib_images:
        raise ExportError("no calibration images")
    model, state = load_checkpoint(Path(checkpoint))
    model.eval()
    nets = float_nets(model)
    gain, inv_gain = gains(model, extrapolated_levels)
    levels = gain.shape[0]
    progress("running the fp32 model on the calibration images")
    a_feeds, s_feeds, calib_z = [], [], []
    with torch.no_grad():
        for img in calib_images:
            x = model_input(img)
            for q in range(levels):
                g = gain[q].reshape(1, -1, 1, 1).astype(np.float32)
                ig = inv_gain[q].reshape(1, -1, 1, 1).astype(np.float32)
                y = model.g_a(torch.from_numpy(x)) * torch.from_numpy(g)
                z = model.h_a(y)
                y_hat = torch.round(y).clamp(-127, 127).numpy().astype(np.float32)
                a_feeds.append({"x": x, "gain": g})
                s_feeds.append({"y_hat": y_hat, "inv_gain": ig})
                calib_z.append(np.rint(z[0].numpy()).astype(np.int64))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        a32, s32 = Path(tmp) / "analysis.onnx", Path(tmp) / "synthesis.onnx"
        progress("exporting fp32 ONNX graphs")
        export_onnx_fp32(model, a32, s32)
        progress(f"quantizing the analysis to int8 ({len(a_feeds)} calibration inputs)")
        # u8 weights in the analysis: its convs see full-range activations, and ORT's AVX2 (non-VNNI)
        # u8s8 kernels saturate int16 pair sums (measured on Kodak: -7 dB with s8 weights; 7-bit
        # s8 weights (reduce_range) cost +2% rate more than u8 weights)
        _quantize(a32, out / ANALYSIS, a_feeds, _fp32_nodes(a32, "analysis"), unsigned_weights=True)
        float_outputs(out / ANALYSIS, ["y", "z"])
        progress(f"quantizing the synthesis to int8 ({len(s_feeds)} calibration inputs)")
        _quantize(s32, out / SYNTHESIS, s_feeds, _fp32_nodes(s32, "synthesis"), unsigned_weights=False, overrides=_pixel_grid(s32))
        for name in (ANALYSIS, SYNTHESIS):
            half_float_weights(out / name)
    n_ga = len(nets["g_a"])
    a_layers = qdq_layers(out / ANALYSIS, nets["g_a"] + nets["h_a"])
    qnets = {"g_a": a_layers[:n_ga], "h_a": a_layers[n_ga:], "g_s": qdq_layers(out / SYNTHESIS, nets["g_s"]), "h_s": nets["h_s"]}
    progress("building the integer hyper-decoder and CDF tables")
    cfg = latent_config(model, skip_below, precision)
    meta = {
        "name": "edgecodec-hyperprior",
        "train_step": int(state.get("step", 0)),
        "qat_step": int(state.get("qat_step", 0)),  # quantization-aware fine-tuning of the synthesis (models/qat.py)
        "architecture": model.config.to_dict(),
        "extrapolated_levels": extrapolated_levels,
    }
    build_core_bundle(out, cfg, qnets, gain, inv_gain, *z_prior(model), calib_z, meta)
    add_artifact(out, "onnx", {"analysis": ANALYSIS, "synthesis": SYNTHESIS}, {"precision": "int8", "format": "QDQ", "opset": 17})
    progress("measuring the synthesis response for the encoder's rate-distortion rounding")
    write_rd_weights(out, rd_weights(model, calib_images[0], gain, inv_gain, extrapolated_levels), STRENGTH)
    write_reference(out)
    return out


def write_reference(out: Path) -> None:
    """Reference outputs of the numpy backend on a real photo crop at the lowest and highest quality:
    the check every backend must pass on the host before selection uses it (``runtimes.selection``)."""
    from ..bundle import Bundle
    from ..runtimes.numpy_backend import NumpyBackend
    from ..runtimes.selection import make_reference
    from .registry import validation_images

    bundle = Bundle(out)
    crop = validation_images()[1][:, :, :3]  # 256x256 of foliage and feathers: latents at every scale
    np.savez_compressed(out / "reference.npz", **make_reference(bundle, NumpyBackend(bundle), crop))
    add_artifact(out, "reference", {"arrays": "reference.npz"}, {"made_by": "numpy"})
