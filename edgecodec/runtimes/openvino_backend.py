"""OpenVINO backend: runs the bundle's int8 IR (``edgecodec export --target openvino``).

Devices are OpenVINO device names (``openvino:CPU``, ``openvino:GPU``,
``openvino:NPU``); the default is CPU.

* CPU and GPU take dynamic shapes: each transform is compiled once, with H and W
  left dynamic, and serves every image size.
* NPU compiles static shapes only (and computes in fp16): each transform is
  reshaped to the concrete input shape and one compiled model is cached per
  shape, so the first image of a new size pays a compilation.

Compilation asks for ``INFERENCE_PRECISION_HINT=f32`` on CPU and GPU: without it
the CPU plugin runs the non-quantized layers (the gain multiplies and the convs
next to them, which are fp32 by design) in bf16 on CPUs that have bf16, and the
GPU plugin in fp16. The int8 convolutions stay int8 either way; ``executed_ops``
lists what each executed node actually ran in, ``executed_kernels`` which kernel ran it.

On x86 the int8 kernels depend on the CPU: with VNNI (``brgconv_avx512_I8`` on
AVX-512 VNNI) the products are summed exactly in int32; without it
(``jit_avx2_I8`` on AVX2-only CPUs) pairs of u8 x i8 products are first added in
int16 with saturation. The IR keeps the one conv whose inputs reach that limit
(the first, reading the image) in f32, so both give the same latents (see
``edgecodec.export.openvino_target``). ``ONEDNN_MAX_CPU_ISA=AVX2`` in the
environment makes the CPU plugin's convolutions use the AVX2 kernels on any x86
CPU (``scripts/test-cpu-isa`` uses it).
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendUnavailableError
from .base import Backend

TARGET = "openvino"
_INPUTS = {"analysis": ("x", "gain"), "synthesis": ("y_hat", "inv_gain"), "fast_synthesis": ("y_hat", "inv_gain")}
_OUTPUTS = {"analysis": ("y", "z"), "synthesis": ("x_hat",), "fast_synthesis": ("x_hat",)}


class OpenVinoBackend(Backend):
    name = "openvino"
    extra = "openvino"
    runtime_module = "openvino"
    target = TARGET
    memory_per_pixel = {"analysis": 300, "synthesis": 80}  # peak bytes per window pixel in a whole encode/decode (benchmarks/memory.py)

    @classmethod
    def devices(cls) -> list[str]:
        import openvino as ov

        return list(ov.Core().available_devices)  # e.g. ['CPU', 'GPU.0', 'GPU.1', 'NPU']

    def __init__(self, bundle, device: str | None = None, threads: int | None = None):
        super().__init__(bundle, device, threads)
        import openvino as ov

        self._core = ov.Core()
        device = (device or "CPU").upper()
        available = list(self._core.available_devices)
        if device not in available and device not in {d.split(".")[0] for d in available}:
            raise BackendUnavailableError(f"OpenVINO has no device {device!r} here (available: {', '.join(available) or 'none'})")
        self.device = device
        self._static = device.split(".")[0] == "NPU"
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if not self._static:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._config = config
        self._models: dict[str, object] = {}  # role -> ov.Model (dynamic H, W)
        self._compiled: dict[tuple, tuple] = {}  # (role, shape or None) -> (CompiledModel, InferRequest)

    def _model(self, role: str):
        m = self._models.get(role)
        if m is None:
            m = self._models[role] = self._core.read_model(str(self.bundle.artifact(TARGET, role)))
        return m

    def _request(self, role: str, shape: tuple | None):
        """The compiled model and its infer request for ``role`` (per input shape on static-shape devices)."""
        key = (role, shape if self._static else None)
        hit = self._compiled.get(key)
        if hit is None:
            model = self._model(role)
            if self._static:
                model = model.clone()
                model.reshape({_INPUTS[role][0]: list(shape)})
            try:
                compiled = self._core.compile_model(model, self.device, self._config)
            except RuntimeError as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise BackendUnavailableError(f"OpenVINO could not compile the {role} for {self.device}: {first}") from None
            hit = self._compiled[key] = (compiled, compiled.create_infer_request())
        return hit

    def _run(self, role: str, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        a = np.ascontiguousarray(a, dtype=np.float32)
        b = np.ascontiguousarray(b, dtype=np.float32)
        compiled, request = self._request(role, tuple(a.shape))
        first, second = _INPUTS[role]
        result = request.infer({first: a, second: b})
        return [np.array(result[compiled.output(name)], dtype=np.float32) for name in _OUTPUTS[role]]

    def analysis(self, x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, z = self._run("analysis", x, gain)
        return y, z

    def synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        (x_hat,) = self._run("synthesis", y_hat, inv_gain)
        return x_hat

    def fast_synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        (x_hat,) = self._run("fast_synthesis", y_hat, inv_gain)
        return x_hat

    def _compiled_for(self, role: str):
        if role not in _INPUTS:
            raise ValueError(f"role must be one of {', '.join(_INPUTS)}")
        if self._static:
            keys = [k for k in self._compiled if k[0] == role]
            if not keys:
                raise ValueError(f"{role} has not been compiled for {self.device} yet (static shapes: run it once first)")
            return self._compiled[keys[-1]][0]
        return self._request(role, None)[0]

    def executed_ops(self, role: str) -> list[tuple[str, str]]:
        """(layer type, runtime precision) of every node the compiled ``role`` executes, in graph order.

        On CPU an int8 convolution reads e.g. ``("Convolution", "U8")``; a node
        that fell back to float reads ``"FP32"`` (or ``"BF16"``/``"FP16"``).
        On a static-shape device (NPU) this is the most recently compiled shape;
        it raises ``ValueError`` before the first run there.
        """
        ops = []
        for op in self._compiled_for(role).get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ""
            ops.append((layer, precision))
        return ops

    def executed_kernels(self, role: str) -> list[tuple[str, str]]:
        """(layer type, kernel) of every executed node of ``role``, e.g. ``("Convolution", "jit_avx2_I8")``."""
        ops = []
        for op in self._compiled_for(role).get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            ops.append((layer, info["primitiveType"].astype(str) if "primitiveType" in info else ""))
        return ops

    def describe(self) -> dict:
        import openvino as ov

        return {
            **super().describe(),
            "version": ov.__version__,
            "precision": "int8",
            "inference_precision": self._config.get("INFERENCE_PRECISION_HINT", "device default"),
        }
