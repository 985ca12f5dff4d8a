"""ONNX Runtime backend: runs the bundle's int8 QDQ analysis and synthesis graphs."""

from __future__ import annotations

import numpy as np

from ..errors import BackendUnavailableError
from .base import Backend


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    extra = "onnxruntime"
    runtime_module = "onnxruntime"
    target = "onnx"
    memory_per_pixel = {"analysis": 440, "synthesis": 230}  # peak bytes per window pixel in a whole encode/decode (benchmarks/memory.py)

    PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "DML": "DmlExecutionProvider",
                 "OPENVINO": "OpenVINOExecutionProvider", "COREML": "CoreMLExecutionProvider", "QNN": "QNNExecutionProvider",
                 "NNAPI": "NnapiExecutionProvider", "XNNPACK": "XnnpackExecutionProvider"}  # fmt: skip

    @classmethod
    def devices(cls) -> list[str]:
        import onnxruntime as ort

        names = {v: k for k, v in cls.PROVIDERS.items()}
        return [names.get(p, p) for p in ort.get_available_providers() if p != "AzureExecutionProvider"]

    def __init__(self, bundle, device: str | None = None, threads: int | None = None):
        super().__init__(bundle, device, threads)
        import onnxruntime as ort

        provider = self.PROVIDERS.get((device or "CPU").upper(), device)
        if provider not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"onnxruntime has no execution provider {device!r} here (available: {', '.join(ort.get_available_providers())})"
            )
        self.device = device or "CPU"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        # no busy-waiting after a run: a backend holds up to three sessions (analysis, synthesis, fast
        # synthesis) and the parse runs between them; idle threads spinning took the cores from both
        # (kodim23 decode alternating full and fast: 163-168 -> 119-133 ms full, 88-115 -> 67-84 ms fast)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._opts, self._providers = opts, [provider]
        self._sessions: dict[str, object] = {}

    def _session(self, role: str):
        s = self._sessions.get(role)
        if s is None:
            import onnxruntime as ort

            path = self.bundle.artifact("onnx", role)
            s = self._sessions[role] = ort.InferenceSession(str(path), self._opts, providers=self._providers)
        return s

    def analysis(self, x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, z = self._session("analysis").run(None, {"x": x.astype(np.float32), "gain": gain.astype(np.float32)})
        return y, z

    def synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray, role: str = "synthesis") -> np.ndarray:
        (x_hat,) = self._session(role).run(None, {"y_hat": y_hat.astype(np.float32), "inv_gain": inv_gain.astype(np.float32)})
        return x_hat

    def fast_synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        return self.synthesis(y_hat, inv_gain, "fast_synthesis")

    def executed_ops(self, role: str) -> list[tuple[str, str]]:
        """(op type, precision) of every node ORT runs after graph optimization (QDQ fused into int8 kernels)."""
        import os
        import tempfile

        import onnx
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
            opts.log_severity_level = 3
            ort.InferenceSession(str(self.bundle.artifact("onnx", role)), opts, providers=self._providers)
            nodes = onnx.load(opts.optimized_model_filepath).graph.node
        int8 = {"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QLinearAdd", "QLinearMul", "QLinearConcat"}
        return [(n.op_type, "int8" if n.op_type in int8 else "fp32") for n in nodes]

    def describe(self) -> dict:
        import onnxruntime as ort

        return {**super().describe(), "version": ort.__version__, "precision": "int8"}
