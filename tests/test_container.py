"""Container v1: typed errors for every kind of damage, quickly and without huge allocations."""

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


def test_round_trip_of_the_layout():
    h = container.Header(b"\x01" * 16, 31, 17, 3, 8, 4, 12)
    subs = [container.Substream(1, 3, b"abc"), container.Substream(2, 70, b"\x00" * 100)]
    h2, subs2 = container.unpack(container.pack(h, subs))
    assert h2 == h and subs2 == subs


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
    data[4] = 2
    with pytest.raises(UnsupportedVersionError, match="version 2"):
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
    struct.pack_into("<I", head, container._FIXED.size + 3, 0xFFFFFFF0)  # first substream's length
    with pytest.raises(CorruptStreamError, match="truncated"):
        codec.decode(reseal(head), tiny_backend)


def test_absurd_lane_count_is_rejected(stream, tiny_backend):
    head = bytearray(stream)
    struct.pack_into("<H", head, container._FIXED.size + 1, 65535)  # first substream's lanes
    with pytest.raises(CorruptStreamError):
        codec.decode(reseal(head), tiny_backend)
