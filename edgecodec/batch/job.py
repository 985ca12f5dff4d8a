"""The batch driver: walk SRC, skip what the journal says is settled, feed an engine, journal its
results, and summarise. Engines (``local``, ``ray``) only run tasks; everything a rerun relies on
is here, in one process.

A file is redone when it is not in the journal, was made with other settings, its source changed
since (size or modification time), or its output is missing or of another size. Files that failed
stay failed until their source changes or ``retry_failed`` is given.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..runtimes.base import cores
from .journal import Journal, Task
from .work import DECODE, ENCODE, Settings

CSV_NAME = "edgecodec-batch.csv"
# io.atomic_write's temporary names: '.' + output name + '.' + 8 hex digits + '.tmp'
_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def input_suffixes(mode: str) -> set[str]:
    from ..io import IMAGE_SUFFIXES

    return {".edgc"} if mode == DECODE else set(IMAGE_SUFFIXES)


def output_suffix(mode: str) -> str:
    return ".png" if mode == DECODE else ".edgc"


def walk(root: Path, suffixes: set[str], skip: Path | None = None, warn: Callable[[str], None] | None = None) -> Iterator[os.DirEntry]:
    """Input files under ``root``, depth first in name order, streamed (a huge tree is never listed
    whole). Hidden entries are skipped, and so is ``skip`` (DST when it lies inside SRC); directory
    symlinks are not followed (no loops)."""
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if warn:
                warn(f"cannot read {folder}: {e.strerror or e}")
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    if skip is None or os.path.abspath(e.path) != str(skip):
                        subdirs.append(e.path)
                elif os.path.splitext(e.name)[1].lower() in suffixes and e.is_file():
                    yield e
            except OSError:
                continue
        stack.extend(reversed(subdirs))


def sweep_temporaries(dst: Path) -> None:
    """Remove the temporary files a killed run left (outputs are renamed into place whole)."""
    for folder, _, files in os.walk(dst):
        for f in files:
            if _TEMP.match(f):
                try:
                    os.unlink(os.path.join(folder, f))
                except OSError:
                    pass


@dataclass
class Summary:
    files: int = 0  # input files found
    done_now: int = 0
    skipped: int = 0  # settled by an earlier run
    failed_now: int = 0
    failed_before: int = 0  # settled as failed by an earlier run, source unchanged
    bytes_now: int = 0  # input bytes processed in this run
    seconds: float = 0.0
    totals: dict = field(default_factory=dict)  # the journal's, for the whole job
    slowest: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    csv: Path | None = None
    interrupted: bool = False

    @property
    def failed(self) -> int:
        """Files of this tree that are failed now (the exit code's concern; the journal may also
        hold rows of files since removed from SRC)."""
        return self.failed_now + self.failed_before

    def lines(self) -> list[str]:
        t = self.totals
        rate = (self.done_now + self.failed_now) / self.seconds if self.seconds else 0.0
        mbs = self.bytes_now / 1e6 / self.seconds if self.seconds else 0.0
        out = [
            f"{self.files} files: {self.done_now} done now, {self.skipped} settled before, {self.failed} failed in all"
            f"{' (interrupted: rerun the command to continue)' if self.interrupted else ''}",
            f"this run: {self.seconds:.1f} s, {rate:.2f} files/s, {mbs:.2f} MB/s",
        ]
        if t.get("done"):
            ratio = t["src_bytes"] / t["out_bytes"] if t["out_bytes"] else float("inf")
            bpp = 8.0 * t["out_bytes"] / t["pixels"] if t["pixels"] else 0.0
            out.append(
                f"done: {t['done']} files, {t['src_bytes'] / 1e6:.1f} MB in, {t['out_bytes'] / 1e6:.1f} MB out ({ratio:.1f}x); "
                f"mean {t['mean_bpp']:.3f} bpp ({bpp:.3f} over all pixels), mean PSNR {t['mean_psnr'] or float('nan'):.2f} dB"
            )
        if self.slowest:
            out.append("slowest: " + ", ".join(f"{r} {s:.2f} s" for r, s in self.slowest))
        for rel, err in self.failures:
            out.append(f"failed: {rel}: {err}")
        if self.totals.get("failed", 0) > len(self.failures):
            out.append(f"... and {self.totals['failed'] - len(self.failures)} more failures (see the CSV)")
        if self.csv:
            out.append(f"journal: {self.csv.parent / '.edgecodec-batch.sqlite'}; table: {self.csv}")
        return out


class _Bar:
    """A rich progress bar on stderr with files/s and MB/s (none when rich is absent or disabled)."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.p = None
        self.t0 = time.perf_counter()
        self.files = 0
        self.bytes = 0
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        except ImportError:
            return
        self.p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.task = self.p.add_task(label, total=total, rate="")
        self.p.start()

    def advance(self, processed_bytes: int | None) -> None:
        if processed_bytes is not None:
            self.files += 1
            self.bytes += processed_bytes
        if self.p is not None:
            dt = max(time.perf_counter() - self.t0, 1e-9)
            self.p.update(self.task, advance=1, rate=f"{self.files / dt:.2f} files/s {self.bytes / 1e6 / dt:.2f} MB/s")

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()


def run(
    src: Path,
    dst: Path,
    settings: Settings,
    engine,
    *,
    retry_failed: bool = False,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
    on_record: Callable[[Task, dict], None] | None = None,
) -> Summary:
    """Process every input file under ``src`` into the mirrored tree under ``dst`` with ``engine``.

    Returns the summary; the journal and the CSV are in ``dst``. KeyboardInterrupt stops the job
    after journaling what finished (``Summary.interrupted``)."""
    warn = warn or (lambda line: print(f"warning: {line}", file=sys.stderr))
    src, dst = Path(os.path.abspath(src)), Path(os.path.abspath(dst))
    if not src.is_dir():
        raise InputError(f"{src}: not a directory")
    if dst == src or src.is_relative_to(dst):
        raise InputError(f"{dst}: the destination must not be the source folder or contain it")
    if dst.exists() and not dst.is_dir():
        raise InputError(f"{dst} is not a directory")
    suffixes, new_suffix = input_suffixes(settings.mode), output_suffix(settings.mode)
    skip = dst if dst.is_relative_to(src) else None
    journal = Journal(dst)
    key = settings.key()
    summary = Summary()
    run_id, crashed = journal.begin_run(key)
    if crashed:
        sweep_temporaries(dst)
    # a first walk only counts (d_type, no stat) for the bar's total; the second streams the tasks, so
    # a huge tree is never held in memory
    summary.files = sum(1 for _ in walk(src, suffixes, skip))
    bar = _Bar(progress, summary.files, "decoding" if settings.mode == DECODE else "encoding")
    t0 = time.perf_counter()

    def record(task: Task, out: dict) -> None:
        journal.record(task, key, out)
        if out.get("state") == "done":
            summary.done_now += 1
        else:
            summary.failed_now += 1
        summary.bytes_now += task.size
        bar.advance(task.size)
        if on_record:
            on_record(task, out)

    def tasks() -> Iterator[Task]:
        outputs: dict[str, str] = {}  # output path -> source, within the current folder
        folder = None
        for e in walk(src, suffixes, skip, warn):
            rel = os.path.relpath(e.path, src)
            out = str(dst / os.path.splitext(rel)[0]) + new_suffix
            if os.path.dirname(rel) != folder:
                folder, outputs = os.path.dirname(rel), {}
            try:
                st = e.stat()
            except OSError as err:
                warn(f"{rel}: {err.strerror or err}")
                continue
            task = Task(rel.replace(os.sep, "/"), e.path, out, st.st_size, st.st_mtime_ns)
            if out in outputs:
                record(task, {"state": "failed", "error": f"its output {out} would overwrite that of {outputs[out]}; rename one"})
                continue
            outputs[out] = rel
            row = journal.settled(task, key, retry_failed)
            if row is not None:
                summary.skipped += 1
                summary.failed_before += row["state"] == "failed"
                bar.advance(None)
                continue
            yield task

    status = "error"
    try:
        engine.run(tasks(), record)
        status = "complete"
    except KeyboardInterrupt:
        summary.interrupted = True
        status = "interrupted"
    finally:
        bar.close()
        if getattr(engine, "deaths", 0):  # a worker killed mid-write left its temporary file
            sweep_temporaries(dst)
        summary.seconds = time.perf_counter() - t0
        journal.end_run(run_id, status)
        summary.totals = journal.totals(key)
        summary.slowest = journal.slowest(key)
        summary.failures = journal.failures(key)
        from ..io import atomic_write

        summary.csv = dst / CSV_NAME
        atomic_write(summary.csv, journal.csv_bytes(key), force=True)
        journal.close()
    return summary


def make_settings(
    mode: str,
    *,
    quality: float | None = None,
    target_psnr: float | None = None,
    decode_check: bool = False,
    backend: str = "auto",
    model: Path | None = None,
    workers: int | None = None,
    threads: int | None = None,
    max_memory: int | None = None,
) -> tuple[Settings, int]:
    """The job's settings and worker count: workers x runtime threads = the cores of this machine
    (unless given). Checks the arguments and the model bundle before any worker starts."""
    from ..bundle import Bundle, quality_steps

    if mode not in (ENCODE, DECODE):
        raise InputError(f"unknown batch mode {mode!r}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    bundle = Bundle(model)
    if mode == ENCODE:
        if quality is not None and target_psnr is not None:
            raise InputError("--quality and --target-psnr exclude each other: give one")
        if target_psnr is None:
            quality = quality if quality is not None else (bundle.levels + 1) // 2
            try:
                quality_steps(quality, bundle.levels)
            except ValueError as e:
                raise InputError(str(e)) from None
    elif quality is not None or target_psnr is not None or decode_check:
        raise InputError("--decode takes no --quality, --target-psnr or --decode-check")
    n = workers or cores()
    t = threads or max(1, cores() // n)
    s = Settings(
        mode,
        quality=None if quality is None else float(quality),
        target_psnr=target_psnr,
        decode_check=decode_check,
        backend=backend,
        model=None if model is None else str(Path(model).resolve()),
        model_digest=bundle.digest,
        threads=t,
        max_memory=max_memory,
    )
    return s, n
