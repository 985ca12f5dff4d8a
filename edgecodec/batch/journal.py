"""The batch journal: one SQLite file in the destination folder, written by the driver only.

Why SQLite rather than an append-only log: a rerun must look up each of possibly millions of files
("done with these settings, from this exact source?") without replaying a log into memory, and a
kill at any instant must leave a consistent file. SQLite (in the standard library) gives both: an
indexed table, and transactions that a killed process never leaves half-applied (WAL mode; with
``synchronous=NORMAL`` a power cut may forget the last few commits, which a rerun then redoes —
never wrongly marks done). One row per file, keyed by its path relative to the source folder.

A file's output is renamed into place before its row is committed, so "done" always means the
output is complete on disk; the converse (an output whose row was not yet committed) is redone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

NAME = ".edgecodec-batch.sqlite"
SCHEMA_VERSION = 1

COLUMNS = (
    "rel",  # the source path relative to SRC (posix separators)
    "src_size",
    "src_mtime_ns",
    "settings",  # the job settings that shaped the output (Settings.key())
    "state",  # 'done' or 'failed'
    "out_bytes",
    "width",
    "height",
    "bpp",
    "psnr",
    "ms_ssim",
    "max_error",
    "seconds",  # the worker's time on this file
    "worker",  # host:pid of the process that made it
    "attempts",
    "error",  # the one-line error of a failed file
    "finished",  # unix time
)


@dataclass(frozen=True)
class Task:
    """One file to process. ``attempts`` counts the worker processes that died on it."""

    rel: str
    src: str
    dst: str
    size: int
    mtime_ns: int
    attempts: int = 0


class Journal:
    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / NAME
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        version = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if version is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(version[0]) != SCHEMA_VERSION:
            from ..errors import InputError

            raise InputError(f"{self.path}: journal schema {version[0]}, this edgecodec writes {SCHEMA_VERSION}; use another DST")
        cols = ", ".join(f"{c} {'TEXT PRIMARY KEY' if c == 'rel' else ''}" for c in COLUMNS)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS files ({cols})")
        self.db.execute("CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, started REAL, ended REAL, settings TEXT, status TEXT)")

    def close(self) -> None:
        self.db.close()

    # --- runs: a run without an end crashed, so its temporary files may lie about -----------------
    def begin_run(self, settings_json: str) -> tuple[int, bool]:
        """Record a run's start; returns its id and whether the previous run ended without a record."""
        last = self.db.execute("SELECT ended FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        crashed = last is not None and last[0] is None
        cur = self.db.execute("INSERT INTO runs (started, settings) VALUES (?, ?)", (time.time(), settings_json))
        return int(cur.lastrowid), crashed

    def end_run(self, run_id: int, status: str) -> None:
        self.db.execute("UPDATE runs SET ended=?, status=? WHERE id=?", (time.time(), status, run_id))

    # --- files -------------------------------------------------------------------------------------
    def row(self, rel: str) -> dict | None:
        r = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM files WHERE rel=?", (rel,)).fetchone()
        return dict(zip(COLUMNS, r)) if r else None

    def settled(self, task: Task, settings: str, retry_failed: bool = False) -> dict | None:
        """The file's row when nothing needs redoing: made with these settings from this very source
        (size and mtime), and, if done, its output still on disk at the recorded size."""
        r = self.row(task.rel)
        if r is None or r["settings"] != settings or r["src_size"] != task.size or r["src_mtime_ns"] != task.mtime_ns:
            return None
        if r["state"] == "failed":
            return None if retry_failed else r
        try:
            return r if os.stat(task.dst).st_size == r["out_bytes"] else None
        except OSError:
            return None

    def record(self, task: Task, settings: str, out: dict) -> None:
        values = {c: out.get(c) for c in COLUMNS}
        values.update(
            rel=task.rel,
            src_size=task.size,
            src_mtime_ns=task.mtime_ns,
            settings=settings,
            attempts=task.attempts + 1,
            finished=time.time(),
        )
        values["worker"] = values["worker"] or f"{socket.gethostname()}:{os.getpid()}"
        marks = ", ".join("?" for _ in COLUMNS)
        self.db.execute(f"INSERT OR REPLACE INTO files ({', '.join(COLUMNS)}) VALUES ({marks})", [values[c] for c in COLUMNS])

    # --- the summary -------------------------------------------------------------------------------
    def totals(self, settings: str) -> dict:
        done = self.db.execute(
            "SELECT COUNT(*), SUM(src_size), SUM(out_bytes), AVG(bpp), AVG(psnr), SUM(width*height) FROM files "
            "WHERE state='done' AND settings=?",
            (settings,),
        ).fetchone()
        failed = self.db.execute("SELECT COUNT(*) FROM files WHERE state='failed' AND settings=?", (settings,)).fetchone()[0]
        keys = ("done", "src_bytes", "out_bytes", "mean_bpp", "mean_psnr", "pixels")
        t = {k: (v or 0) for k, v in zip(keys, done)}
        t["failed"] = failed
        return t

    def slowest(self, settings: str, n: int = 5) -> list[tuple[str, float]]:
        q = "SELECT rel, seconds FROM files WHERE state='done' AND settings=? ORDER BY seconds DESC LIMIT ?"
        return [(r, s) for r, s in self.db.execute(q, (settings, n))]

    def failures(self, settings: str, n: int = 20) -> list[tuple[str, str]]:
        q = "SELECT rel, error FROM files WHERE state='failed' AND settings=? ORDER BY rel LIMIT ?"
        return [(r, e) for r, e in self.db.execute(q, (settings, n))]

    def csv_bytes(self, settings: str) -> bytes:
        """Every file of this job, one row each (the journal minus its bookkeeping columns)."""
        cols = [c for c in COLUMNS if c not in ("settings", "src_mtime_ns")]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.db.execute(f"SELECT {', '.join(cols)} FROM files WHERE settings=? ORDER BY rel", (settings,)):
            w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in r])
        return buf.getvalue().encode()


def settings_key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
