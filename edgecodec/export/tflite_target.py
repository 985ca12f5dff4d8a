"""The ``tflite`` target: add int8 TFLite transforms to an existing bundle (made by the onnx target).

The two transforms are re-implemented in a few lines of TensorFlow (NHWC) with the
checkpoint's float weights held in plain ``tf.Variable``s, then converted with
post-training static quantization: int8 weights per output channel, int8 activations
calibrated (min/max) on the calibration images at every quality level of the bundle
(including levels the bundle adds beyond the trained ones). Model inputs and outputs
stay float32.

Differences from PyTorch that the graph takes care of:

* TF 'SAME' padding of a stride-2 5x5 conv is asymmetric (1 before, 2 after), PyTorch's
  ``padding=2`` is symmetric: stride-2 convs use an explicit ``tf.pad`` and 'VALID';
* ``tf.nn.depth_to_space`` reads channel ``(i*r + j)*C + c`` (DCR), PyTorch's
  ``pixel_shuffle`` reads ``c*r*r + i*r + j``: the output channels of every conv in
  front of a depth-to-space are permuted;
* H and W are dynamic (``[1, None, None, C]``) so the runtime can resize the inputs.

Two quantization modes:

* default (mixed), as in the ONNX target (same fp32 layers as onnxruntime runs): the gain
  ``MUL`` and the conv next to it stay fp32 in both transforms, and in the analysis so do the
  conv before that one, the first hyper-analysis conv (it reads the float ``y``) and the last
  one (``z`` is a float output); every other conv is int8. ``y_hat`` enters a float ``MUL`` unquantized, so
  integer latents are exact, and ``y = g_a(x) * gain`` leaves the analysis in full
  precision before the codec rounds it. Measured on kodim23 at every level: decodes agree
  with onnxruntime at > 60 dB and encodes match its rate.
* ``full_integer=True`` (``TFLITE_BUILTINS_INT8``, for integer-only accelerators): the
  calibration data of ``y_hat`` span exactly [-128, 127], so its input quantization is
  scale 1.0 and zero point 0 and every integer passes the input QUANTIZE unchanged (checked).
  But ``inv_gain``, ``y_hat * inv_gain``, ``y`` and ``z`` then sit on per-tensor 8-bit grids
  shared by all levels (``y`` in steps of ~0.8): measured on kodim23, decodes agree with
  onnxruntime at 45 dB at the lowest level but only 37 dB at the highest (1.3 to 3.3 dB below
  it against the original from level 8 up), and TFLite encodes cost 17-23% more rate.

The synthesis output lands on the 8-bit pixel grid: its last conv computes 6x the pixels
with a fused RELU6 (int8 grid [0, 6] in steps of 6/255) and a float ``MUL`` divides by 6.

Node selection for the mixed mode goes through ``tf.lite.experimental.QuantizationDebugger``
(denylisted nodes); the export checks the result: the kept ops are fp32, every other conv int8.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..bundle import add_artifact
from ..codec import model_input
from ..errors import ExportError

ANALYSIS, SYNTHESIS = "analysis.int8.tflite", "synthesis.int8.tflite"
PIXEL_RELU6 = 6.0  # the synthesis' last conv computes 6x the pixels, clamped by a fused RELU6


def d2s_permutation(cout: int, r: int) -> np.ndarray:
    """Conv output channel order that makes TF's depth_to_space (DCR) equal PyTorch's pixel_shuffle."""
    c = cout // (r * r)
    # TF channel (s * c + ch) must carry PyTorch channel (ch * r * r + s), s = i * r + j
    return np.array([ch * r * r + s for s in range(r * r) for ch in range(c)], dtype=np.int64)


def _build_module(nets: dict, m: int):
    """A tf.Module with ``analysis(x, gain) -> (y, z)`` and ``synthesis(y_hat, inv_gain) -> x_hat`` (NHWC)."""
    import tensorflow as tf

    def image_spec(name: str, channels: int):  # NHWC, H and W dynamic
        return tf.TensorSpec([1, None, None, channels], tf.float32, name=name)

    def gain_spec(name: str):
        return tf.TensorSpec([1, 1, 1, m], tf.float32, name=name)

    class Transforms(tf.Module):
        def __init__(self):
            super().__init__(name="edgecodec")
            self.layers = {}
            for net in ("g_a", "h_a", "g_s"):
                out = []
                for i, layer in enumerate(nets[net]):
                    w = np.asarray(layer["w"], np.float64)
                    b = np.asarray(layer["b"], np.float64)
                    r = int(layer["d2s"])
                    if r > 1:
                        perm = d2s_permutation(w.shape[0], r)
                        w, b = w[perm], b[perm]
                    if net == "g_s" and i == len(nets[net]) - 1:  # 6x the output, for the fused RELU6 (see _run)
                        w, b = w * PIXEL_RELU6, b * PIXEL_RELU6
                    wv = tf.Variable(w.transpose(2, 3, 1, 0).astype(np.float32), trainable=False, name=f"{net}_{i}_w")  # HWIO
                    bv = tf.Variable(b.astype(np.float32), trainable=False, name=f"{net}_{i}_b")
                    out.append((wv, bv, int(layer["stride"]), r, bool(layer["relu"])))
                self.layers[net] = out

        @staticmethod
        def _run(layers, x, clip_last: bool = False):
            for i, (w, b, stride, r, relu) in enumerate(layers):
                k = int(w.shape[0])
                if stride == 1:
                    x = tf.nn.conv2d(x, w, 1, "SAME")  # odd k, stride 1: symmetric, as in PyTorch
                else:
                    p = k // 2
                    x = tf.nn.conv2d(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]), w, stride, "VALID")
                x = tf.nn.bias_add(x, b)
                if relu:
                    x = tf.nn.relu(x)
                if clip_last and i == len(layers) - 1:
                    # clamp to [0, 1] on the pixels' own grid (see onnx_target): a separate clip would requantize
                    # the conv's calibrated [-0.21, 1.0] grid (steps of 1.2 pixel levels); RELU6 fuses into the
                    # conv, so the conv's own output grid is [0, 6] in steps of 6/255 = one level of 6x the pixel
                    x = tf.nn.relu6(x)
                if r > 1:
                    x = tf.nn.depth_to_space(x, r)
            return x / PIXEL_RELU6 if clip_last else x  # a float MUL (kept fp32): the exact pixel values

        @tf.function(input_signature=[image_spec("x", 3), gain_spec("gain")])
        def analysis(self, x, gain):
            y = self._run(self.layers["g_a"], x) * gain
            z = self._run(self.layers["h_a"], y)
            return {"y": y, "z": z}

        @tf.function(input_signature=[image_spec("y_hat", m), gain_spec("inv_gain")])
        def synthesis(self, y_hat, inv_gain):
            return {"x_hat": self._run(self.layers["g_s"], y_hat * inv_gain, clip_last=True)}

    return Transforms()


def _converter(module, fn):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], module)


def _ops(content: bytes) -> tuple[list[tuple[str, str, list[str], list[str]]], dict[str, str]]:
    """The ops of a TFLite model as (op name, dtype of its first input, input names, output names),
    and the tensor name of each signature output."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content)
    t = {d["index"]: d for d in it.get_tensor_details()}
    ops = []
    for op in it._get_ops_details():
        ins = [i for i in op["inputs"] if i >= 0]
        dtype = np.dtype(t[ins[0]]["dtype"]).name if ins else ""
        ops.append((op["op_name"], dtype, [t[i]["name"] for i in ins], [t[i]["name"] for i in op["outputs"]]))
    outputs = {k: t[d["index"]]["name"] for k, d in it.get_signature_runner().get_output_details().items()}
    return ops, outputs


def fp32_nodes(module, fn, role: str) -> list[str]:
    """Output names of the ops kept fp32 in the mixed conversion, as in the ONNX target: the gain MUL
    and the conv next to it; in the analysis also the conv before that one, the first hyper-analysis
    conv (it reads the float y) and the last one (z is a float output); in the synthesis the output
    MUL by 1/6."""
    ops, outputs = _ops(_converter(module, fn).convert())  # the float model: same node names as the calibrated one
    muls = [op for op in ops if op[0] == "MUL"]
    # the synthesis ends with a MUL by 1/6 (see _run), kept fp32 so the output is exactly on the pixel grid
    out_muls = [op for op in muls if outputs.get("x_hat") in op[3]]
    muls = [op for op in muls if op not in out_muls]
    if len(muls) != 1:
        raise ExportError(f"the float {role} graph has {len(muls)} gain MUL ops, expected 1")
    mul = muls[0]
    if role == "analysis":  # the convs on either side of the gain MUL (y stays float into h_a), the one making z,
        # and the analysis conv before the last one (see onnx_target._fp32_nodes)
        convs = [op for op in ops if op[0] == "CONV_2D" and (set(op[3]) & set(mul[2]) or set(op[2]) & set(mul[3]))]
        convs += [op for op in ops if op[0] == "CONV_2D" and outputs["z"] in op[3]]
        producer = {o: op for op in ops for o in op[3]}
        last = next((op for op in convs if set(op[3]) & set(mul[2])), None)
        op = producer.get(last[2][0]) if last else None
        while op is not None and op[0] != "CONV_2D":  # back through the PAD of the stride-2 conv
            op = producer.get(op[2][0])
        convs += [op] if op is not None else []
        want = 4
    else:  # the conv that consumes the inverse-gain MUL's output
        convs = [op for op in ops if op[0] == "CONV_2D" and set(op[2]) & set(mul[3])]
        want = 1
    if len(convs) != want:
        raise ExportError(f"cannot find the convs to keep fp32 in the float {role} graph")
    return [mul[3][0]] + [op[3][0] for op in convs + out_muls]


def _convert(module, fn, dataset: list[dict[str, np.ndarray]], keep_fp32: list[str]) -> bytes:
    """int8 conversion; ``dataset`` items are keyed by input name (the model orders its inputs by name).

    ``keep_fp32`` empty: full integer (``TFLITE_BUILTINS_INT8``); else those nodes stay fp32 and
    everything else is int8 (selective quantization through the quantization debugger).
    """
    import tensorflow as tf

    conv = _converter(module, fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: iter(dataset)
    conv.inference_input_type = tf.float32
    conv.inference_output_type = tf.float32
    if not keep_fp32:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return conv.convert()
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(keep_fp32), fully_quantize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the debugger still uses the deprecated tf.lite.Interpreter
        debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=lambda: iter(dataset[:1]), debug_options=options)
        return debugger.get_nondebug_quantized_model()


def _check_precision(content: bytes, role: str, keep_fp32: list[str]) -> None:
    """Every conv is int8 except the ones kept fp32 on purpose, which must be fp32 (no silent fallback)."""
    for name, dtype, _, outs in _ops(content)[0]:
        if name not in ("CONV_2D", "MUL"):
            continue
        want = "float32" if set(outs) & set(keep_fp32) else "int8"
        if dtype != want:
            raise ExportError(f"the TFLite {role} runs {name} {outs[0]!r} in {dtype}, expected {want}")


def input_quantization(model: bytes | Path, name: str) -> tuple[float, int] | None:
    """(scale, zero point) of the QUANTIZE op that the graph applies to its float input ``name``;
    None when the input is used in float (not quantized at all)."""
    from ai_edge_litert.interpreter import Interpreter

    content = model.read_bytes() if isinstance(model, Path) else model
    it = Interpreter(model_content=content)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    inp = it.get_signature_runner().get_input_details().get(name)
    if inp is None:
        raise ExportError(f"the TFLite model has no input named {name!r}")
    if inp["dtype"] != np.float32:
        scale, zp = inp["quantization"]
        return float(scale), int(zp)
    consumers = [op for op in it._get_ops_details() if inp["index"] in op["inputs"]]
    quantize = [op for op in consumers if op["op_name"] == "QUANTIZE"]
    if not quantize:
        return None
    scale, zp = tensors[quantize[0]["outputs"][0]]["quantization"]
    return float(scale), int(zp)


def export_tflite(
    weights_dir: Path,
    bundle_dir: Path,
    calib_images: list[np.ndarray],
    progress: Callable[[str], None] = lambda s: None,
    full_integer: bool = False,
) -> Path:
    """Add ``analysis.int8.tflite`` and ``synthesis.int8.tflite`` to the bundle at ``bundle_dir``.

    ``full_integer=False`` (default): the gain multiplies and the convs next to them stay fp32, as in
    the ONNX target; ``True``: every op is int8 (for integer-only accelerators), which costs quality at
    the high-rate levels (see the module docstring).
    """
    import tensorflow as tf

    from ..bundle import Bundle
    from ..models.convert import float_nets
    from ..models.train import load_checkpoint

    if not calib_images:
        raise ExportError("no calibration images")
    bundle_dir = Path(bundle_dir)
    t0 = time.perf_counter()
    model, _ = load_checkpoint(Path(weights_dir))
    nets = float_nets(model)
    m = model.config.m_latent
    del model
    # the bundle's gain vectors: every level a stream can ask for (the bundle may add levels beyond the trained ones)
    bundle = Bundle(bundle_dir)
    gain, inv_gain = (np.asarray(bundle.transforms[k], np.float32) for k in ("gain", "inv_gain"))
    if gain.shape[1] != m or bundle.latent.y_channels != m:
        raise ExportError(f"the weights in {weights_dir} have {m} latent channels but the bundle at {bundle_dir} has {gain.shape[1]}")
    levels = gain.shape[0]
    module = _build_module(nets, m)

    progress(f"running the float TensorFlow graph on {len(calib_images)} calibration images x {levels} quality levels")
    a_data, s_data = [], []
    for img in calib_images:
        x = np.ascontiguousarray(model_input(img).transpose(0, 2, 3, 1))
        for q in range(levels):
            g = gain[q].reshape(1, 1, 1, m).astype(np.float32)
            ig = inv_gain[q].reshape(1, 1, 1, m).astype(np.float32)
            y = module.analysis(tf.constant(x), tf.constant(g))["y"].numpy()
            a_data.append({"x": x, "gain": g})
            s_data.append({"y_hat": np.clip(np.rint(y), -127, 127).astype(np.float32), "inv_gain": ig})
    if full_integer:
        # y_hat's calibrated range must be exactly [-128, 127]: scale 1.0 and zero point 0 (see module docstring).
        # The two extremes go where the inverse gain is smallest, so they do not widen the range of y_hat * inv_gain.
        q_min, c_min = np.unravel_index(np.argmin(inv_gain), inv_gain.shape)
        probe = s_data[int(q_min)]["y_hat"] = s_data[int(q_min)]["y_hat"].copy()
        probe[0, 0, 0, c_min], probe[0, -1, -1, c_min] = -128.0, 127.0

    kind = "full-integer int8" if full_integer else "int8 (gain multiply and its conv fp32)"
    out = {}
    for role, fn, data in (("analysis", module.analysis, a_data), ("synthesis", module.synthesis, s_data)):
        keep = [] if full_integer else fp32_nodes(module, fn, role)
        progress(f"converting the {role} to {kind} TFLite ({len(data)} calibration inputs)")
        out[role] = _convert(module, fn, data, keep)
        _check_precision(out[role], role, keep)
    yq = input_quantization(out["synthesis"], "y_hat")
    if yq != ((1.0, 0) if full_integer else None):
        raise ExportError(f"the TFLite synthesis quantizes y_hat with (scale, zero point) {yq}, so integer latents are not exact")
    (bundle_dir / ANALYSIS).write_bytes(out["analysis"])
    (bundle_dir / SYNTHESIS).write_bytes(out["synthesis"])
    meta = {"precision": "int8", "full_integer": bool(full_integer), "tensorflow": tf.__version__}
    add_artifact(bundle_dir, "tflite", {"analysis": ANALYSIS, "synthesis": SYNTHESIS}, meta)
    progress(f"wrote {ANALYSIS} and {SYNTHESIS} ({time.perf_counter() - t0:.0f} s)")
    return bundle_dir
