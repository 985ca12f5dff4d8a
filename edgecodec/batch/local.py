"""The local engine: worker processes on this machine, each loading the model once.

The driver keeps every worker's in-flight tasks (at most ``DEPTH``, so a worker never waits for
the driver yet a huge corpus is never queued in memory). A worker that dies (killed, out of memory,
a crash in a runtime) is noticed from its process sentinel: the one task it was running is handed
to a fresh worker, up to ``MAX_ATTEMPTS`` times, then recorded as failed; the tasks queued behind
it are handed on without counting an attempt. Workers are started with 'spawn': forking a process
that has runtime thread pools is unsafe.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing.connection import wait

from ..errors import EdgecodecError
from .journal import Task
from .work import Settings, Worker

DEPTH = 2  # tasks sent ahead to each worker
MAX_ATTEMPTS = 3  # worker processes that may die on one file before it is recorded as failed
MAX_DEATHS = 20  # dead workers in one run before the job stops (something is wrong with all of them)


def _worker_main(conn, settings: Settings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    try:
        worker = Worker(settings)
    except Exception as e:
        conn.send(("init failed", str(e)))
        return
    conn.send(("ready", worker.name))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if task is None:
            return
        out = worker.run(task)
        try:
            conn.send(("result", out))
        except (BrokenPipeError, OSError):
            return


# numpy's BLAS (and OpenMP in some runtimes) start a thread per core in every process unless told
# otherwise: N workers would each spin on every core, and measured here 2 workers then ran 1.12x one
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def thread_environment(threads: int) -> dict[str, str]:
    """The environment variables that hold a worker's libraries to ``threads`` (the user's own win)."""
    return {k: os.environ.get(k, str(threads)) for k in THREAD_VARIABLES}


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Proc:
    def __init__(self, ctx, settings: Settings):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, settings), daemon=True)
        with _environment(thread_environment(settings.threads)):  # a spawned child copies os.environ at start
            self.proc.start()
        child.close()
        self.inflight: deque[Task] = deque()
        self.ready = False


class LocalEngine:
    name = "local"

    def __init__(self, settings: Settings, workers: int):
        self.settings = settings
        self.workers = workers
        self.pids: list[int] = []
        self.deaths = 0  # worker processes that died in the last run (each may have left a temporary file)

    def describe(self) -> str:
        return f"{self.workers} worker process{'es' if self.workers > 1 else ''} x {self.settings.threads} runtime thread(s)"

    def run(self, tasks: Iterator[Task], on_result: Callable[[Task, dict], None]) -> None:
        source = iter(tasks)
        first = next(source, None)
        if first is None:  # everything settled: no worker to start
            return
        ctx = mp.get_context("spawn")
        procs = [_Proc(ctx, self.settings) for _ in range(self.workers)]
        retry: deque[Task] = deque([first])
        exhausted = False
        self.deaths = 0

        def next_task() -> Task | None:
            nonlocal exhausted
            if retry:
                return retry.popleft()
            if exhausted:
                return None
            t = next(source, None)
            exhausted = t is None
            return t

        try:
            while True:
                for p in procs:
                    while p.ready and len(p.inflight) < DEPTH:
                        t = next_task()
                        if t is None:
                            break
                        p.inflight.append(t)
                        try:
                            p.conn.send(t)
                        except (BrokenPipeError, OSError):  # it died: its sentinel fires next, and its tasks move on
                            p.ready = False
                if exhausted and not retry and not any(p.inflight for p in procs):
                    break
                by_handle = {}
                for p in procs:
                    by_handle[p.conn] = p
                    by_handle[p.proc.sentinel] = p
                for h in wait(list(by_handle)):
                    p = by_handle[h]
                    if p not in procs:  # already replaced this round
                        continue
                    msg = None
                    if h is p.conn:
                        try:
                            msg = p.conn.recv()
                        except (EOFError, OSError):
                            msg = None
                    if msg is None:  # the sentinel fired, or the pipe broke: the process is gone
                        self.deaths += 1
                        if self.deaths > MAX_DEATHS:
                            raise EdgecodecError(f"{self.deaths} worker processes died; stopping (last exit code {p.proc.exitcode})")
                        p.proc.join(5)
                        why = _death(p.proc.exitcode)
                        if p.inflight:
                            dead = p.inflight.popleft()  # the task it was running; those behind it never started
                            if dead.attempts + 1 >= MAX_ATTEMPTS:
                                on_result(dead, {"state": "failed", "error": f"the worker {why}, {MAX_ATTEMPTS} times on this file"})
                            else:
                                retry.append(replace(dead, attempts=dead.attempts + 1))
                            retry.extend(p.inflight)
                        procs[procs.index(p)] = _Proc(ctx, self.settings)
                    elif msg[0] == "ready":
                        p.ready = True
                        self.pids = [q.proc.pid for q in procs]
                    elif msg[0] == "init failed":
                        raise EdgecodecError(f"a worker could not load the model: {msg[1]}")
                    else:
                        on_result(p.inflight.popleft(), msg[1])
        finally:
            for p in procs:
                try:
                    p.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
            for p in procs:
                p.proc.join(2)
                if p.proc.is_alive():
                    p.proc.kill()
                    p.proc.join()


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"process was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"process was killed by signal {-code}"
    return f"process exited with code {code}"
