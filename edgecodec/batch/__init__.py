"""``edgecodec batch``: transcode a whole folder tree, resumably, on this machine or a Ray cluster.

- ``journal``: the SQLite journal in DST (what is done, with which settings, from which source).
- ``work``: what a worker does to one file (the same code under every engine).
- ``local``: worker processes on this machine (the default engine).
- ``ray_engine``: Ray actors, locally or on a cluster (the 'ray' extra).
- ``job``: the driver: walk, skip what is settled, feed the engine, journal, summarise.
"""

from __future__ import annotations

from .job import Summary, make_settings, run
from .work import DECODE, ENCODE, Settings

ENGINES = ("local", "ray")


def engine(name: str, settings: Settings, workers: int, address: str | None = None):
    """The engine ``name`` for this job. The local engine opens the backend here first, so a missing
    runtime is one error before any worker starts, and 'auto' measures this host once, not per worker."""
    from ..errors import InputError

    if name == "local":
        if address is not None:
            raise InputError("--address needs --engine ray")
        from ..bundle import Bundle
        from ..runtimes.base import open_backend
        from .local import LocalEngine

        open_backend(settings.backend, Bundle(settings.model), threads=settings.threads)
        return LocalEngine(settings, workers)
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(settings, workers, address, num_cpus=None)
    raise InputError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")


__all__ = ["DECODE", "ENCODE", "ENGINES", "Settings", "Summary", "engine", "make_settings", "run"]
