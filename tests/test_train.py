"""The training command: runs from a fresh output folder and resumes from its own checkpoint.

One optimizer step on 64x64 crops of the shipped calibration images: this checks the command's
plumbing (folders, log, checkpoint, resume), not what training learns.
"""

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from edgecodec.models.train import main  # noqa: E402

CALIB = Path(__file__).resolve().parents[1] / "edgecodec" / "data" / "calib"


def test_trains_into_a_new_folder_and_resumes(tmp_path):
    out = tmp_path / "not" / "yet" / "there"
    args = ["--data", str(CALIB), "--out", str(out), "--batch", "1", "--crop", "64", "--log-every", "1"]
    main([*args, "--steps", "1"])
    assert json.loads((out / "ckpt" / "state.json").read_text())["step"] == 1
    main([*args, "--steps", "2", "--resume"])
    assert json.loads((out / "ckpt" / "state.json").read_text())["step"] == 2
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["bpp"] > 0 for r in log)
