"""The decoder core imports with numpy alone (Raspberry Pi, Android/Chaquopy)."""

import subprocess
import sys

HEAVY = ["torch", "onnx", "cv2", "typer", "onnxruntime", "openvino", "tflite_runtime", "ai_edge_litert", "tensorflow", "PIL"]

SCRIPT = f"""
import sys
import edgecodec, edgecodec.codec, edgecodec.bundle, edgecodec.container, edgecodec.runtimes
import edgecodec.entropy.rans, edgecodec.entropy.latents, edgecodec.runtimes.numpy_backend
from edgecodec.runtimes.base import backend_class
backend_class("onnxruntime")  # naming a backend must not import its runtime
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""


def test_core_imports_no_heavy_package():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
