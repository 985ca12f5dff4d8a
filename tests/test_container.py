"""Containers v1 and v2: the layout round-trips, and every kind of damage is a typed error, quickly and
without huge allocations."""

import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from tiny_model import synthetic_image

from edgecodec import codec, container
from edgecodec.errors import BitstreamError, CorruptStreamError, NotEdgecodecError, UnsupportedVersionError


@pytest.fixture(scope="module")
def stream(tiny_backend):
    return codec.encode(synthetic_image(40, 70, 9), 2, tiny_backend).data


def reseal(head: bytearray) -> bytes:
    """Recompute the header CRC so only the semantic check can reject the edit."""
    n = struct.unpack_from("<H", head, 6)[0]
    head[n - 4 : n] = struct.pack("<I", zlib.crc32(bytes(head[: n - 4])))
    return bytes(head)


SUBS = [container.Substream(1, 3, b"abc"), container.Substream(2, 70, b"\x00" * 100)]
METRICS = container.Metrics(31.25, 0.96875, 87, 23, "onnxruntime", "CPU", "full").stored()


def test_round_trip_of_the_layout():
    h = container.Header(b"\x01" * 16, 31, 17, 3, 8, 4, 12)
    h2, subs2 = container.unpack(container.pack(h, SUBS))
    assert h2 == h and subs2 == SUBS and h2.version == 2


def test_v2_carries_fractional_quality_metrics_and_the_error_bound():
    h = container.Header(b"\x01" * 16, 31, 17, 3, 8, 4.5625, 12, max_error=4, metrics=METRICS)
    h2, subs2 = container.unpack(container.pack(h, SUBS))
    assert h2 == h and subs2 == SUBS
    assert (h2.quality, h2.max_error, h2.metrics.backend, h2.metrics.decoder) == (4.5625, 4, "onnxruntime", "full")
    lossless = container.Header(b"\x01" * 16, 8, 8, 3, 8, 10, 12, max_error=0, metrics=container.Metrics(float("inf"), 1.0, 0, 0))
    assert container.unpack(container.pack(lossless, []))[0] == lossless


def test_metrics_are_stored_rounded_to_their_documented_steps():
    m = container.Metrics(33.123456, 0.9876543, 300, 12, "tflite", "GPU.1", "fast").stored()
    assert abs(m.psnr - 33.123456) <= 1 / 512 and abs(m.ms_ssim - 0.9876543) <= 1 / 131070
    assert (m.max_error, m.device, m.decoder) == (255, "GPU", "fast")  # errors cap at 255 levels
    assert container.Metrics(30.0, 0.9, 1, 1, "some-future-runtime").stored().backend == "other"


def test_the_metrics_and_fractional_quality_cost_at_most_24_bytes_per_file():
    v1 = container.pack(container.Header(b"\x01" * 16, 31, 17, 3, 8, 4, 12, version=1), SUBS)
    v2 = container.pack(container.Header(b"\x01" * 16, 31, 17, 3, 8, 4.5, 12, metrics=METRICS), SUBS)
    assert 0 < len(v2) - len(v1) <= 24
    assert container.header_size(len(SUBS)) == len(v2) - sum(len(s.payload) for s in SUBS)


def test_version_1_files_still_unpack():
    h = container.Header(b"\x01" * 16, 31, 17, 1, 16, 7, 12, version=1)
    h2, subs2 = container.unpack(container.pack(h, SUBS))
    assert h2 == h and h2.metrics is None and h2.max_error is None and subs2 == SUBS


def test_unknown_flags_and_a_bound_without_its_layer_are_corrupt():
    data = bytearray(container.pack(container.Header(b"\x01" * 16, 8, 8, 3, 8, 1, 12), []))
    data[5] = 0x80
    with pytest.raises(CorruptStreamError, match="flags"):
        container.unpack(reseal(data))
    data[5] = 0
    data[container._V2.size - 2] = 3  # max_error set, residual flag clear
    with pytest.raises(CorruptStreamError, match="bound"):
        container.unpack(reseal(data))


def test_every_truncation_raises_a_typed_error(stream, tiny_backend):
    for cut in range(len(stream)):
        with pytest.raises(BitstreamError):
            codec.decode(stream[:cut], tiny_backend)


def test_bit_flips_raise_a_typed_error(stream, tiny_backend):
    rng = np.random.default_rng(0)
    for _ in range(300):
        bad = bytearray(stream)
        bad[int(rng.integers(0, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(BitstreamError):
            codec.decode(bytes(bad), tiny_backend)


def test_not_a_stream_and_future_versions():
    with pytest.raises(NotEdgecodecError):
        container.unpack(b"\x89PNG\r\n\x1a\n....")
    h = container.Header(b"\x01" * 16, 8, 8, 3, 8, 1, 12)
    data = bytearray(container.pack(h, []))
    data[4] = 3
    with pytest.raises(UnsupportedVersionError, match="version 3"):
        container.unpack(bytes(data))


def test_absurd_image_size_is_rejected_fast_without_allocating(stream, tiny_backend):
    head = bytearray(stream)
    struct.pack_into("<II", head, 24, 100_000, 100_000)
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(CorruptStreamError, match="100000x100000"):
        codec.decode(reseal(head), tiny_backend)
    assert time.perf_counter() - t < 1.0
    assert tracemalloc.get_traced_memory()[1] < 50_000_000
    tracemalloc.stop()


def test_absurd_substream_length_is_rejected(stream, tiny_backend):
    head = bytearray(stream)
    struct.pack_into("<I", head, container.directory_offset(container.unpack(stream)[0]) + 3, 0xFFFFFFF0)  # first substream's length
    with pytest.raises(CorruptStreamError, match="truncated"):
        codec.decode(reseal(head), tiny_backend)


def test_absurd_lane_count_is_rejected(stream, tiny_backend):
    head = bytearray(stream)
    struct.pack_into("<H", head, container.directory_offset(container.unpack(stream)[0]) + 1, 65535)  # first substream's lanes
    with pytest.raises(CorruptStreamError):
        codec.decode(reseal(head), tiny_backend)
