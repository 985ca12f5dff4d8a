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
    """The engine ``name`` for this job. For the local engine the backend's runtime is checked here,
    so a missing one is one error before any worker starts (the workers load the model; the driver
    does not). 'auto' measures in the workers, one at a time (``selection``'s lock)."""
    from ..errors import InputError

    if name == "local":
        if address is not None:
            raise InputError("--address needs --engine ray")
        from ..runtimes.base import available_class
        from .local import LocalEngine

        available_class(settings.backend)
        return LocalEngine(settings, workers)
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(settings, workers, address, num_cpus=None)
    raise InputError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")


__all__ = ["DECODE", "ENCODE", "ENGINES", "Settings", "Summary", "engine", "make_settings", "run"]
