"""The ``tflite`` target: add full-integer int8 TFLite transforms to an existing bundle.

The two transforms are re-implemented in a few lines of TensorFlow (NHWC) with the
checkpoint's float weights held in plain ``tf.Variable``s, then converted with
post-training full-integer quantization (``TFLITE_BUILTINS_INT8``): int8 weights per
output channel, int8 activations calibrated (min/max) on the calibration images at
every quality level. The model inputs and outputs stay float32 (QUANTIZE/DEQUANTIZE
at the edges).

Differences from PyTorch that the graph takes care of:

* TF 'SAME' padding of a stride-2 5x5 conv is asymmetric (1 before, 2 after), PyTorch's
  ``padding=2`` is symmetric: stride-2 convs use an explicit ``tf.pad`` and 'VALID';
* ``tf.nn.depth_to_space`` reads channel ``(i*r + j)*C + c`` (DCR), PyTorch's
  ``pixel_shuffle`` reads ``c*r*r + i*r + j``: the output channels of every conv in
  front of a depth-to-space are permuted;
* H and W are dynamic (``[1, None, None, C]``) so the runtime can resize the inputs.

Exactness of the synthesis input: ``y_hat`` holds integers in [-127, 127]. Its
calibration data span exactly [-128, 127], so its input quantization is scale 1.0,
zero point 0 and every integer passes the input QUANTIZE unchanged; the export checks
this and fails otherwise. Unlike the ONNX target, nothing can stay fp32 in a
full-integer model: the gain multiplies and the convs next to them are int8 too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..bundle import add_artifact
from ..errors import ExportError
from .onnx_target import pad_to

ANALYSIS, SYNTHESIS = "analysis.int8.tflite", "synthesis.int8.tflite"


def d2s_permutation(cout: int, r: int) -> np.ndarray:
    """Conv output channel order that makes TF's depth_to_space (DCR) equal PyTorch's pixel_shuffle."""
    c = cout // (r * r)
    # TF channel (s * c + ch) must carry PyTorch channel (ch * r * r + s), s = i * r + j
    return np.array([ch * r * r + s for s in range(r * r) for ch in range(c)], dtype=np.int64)


def _build_module(nets: dict, m: int):
    """A tf.Module with ``analysis(x, gain) -> (y, z)`` and ``synthesis(y_hat, inv_gain) -> x_hat`` (NHWC)."""
    import tensorflow as tf

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
                    wv = tf.Variable(w.transpose(2, 3, 1, 0).astype(np.float32), trainable=False, name=f"{net}_{i}_w")  # HWIO
                    bv = tf.Variable(b.astype(np.float32), trainable=False, name=f"{net}_{i}_b")
                    out.append((wv, bv, int(layer["stride"]), r, bool(layer["relu"])))
                self.layers[net] = out

        @staticmethod
        def _run(layers, x):
            for w, b, stride, r, relu in layers:
                k = int(w.shape[0])
                if stride == 1:
                    x = tf.nn.conv2d(x, w, 1, "SAME")  # odd k, stride 1: symmetric, as in PyTorch
                else:
                    p = k // 2
                    x = tf.nn.conv2d(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]), w, stride, "VALID")
                x = tf.nn.bias_add(x, b)
                if relu:
                    x = tf.nn.relu(x)
                if r > 1:
                    x = tf.nn.depth_to_space(x, r)
            return x

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="x"), tf.TensorSpec([1, 1, 1, m], tf.float32, name="gain")])
        def analysis(self, x, gain):
            y = self._run(self.layers["g_a"], x) * gain
            z = self._run(self.layers["h_a"], y)
            return {"y": y, "z": z}

        @tf.function(
            input_signature=[tf.TensorSpec([1, None, None, m], tf.float32, name="y_hat"), tf.TensorSpec([1, 1, 1, m], tf.float32, name="inv_gain")]
        )
        def synthesis(self, y_hat, inv_gain):
            return {"x_hat": self._run(self.layers["g_s"], y_hat * inv_gain)}

    return Transforms()


def _convert(module, fn, dataset: list[dict[str, np.ndarray]]) -> bytes:
    """Full-integer conversion; ``dataset`` items are keyed by input name (the model orders its inputs by name)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], module)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: iter(dataset)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.float32
    conv.inference_output_type = tf.float32
    return conv.convert()


def input_quantization(model: bytes | Path, name: str) -> tuple[float, int]:
    """(scale, zero point) that the int8 graph gives its float input ``name`` (the QUANTIZE op right after it)."""
    from ai_edge_litert.interpreter import Interpreter

    content = model.read_bytes() if isinstance(model, Path) else model
    it = Interpreter(model_content=content)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    inp = next((d for d in it.get_input_details() if name in d["name"]), None)
    if inp is None:
        raise ExportError(f"the TFLite model has no input named {name!r}")
    if inp["dtype"] != np.float32:
        return tuple(inp["quantization"])
    for op in it._get_ops_details():
        if op["op_name"] == "QUANTIZE" and list(op["inputs"]) == [inp["index"]]:
            out = tensors[op["outputs"][0]]
            scale, zp = out["quantization"]
            return float(scale), int(zp)
    raise ExportError(f"the TFLite model does not quantize its input {name!r}")


def export_tflite(weights_dir: Path, bundle_dir: Path, calib_images: list[np.ndarray], progress: Callable[[str], None] = lambda s: None) -> Path:
    import tensorflow as tf

    from ..models.convert import float_nets, gains
    from ..models.train import load_checkpoint

    if not calib_images:
        raise ExportError("no calibration images")
    bundle_dir = Path(bundle_dir)
    t0 = time.perf_counter()
    model, _ = load_checkpoint(Path(weights_dir))
    nets = float_nets(model)
    gain, inv_gain = gains(model)
    m = model.config.m_latent
    levels = gain.shape[0]
    del model
    module = _build_module(nets, m)

    progress(f"running the float TensorFlow graph on {len(calib_images)} calibration images x {levels} quality levels")
    a_data, s_data = [], []
    for img in calib_images:
        x = np.ascontiguousarray(pad_to(img).transpose(0, 2, 3, 1))
        for q in range(levels):
            g = gain[q].reshape(1, 1, 1, m).astype(np.float32)
            ig = inv_gain[q].reshape(1, 1, 1, m).astype(np.float32)
            y = module.analysis(tf.constant(x), tf.constant(g))["y"].numpy()
            a_data.append({"x": x, "gain": g})
            s_data.append({"y_hat": np.clip(np.rint(y), -127, 127).astype(np.float32), "inv_gain": ig})
    # y_hat's calibrated range must be exactly [-128, 127]: scale 1.0 and zero point 0 (see module docstring).
    # The two extremes go where the inverse gain is smallest, so they do not widen the range of y_hat * inv_gain.
    q_min, c_min = np.unravel_index(np.argmin(inv_gain), inv_gain.shape)
    probe = s_data[int(q_min)]["y_hat"] = s_data[int(q_min)]["y_hat"].copy()
    probe[0, 0, 0, c_min], probe[0, -1, -1, c_min] = -128.0, 127.0

    progress(f"converting the analysis to int8 TFLite ({len(a_data)} calibration inputs)")
    a_bytes = _convert(module, module.analysis, a_data)
    progress(f"converting the synthesis to int8 TFLite ({len(s_data)} calibration inputs)")
    s_bytes = _convert(module, module.synthesis, s_data)
    scale, zp = input_quantization(s_bytes, "y_hat")
    if (scale, zp) != (1.0, 0):
        raise ExportError(f"the int8 synthesis quantizes y_hat with scale {scale} and zero point {zp}, not exactly (1.0, 0)")
    (bundle_dir / ANALYSIS).write_bytes(a_bytes)
    (bundle_dir / SYNTHESIS).write_bytes(s_bytes)
    add_artifact(bundle_dir, "tflite", {"analysis": ANALYSIS, "synthesis": SYNTHESIS}, {"precision": "int8", "tensorflow": tf.__version__})
    progress(f"wrote {ANALYSIS} and {SYNTHESIS} ({time.perf_counter() - t0:.0f} s)")
    return bundle_dir
