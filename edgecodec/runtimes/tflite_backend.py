"""TFLite (LiteRT) backend: runs the bundle's int8 ``.tflite`` transforms (``edgecodec export --target tflite``) on the CPU.

The runtime is ``ai_edge_litert`` (``pip install 'edgecodec[tflite]'``); the older
``tflite_runtime`` wheel is used only under numpy < 2, which it was built for. The
default XNNPACK delegate runs the int8 kernels with ``threads`` threads. The models
take NHWC with dynamic H and W: one interpreter per role, resized when the input
shape changes.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from ..errors import BackendUnavailableError
from .base import Backend

TARGET = "tflite"
_INPUTS = {"analysis": ("x", "gain"), "synthesis": ("y_hat", "inv_gain"), "fast_synthesis": ("y_hat", "inv_gain")}
_OUTPUTS = {"analysis": ("y", "z"), "synthesis": ("x_hat",), "fast_synthesis": ("x_hat",)}


def _runtime_module() -> str | None:
    """Module that provides ``Interpreter``, or None when no usable runtime is installed."""
    if importlib.util.find_spec("ai_edge_litert") is not None:
        return "ai_edge_litert.interpreter"
    if importlib.util.find_spec("tflite_runtime") is not None and int(np.__version__.split(".")[0]) < 2:
        return "tflite_runtime.interpreter"  # tflite-runtime 2.14 crashes under numpy 2
    return None


class _Model:
    """One interpreter with its signature's input/output tensor indexes and the last input shape."""

    def __init__(self, interpreter_cls, path: str, role: str, threads: int | None):
        self.it = interpreter_cls(model_path=path, num_threads=int(threads) if threads else None)
        sigs = self.it.get_signature_list()
        runner = self.it.get_signature_runner(next(iter(sigs)))
        ins, outs = runner.get_input_details(), runner.get_output_details()
        self.inputs = [ins[n]["index"] for n in _INPUTS[role]]
        self.outputs = [outs[n]["index"] for n in _OUTPUTS[role]]
        self.shapes: tuple | None = None

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        shapes = tuple(a.shape for a in arrays)
        if shapes != self.shapes:
            for idx, shape in zip(self.inputs, shapes):
                self.it.resize_tensor_input(idx, list(shape))
            self.it.allocate_tensors()
            self.shapes = shapes
        for idx, a in zip(self.inputs, arrays):
            self.it.set_tensor(idx, a)
        self.it.invoke()
        return [self.it.get_tensor(idx) for idx in self.outputs]


class TfliteBackend(Backend):
    name = "tflite"
    extra = "tflite"
    target = TARGET
    memory_per_pixel = {"analysis": 170, "synthesis": 105}  # peak bytes per window pixel in a whole encode/decode (benchmarks/memory.py)

    @classmethod
    def probe(cls) -> str | None:
        if _runtime_module() is None:
            return "no TFLite runtime is installed (pip install 'edgecodec[tflite]')"
        return None

    def __init__(self, bundle, device: str | None = None, threads: int | None = None):
        super().__init__(bundle, device, threads)
        if (device or "CPU").upper() != "CPU":
            raise BackendUnavailableError(f"the tflite backend runs on the CPU only, not {device!r}")
        self.device = "CPU"
        self._module = _runtime_module()
        self._models: dict[str, _Model] = {}

    def _model(self, role: str) -> _Model:
        mdl = self._models.get(role)
        if mdl is None:
            interpreter_cls = importlib.import_module(self._module).Interpreter
            path = self.bundle.artifact(TARGET, role)
            mdl = self._models[role] = _Model(interpreter_cls, str(path), role, self.threads)
        return mdl

    def analysis(self, x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = gain.shape[1]
        y, z = self._model("analysis")(
            np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32),
            np.ascontiguousarray(gain, dtype=np.float32).reshape(1, 1, 1, m),
        )
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2)), np.ascontiguousarray(z.transpose(0, 3, 1, 2))

    def fast_synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        return self.synthesis(y_hat, inv_gain, "fast_synthesis")

    def synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray, role: str = "synthesis") -> np.ndarray:
        m = inv_gain.shape[1]
        (x_hat,) = self._model(role)(
            np.ascontiguousarray(y_hat.transpose(0, 2, 3, 1), dtype=np.float32),
            np.ascontiguousarray(inv_gain, dtype=np.float32).reshape(1, 1, 1, m),
        )
        return np.ascontiguousarray(x_hat.transpose(0, 3, 1, 2))

    def executed_ops(self, role: str) -> list[tuple[str, str]]:
        """(op name, dtype of its first input) for every op of the ``role`` model, in execution order.

        Ops that a delegate took over are listed by their own name (the DELEGATE node
        itself is left out), so ``("CONV_2D", "int8")`` means an int8 convolution.
        """
        it = self._model(role).it
        dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
        out = []
        for op in it._get_ops_details():
            if op["op_name"] == "DELEGATE":
                continue
            first = next((i for i in op["inputs"] if i >= 0), None)
            out.append((op["op_name"], dtypes.get(first, "")))
        return out

    def describe(self) -> dict:
        version = ""
        try:
            from importlib import metadata

            version = metadata.version("ai-edge-litert" if self._module.startswith("ai_edge") else "tflite-runtime")
        except Exception:
            pass
        return {**super().describe(), "runtime": self._module.split(".")[0], "version": version, "precision": "int8"}
