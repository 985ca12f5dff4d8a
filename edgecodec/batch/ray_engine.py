"""The Ray engine (the 'ray' extra): the same job on a Ray cluster, or on this machine.

Actors load the model once each. The driver keeps at most ``DEPTH`` tasks per actor in flight —
a 10-million-file corpus never becomes 10 million futures — and writes the journal itself, so a
worker (or a whole node) that dies loses nothing: Ray restarts the actor and retries its tasks
(``max_restarts``/``max_task_retries``); past that the driver hands the file to another actor, up
to ``MAX_ATTEMPTS`` in all, then records it as failed. Tasks are idempotent (an output is renamed
into place whole, at a path that depends only on the source), so a retried file is done exactly once.

Paths go to the workers as strings: every node must see SRC and DST at the same paths (a shared
filesystem or a mounted object store); plain local folders work on a single node only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from ..errors import BackendUnavailableError, EdgecodecError
from .journal import Task
from .local import DEPTH, MAX_ATTEMPTS, MAX_DEATHS, thread_environment
from .work import Settings, Worker


def _ray():
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError("--engine ray needs Ray: pip install 'edgecodec[ray]'") from None
    return ray


class _Actor:
    def __init__(self, settings: Settings):
        import ray

        self.worker = Worker(settings)
        # Ray restarts a dead actor and retries its tasks without telling the driver: say so in results
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def run(self, task: Task) -> dict:
        return {**self.worker.run(task), "restarted": self.restarted}

    def pid(self) -> int:
        import os

        return os.getpid()


class RayEngine:
    name = "ray"

    def __init__(self, settings: Settings, workers: int | None, address: str | None, num_cpus: int | None = None):
        self.settings = settings
        self.workers = workers
        self.address = address
        self.num_cpus = num_cpus  # for a local ray.init() only
        self.actors: list = []
        self.deaths = 0

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
        n = len(self.actors) or self.workers
        actors = f"{n} Ray actor(s)" if n else f"one Ray actor per {self.settings.threads} cluster CPU(s)"
        return f"{actors} x {self.settings.threads} runtime thread(s) on {where}"

    def _start(self):
        ray = _ray()
        if not ray.is_initialized():
            kw = {"address": self.address} if self.address else {"num_cpus": self.num_cpus}
            try:
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise EdgecodecError(f"cannot start or reach Ray{' at ' + self.address if self.address else ''}: {e}") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = self.workers or max(1, cpus // self.settings.threads)
        self._actor = ray.remote(
            num_cpus=self.settings.threads,
            max_restarts=MAX_ATTEMPTS,
            max_task_retries=MAX_ATTEMPTS - 1,
            runtime_env={"env_vars": thread_environment(self.settings.threads)},
        )(_Actor)
        self.actors = [self._actor.remote(self.settings) for _ in range(n)]
        self.replacements = 0
        return ray

    def run(self, tasks: Iterator[Task], on_result: Callable[[Task, dict], None]) -> None:
        ray = self._start()
        from ray.exceptions import RayActorError, RayError

        load = [0] * len(self.actors)
        inflight: dict = {}  # ObjectRef -> (task, actor index, actor)
        retry: list[Task] = []
        restarted: set[int] = set()
        self.deaths = 0  # actors that died in this run (each may have left a temporary file)
        source = iter(tasks)
        exhausted = False
        while True:
            while len(inflight) < DEPTH * len(self.actors):
                if retry:
                    t = retry.pop()
                elif not exhausted:
                    t = next(source, None)
                    exhausted = t is None
                    if t is None:
                        break
                else:
                    break
                a = min(range(len(self.actors)), key=load.__getitem__)
                inflight[self.actors[a].run.remote(t)] = (t, a, self.actors[a])
                load[a] += 1
            if not inflight:
                break
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                t, a, actor = inflight.pop(ref)
                load[a] -= 1
                try:
                    out = ray.get(ref)
                except RayError as e:  # RayActorError among them
                    # past Ray's own restarts and retries: a fresh actor replaces this one, and the
                    # file goes to the least loaded actor, or fails after MAX_ATTEMPTS
                    if isinstance(e, RayActorError) and self.actors[a] is actor:
                        self.deaths += 1
                        self.replacements += 1
                        if self.replacements > MAX_DEATHS:
                            raise EdgecodecError(f"{self.replacements} Ray actors died; stopping") from None
                        self.actors[a] = self._actor.remote(self.settings)
                    if t.attempts + 1 >= MAX_ATTEMPTS:
                        on_result(
                            t, {"state": "failed", "error": f"the Ray worker died {MAX_ATTEMPTS} times on this file ({type(e).__name__})"}
                        )
                    else:
                        retry.append(replace(t, attempts=t.attempts + 1))
                    continue
                if out.pop("restarted", False) and id(actor) not in restarted:
                    restarted.add(id(actor))  # one death noticed per restarted actor
                    self.deaths += 1
                on_result(t, out)

    def worker_pids(self) -> list[int]:
        ray = _ray()
        return ray.get([a.pid.remote() for a in self.actors])

    def close(self) -> None:
        ray = _ray()
        for a in self.actors:
            ray.kill(a)
        self.actors = []
