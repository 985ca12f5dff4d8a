"""What one batch worker does to one file, whatever engine runs it (a local process or a Ray actor).

A worker loads the model and its runtime once, then turns tasks into result dicts (plain data, so
they cross process and node boundaries cheaply: the reconstruction never leaves the worker). Every
output is renamed into place complete (``io.atomic_write``); a bad file becomes a 'failed' result
with its one-line error, never an exception that would stop the job.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import numpy as np

from .journal import Task

ENCODE, DECODE = "encode", "decode"


@dataclass(frozen=True)
class Settings:
    mode: str  # ENCODE (images -> .edgc) or DECODE (.edgc -> PNG)
    quality: float | None = None
    target_psnr: float | None = None
    decode_check: bool = False
    backend: str = "auto"
    model: str | None = None  # bundle folder; None: the shipped one
    model_digest: str = ""
    threads: int = 1  # runtime threads per worker
    max_memory: int | None = None

    def key(self) -> str:
        """What shapes the outputs: a file done under another key is redone."""
        from .journal import settings_key

        if self.mode == DECODE:
            return settings_key({"mode": DECODE, "model": self.model_digest})
        return settings_key({"mode": ENCODE, "model": self.model_digest, "quality": self.quality, "target_psnr": self.target_psnr})

    def memory(self) -> dict:
        """``max_memory`` as codec's keyword, none when unset (the library's default)."""
        return {"max_memory": self.max_memory} if self.max_memory else {}


class Worker:
    """The model and runtime of one worker process, loaded once."""

    def __init__(self, settings: Settings):
        from ..bundle import Bundle
        from ..runtimes.base import open_backend

        self.settings = settings
        self.bundle = Bundle(settings.model)
        self.backend = open_backend(settings.backend, self.bundle, threads=settings.threads)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, task: Task) -> dict:
        from ..errors import EdgecodecError

        t0 = time.perf_counter()
        try:
            out = self._encode(task) if self.settings.mode == ENCODE else self._decode(task)
            out["state"] = "done"
        except EdgecodecError as e:
            out = {"state": "failed", "error": str(e)}
        except MemoryError:
            out = {"state": "failed", "error": "out of memory (try --max-memory or fewer --workers)"}
        except Exception as e:  # a bug must not stop a million-file job: record it, go on
            out = {"state": "failed", "error": f"internal error: {type(e).__name__}: {e}"}
        out["seconds"] = time.perf_counter() - t0
        out["worker"] = self.name
        return out

    def _encode(self, task: Task) -> dict:
        from .. import codec
        from ..io import atomic_write, read_image

        s = self.settings
        img = read_image(task.src)
        if s.target_psnr is not None:
            res = codec.encode(img, None, self.backend, self.bundle, target_psnr=s.target_psnr, **s.memory())
        else:
            res = codec.encode(img, s.quality, self.backend, self.bundle, **s.memory())
        atomic_write(task.dst, res.data, force=True)
        if s.decode_check:
            self._check(task, res.reconstruction)
        m = res.metrics
        return {
            "out_bytes": len(res.data),
            "width": res.width,
            "height": res.height,
            "bpp": res.bpp,
            "psnr": m.psnr,
            "ms_ssim": m.ms_ssim,
            "max_error": m.max_error,
        }

    def _check(self, task: Task, reconstruction: np.ndarray) -> None:
        """Decode the file as written and compare with what the encoder measured; a mismatch removes
        the output (the journal must never call a file done that does not decode to its metrics)."""
        from .. import codec
        from ..errors import EdgecodecError

        with open(task.dst, "rb") as f:
            data = f.read()
        try:
            decoded = codec.decode(data, self.backend, self.bundle).image
            if decoded.shape != reconstruction.shape:
                raise EdgecodecError(f"decode check: decoded {decoded.shape}, the encoder made {reconstruction.shape}")
            diff = int(np.max(np.abs(decoded.astype(np.int32) - reconstruction.astype(np.int32)), initial=0))
            if diff:
                raise EdgecodecError(f"decode check: the decoded image differs from the encoder's reconstruction by up to {diff} levels")
        except EdgecodecError as e:
            os.unlink(task.dst)
            msg = str(e)
            raise EdgecodecError(msg if msg.startswith("decode check") else f"decode check: {msg}") from None

    def _decode(self, task: Task) -> dict:
        from .. import codec
        from ..io import atomic_write, encode_image

        with open(task.src, "rb") as f:
            data = f.read()
        res = codec.decode(data, self.backend, self.bundle, **self.settings.memory())
        png = encode_image(res.image, ".png")
        atomic_write(task.dst, png, force=True)
        m = res.metrics  # what the encoder stored (v2 files); v1 files carry none
        h, w = res.image.shape[:2]
        return {
            "out_bytes": len(png),
            "width": w,
            "height": h,
            "bpp": 8.0 * len(data) / (w * h),
            "psnr": m.psnr if m else None,
            "ms_ssim": m.ms_ssim if m else None,
            "max_error": m.max_error if m else None,
        }
