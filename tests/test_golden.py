"""Format goldens: streams from the tiny test model decode identically forever."""

import dataclasses
import json

import numpy as np
import pytest
from tiny_model import GOLDEN, build_tiny_bundle

from edgecodec import codec
from edgecodec.bundle import Bundle
from edgecodec.errors import ModelMismatchError

EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_stream_parses_identically(name, tiny_bundle):
    data = (GOLDEN / f"{name}.edgc").read_bytes()
    assert len(data) == EXPECTED[name]["bytes"]
    _, parse = codec.parse_stream(data, tiny_bundle)
    assert parse.digest() == EXPECTED[name]["parse_sha256"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_stream_decodes_to_the_stored_pixels(name, tiny_backend):
    out = codec.decode((GOLDEN / f"{name}.edgc").read_bytes(), tiny_backend).image
    ref = np.load(GOLDEN / f"{name}.decoded.npy")
    assert out.shape == ref.shape
    assert np.abs(out.astype(int) - ref).max() <= 1  # float32 GEMM order may move a pixel by one level


def test_encoding_today_reproduces_the_golden_payloads_in_a_v2_container(tiny_backend):
    from tiny_model import synthetic_image

    from edgecodec import container

    enc = codec.encode(synthetic_image(64, 64, 3), 1, tiny_backend)
    new, new_subs = container.unpack(enc.data)
    old, old_subs = container.unpack((GOLDEN / "a_64x64_q1.edgc").read_bytes())
    assert (old.version, new.version) == (1, 2) and new_subs == old_subs
    assert dataclasses.replace(new, metrics=None, version=1) == old


def test_stream_from_another_model_is_a_model_mismatch(tmp_path, tiny_bundle):
    other = Bundle(build_tiny_bundle(tmp_path / "other", seed=2))
    with pytest.raises(ModelMismatchError, match="--model"):
        codec.parse_stream((GOLDEN / "a_64x64_q1.edgc").read_bytes(), other)


def test_modified_bundle_files_are_refused(tmp_path):
    import shutil

    from edgecodec.bundle import default_bundle_path
    from edgecodec.errors import BundleError

    b = tmp_path / "b"
    shutil.copytree(GOLDEN / "tiny_bundle", b)
    (b / "transforms.npz").write_bytes((b / "transforms.npz").read_bytes() + b"x")
    with pytest.raises(BundleError, match="checksum"):
        Bundle(b)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("manifest.json", "entropy.npz", "transforms.npz", "synthesis.int8.onnx"):
        shutil.copy(default_bundle_path() / name, shipped / name)
    (shipped / "synthesis.int8.onnx").write_bytes((shipped / "synthesis.int8.onnx").read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleError, match="checksum"):
        Bundle(shipped).artifact("onnx", "synthesis")
