"""The fp32 PyTorch model as a ``Backend``: the reference the int8 artifacts are measured against.

Used by the benchmarks (int8 vs fp32 of the same model, through the same
integer entropy model and container); not a deployment backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..runtimes.base import Backend
from .convert import AnalysisGraph, SynthesisGraph
from .train import load_checkpoint


class TorchBackend(Backend):
    name = "torch-fp32"

    def __init__(self, bundle, checkpoint: str | Path, threads: int | None = None):
        super().__init__(bundle, "CPU", threads)
        if threads:
            torch.set_num_threads(int(threads))
        model, _ = load_checkpoint(Path(checkpoint))
        model.eval()
        self.model = model
        self._a, self._s = AnalysisGraph(model), SynthesisGraph(model)

    @torch.no_grad()
    def analysis(self, x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, z = self._a(torch.from_numpy(x), torch.from_numpy(gain))
        return y.numpy(), z.numpy()

    @torch.no_grad()
    def synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        return self._s(torch.from_numpy(y_hat), torch.from_numpy(inv_gain)).numpy()

    def describe(self) -> dict:
        return {**super().describe(), "version": torch.__version__, "precision": "fp32"}
