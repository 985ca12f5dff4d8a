"""``edgecodec batch``: a folder tree in, the same tree of .edgc files out, resumable after any crash.

The tiny test model on the numpy backend keeps each file a few milliseconds of work, so the tests
exercise the journal, the engines and the recovery paths rather than the codec.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_model import GOLDEN

from edgecodec import batch
from edgecodec.batch.journal import NAME as JOURNAL
from edgecodec.batch.local import LocalEngine

TINY = GOLDEN / "tiny_bundle"


def _image(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (3 + c) + yy * (seed % 5 + 1) + 40 * c) % 256 for c in range(3)], -1)
    return np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)


def make_tree(root: Path, n: int = 6, corrupt: bool = True) -> list[Path]:
    """``n`` small PNGs, some in nested folders, plus (optionally) one file that is not an image."""
    from edgecodec.io import encode_image

    files = []
    for i in range(n):
        p = root / ("" if i % 3 == 0 else f"set{i % 3}/deeper" if i % 2 else f"set{i % 3}") / f"img{i:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(encode_image(_image(i), ".png"))
        files.append(p)
    if corrupt:
        (root / "set1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return files


def settings(**kw):
    return batch.make_settings(batch.ENCODE, backend="numpy", model=TINY, **{"quality": 2, **kw})


def run_local(src: Path, dst: Path, workers: int = 2, on_record=None, **kw) -> batch.Summary:
    s, _ = settings(**kw)
    return batch.run(src, dst, s, LocalEngine(s, workers), progress=False, on_record=on_record)


def outputs(dst: Path) -> dict[str, int]:
    return {str(p.relative_to(dst)): p.stat().st_size for p in dst.rglob("*.edgc")}


def journal_rows(dst: Path) -> list[tuple]:
    with sqlite3.connect(dst / JOURNAL) as db:
        return db.execute("SELECT rel, state, out_bytes, error, attempts FROM files ORDER BY rel").fetchall()


def assert_consistent(dst: Path, n_done: int) -> None:
    """Exactly one complete output per done row, at the recorded size; no temporary files."""
    done = {rel: size for rel, state, size, _, _ in journal_rows(dst) if state == "done"}
    on_disk = outputs(dst)
    assert len(done) == n_done
    assert {os.path.splitext(r)[0] + ".edgc": s for r, s in done.items()} == on_disk
    assert not [p for p in dst.rglob("*.tmp")]


def test_a_tree_is_mirrored_a_bad_image_is_recorded_and_the_job_goes_on(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    summary = run_local(src, dst)
    assert (summary.files, summary.done_now, summary.failed) == (7, 6, 1)
    assert sorted(outputs(dst)) == [
        "img00.edgc",
        "img03.edgc",
        "set1/deeper/img01.edgc",
        "set1/img04.edgc",
        "set2/deeper/img05.edgc",
        "set2/img02.edgc",
    ]
    assert_consistent(dst, 6)
    ((rel, err),) = summary.failures
    assert rel == "set1/broken.png" and "\n" not in err and "truncated PNG" in err
    assert len((dst / batch.job.CSV_NAME).read_text().splitlines()) == 1 + 7
    t = summary.totals
    assert t["out_bytes"] == sum(outputs(dst).values()) and t["done"] == 6 and t["mean_psnr"] > 5


def test_the_outputs_decode_to_what_the_journal_says(tmp_path):
    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.runtimes.numpy_backend import NumpyBackend

    src, dst = tmp_path / "src", tmp_path / "out"
    make_tree(src, n=3, corrupt=False)
    run_local(src, dst, workers=1, decode_check=True)
    bundle = Bundle(TINY)
    be = NumpyBackend(bundle)
    with sqlite3.connect(dst / JOURNAL) as db:
        for rel, psnr, w, h in db.execute("SELECT rel, psnr, width, height FROM files"):
            res = codec.decode((dst / rel).with_suffix(".edgc").read_bytes(), be, bundle)
            assert res.image.shape[:2] == (h, w)
            assert abs(res.metrics.psnr - psnr) < 1e-9


def test_a_rerun_redoes_nothing_but_a_changed_source_or_a_lost_output(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out"
    files = make_tree(src)
    run_local(src, dst)
    again = run_local(src, dst)
    assert (again.done_now, again.skipped, again.failed) == (0, 7, 1)

    files[1].write_bytes(files[2].read_bytes())  # another image under the same name
    os.utime(files[1], ns=(time.time_ns(), time.time_ns() + 10**9))
    (dst / "set2" / "deeper" / "img05.edgc").unlink()
    third = run_local(src, dst)
    assert (third.done_now, third.skipped) == (2, 5)
    assert_consistent(dst, 6)


def test_other_settings_redo_every_file(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out"
    make_tree(src, n=3, corrupt=False)
    first = run_local(src, dst)
    other = run_local(src, dst, quality=3)
    assert other.done_now == 3 and other.totals["out_bytes"] > first.totals["out_bytes"]


def test_killing_a_worker_hands_its_file_to_another_and_every_file_is_done_once(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out"
    make_tree(src, n=12, corrupt=False)
    s, _ = settings()
    engine = LocalEngine(s, 2)
    killed = []

    def kill_one(task, out):
        if not killed:
            killed.append(engine.pids[0])
            os.kill(engine.pids[0], signal.SIGKILL)

    summary = batch.run(src, dst, s, engine, progress=False, on_record=kill_one)
    assert killed and (summary.done_now, summary.failed) == (12, 0)
    assert_consistent(dst, 12)


def test_killing_the_driver_mid_job_then_rerunning_finishes_each_file_exactly_once(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out"
    make_tree(src, n=40, corrupt=False)
    cmd = [sys.executable, "-m", "edgecodec.cli", "batch", str(src), str(dst), "-q", "2", "-b", "numpy", "--model", str(TINY), "-j", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite3.connect(dst / JOURNAL, timeout=5) as db:
                done = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        except sqlite3.Error:
            continue
        if done >= 3:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(30)
    assert 3 <= done < 40, "the driver finished before it could be killed: make the job longer"
    time.sleep(1)  # its orphaned workers see the broken pipe and exit
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "40 files:" in rerun.stdout
    assert_consistent(dst, 40)
    rows = journal_rows(dst)
    assert len(rows) == 40 and len({r[0] for r in rows}) == 40


def test_the_exit_code_says_whether_any_file_failed(tmp_path):
    from edgecodec.io import encode_image

    src, dst = tmp_path / "src", tmp_path / "out"
    make_tree(src, n=2)
    cmd = [sys.executable, "-m", "edgecodec.cli", "batch", str(src), str(dst), "-b", "numpy", "--model", str(TINY), "-j", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "failed: set1/broken.png" in r.stdout and "Traceback" not in r.stderr
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "0 done now" in r.stdout, "a failure stays failed while its source is unchanged"
    r = subprocess.run([*cmd, "--retry-failed"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "0 done now, 2 settled before, 1 failed" in r.stdout
    (src / "set1" / "broken.png").write_bytes(encode_image(_image(9), ".png"))  # the user fixes it
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "1 done now" in r.stdout, r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--decode", "-q", "3"], "--decode takes no"),
        (["-q", "3", "--target-psnr", "30"], "exclude each other"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--engine", "spark"], "unknown engine"),
        (["--address", "10.0.0.1:6379"], "--address needs --engine ray"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    src = tmp_path / "src"
    make_tree(src, n=1, corrupt=False)
    r = subprocess.run(
        [sys.executable, "-m", "edgecodec.cli", "batch", str(src), str(tmp_path / "o"), "-b", "numpy", "--model", str(TINY), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_destination_may_lie_inside_the_source_but_not_contain_it(tmp_path):
    src = tmp_path / "src"
    make_tree(src, n=2, corrupt=False)
    summary = run_local(src, src / "encoded", workers=1)
    assert summary.files == 2 and run_local(src, src / "encoded", workers=1).files == 2
    with pytest.raises(batch.job.InputError, match="must not be the source"):
        run_local(src, tmp_path, workers=1)


def test_decode_mode_turns_a_tree_of_streams_into_pngs(tmp_path):
    from edgecodec.io import read_image

    src, enc, dec = tmp_path / "src", tmp_path / "enc", tmp_path / "dec"
    make_tree(src, n=3, corrupt=False)
    run_local(src, enc)
    s, _ = batch.make_settings(batch.DECODE, backend="numpy", model=TINY)
    summary = batch.run(enc, dec, s, LocalEngine(s, 1), progress=False)
    assert (summary.done_now, summary.failed) == (3, 0)
    pngs = sorted(str(p.relative_to(dec)) for p in dec.rglob("*.png"))
    assert pngs == ["img00.png", "set1/deeper/img01.png", "set2/img02.png"]
    assert read_image(dec / "img00.png").shape == (48, 64, 3)


@pytest.mark.ray
def test_the_ray_engine_on_a_two_node_cluster_survives_a_killed_worker(tmp_path):
    ray = pytest.importorskip("ray", reason="the Ray engine needs the 'ray' extra")
    from ray.cluster_utils import Cluster

    from edgecodec.batch.ray_engine import RayEngine

    src, dst = tmp_path / "src", tmp_path / "out"
    make_tree(src, n=16)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        s, _ = settings()
        engine = RayEngine(s, None, cluster.address)
        killed = []

        def kill_one(task, out):
            if not killed:
                pid = engine.worker_pids()[0]
                killed.append(pid)
                os.kill(pid, signal.SIGKILL)

        summary = batch.run(src, dst, s, engine, progress=False, on_record=kill_one)
        assert len(engine.actors) == 2, "one actor per node CPU"
        assert killed and (summary.done_now, summary.failed) == (16, 1)
        assert_consistent(dst, 16)
        rerun = batch.run(src, dst, s, engine, progress=False)
        assert (rerun.done_now, rerun.skipped) == (0, 17)
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_the_ray_engine_without_ray_installed_is_a_one_line_error(tmp_path, monkeypatch):
    from edgecodec.errors import BackendUnavailableError

    src = tmp_path / "src"
    make_tree(src, n=1, corrupt=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    s, _ = settings()
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgecodec\[ray\]'"):
        batch.run(src, tmp_path / "out", s, batch.engine("ray", s, 2), progress=False)
