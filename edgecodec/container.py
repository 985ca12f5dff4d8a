"""Containers v1 and v2: the byte layout of an edgecodec file (specified in docs/bitstream.md).

v2 adds the encoder's measurement of its own reconstruction (``Metrics``), fractional quality
(1/16 steps) and the residual layer's error bound; v1 files keep decoding.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

from .errors import CorruptStreamError, NotEdgecodecError, UnsupportedVersionError

MAGIC = b"EDGC"
VERSION = 2  # what the encoder writes
VERSIONS = (1, 2)  # what the decoder reads
DIGEST_BYTES = 16
MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 27  # 134 Mpixel; larger claims are treated as corruption
MAX_SUBSTREAMS = 16
QUALITY_STEPS = 16  # v2 stores quality in 1/16 steps

FLAG_METRICS = 1  # a metrics block follows the fixed header
FLAG_RESIDUAL = 2  # the stream carries a residual layer with the bound in ``max_error``
_KNOWN_FLAGS = FLAG_METRICS | FLAG_RESIDUAL

_V1 = struct.Struct("<4sBBH16sIIBBBBB")  # magic ver flags header_len digest w h ch depth quality precision n_sub
_V2 = struct.Struct("<4sBBH16sIIBBHBBB")  # ... quality16 precision max_error n_sub
_METRICS = struct.Struct("<HHBBBBB")  # psnr/256 dB, ms-ssim*65535, max error, p99.9 error, backend, device, decoder
_SUB = struct.Struct("<BHII")  # id lanes length crc32
_CRC = struct.Struct("<I")

# ids of the metrics block; 255: another (future) backend or device
BACKEND_IDS = ("numpy", "onnxruntime", "tflite", "openvino")
DEVICE_IDS = ("CPU", "GPU", "NPU")
DECODER_IDS = ("full", "fast", "integer")  # integer: the integer-exact synthesis of a residual stream
OTHER = 255
PSNR_INF = 0xFFFF


def _id(table: tuple[str, ...], name: str) -> int:
    return table.index(name) if name in table else OTHER


def _name(table: tuple[str, ...], i: int) -> str:
    return table[i] if i < len(table) else "other"


@dataclass(frozen=True)
class Metrics:
    """What the encoder measured of the reconstruction it made, against the original (stored rounded:
    PSNR to 1/256 dB, MS-SSIM to 1/65535; errors in levels, capped at 255)."""

    psnr: float
    ms_ssim: float
    max_error: int
    p999_error: int
    backend: str = "numpy"
    device: str = "CPU"
    decoder: str = "full"

    def packed(self) -> bytes:
        p = PSNR_INF if math.isinf(self.psnr) else min(PSNR_INF - 1, max(0, round(self.psnr * 256)))
        s = min(65535, max(0, round(self.ms_ssim * 65535)))
        return _METRICS.pack(
            p,
            s,
            min(255, int(self.max_error)),
            min(255, int(self.p999_error)),
            _id(BACKEND_IDS, self.backend),
            _id(DEVICE_IDS, self.device.partition(".")[0].upper()),
            _id(DECODER_IDS, self.decoder),
        )

    @classmethod
    def unpacked(cls, raw: bytes) -> Metrics:
        p, s, mx, p999, be, dev, dec = _METRICS.unpack(raw)
        names = _name(BACKEND_IDS, be), _name(DEVICE_IDS, dev), _name(DECODER_IDS, dec)
        return cls(math.inf if p == PSNR_INF else p / 256, s / 65535, mx, p999, *names)

    def stored(self) -> Metrics:
        """These metrics as a reader of the file sees them (rounded as stored)."""
        return Metrics.unpacked(self.packed())


@dataclass(frozen=True)
class Substream:
    id: int
    lanes: int
    payload: bytes


@dataclass(frozen=True)
class Header:
    model_digest: bytes
    width: int
    height: int
    channels: int
    bit_depth: int
    quality: float  # a multiple of 1/16 in v2, an integer level in v1
    precision: int
    max_error: int | None = None  # the residual layer's bound (v2), None: no residual layer
    metrics: Metrics | None = field(default=None, compare=True)
    version: int = VERSION

    def __post_init__(self) -> None:
        if len(self.model_digest) != DIGEST_BYTES:
            raise ValueError("model digest must be 16 bytes")
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE and self.width * self.height <= MAX_PIXELS):
            raise CorruptStreamError(f"image size {self.width}x{self.height} is out of range; the file is corrupt")
        if self.channels not in (1, 3) or self.bit_depth not in (8, 16):
            raise CorruptStreamError("unsupported channel count or bit depth in header; the file is corrupt")
        if not 1 <= self.precision <= 16:
            raise CorruptStreamError("coder precision out of range; the file is corrupt")
        if self.version not in VERSIONS:
            raise ValueError(f"unknown container version {self.version}")
        steps = QUALITY_STEPS if self.version >= 2 else 1
        if self.quality * steps != round(self.quality * steps) or self.quality < 1:
            raise ValueError(f"quality {self.quality} is not a multiple of 1/{steps} >= 1")
        if self.version == 1 and (self.max_error is not None or self.metrics is not None):
            raise ValueError("container v1 has no metrics or residual layer")
        if self.max_error is not None and not 0 <= self.max_error <= 255:
            raise ValueError("max_error must be 0..255")


def pack(header: Header, subs: list[Substream]) -> bytes:
    if len(subs) > MAX_SUBSTREAMS:
        raise ValueError("too many substreams")
    h = header
    if h.version == 1:
        fixed = _V1.size
        tail = (int(h.quality), h.precision, len(subs))
        flags = 0
    else:
        fixed = _V2.size + (_METRICS.size if h.metrics else 0)
        flags = (FLAG_METRICS if h.metrics else 0) | (FLAG_RESIDUAL if h.max_error is not None else 0)
        tail = (round(h.quality * QUALITY_STEPS), h.precision, h.max_error or 0, len(subs))
    header_len = fixed + _SUB.size * len(subs) + _CRC.size
    st = _V1 if h.version == 1 else _V2
    head = st.pack(MAGIC, h.version, flags, header_len, h.model_digest, h.width, h.height, h.channels, h.bit_depth, *tail)
    if h.version >= 2 and h.metrics:
        head += h.metrics.packed()
    for s in subs:
        head += _SUB.pack(s.id, s.lanes, len(s.payload), zlib.crc32(s.payload))
    head += _CRC.pack(zlib.crc32(head))
    return head + b"".join(s.payload for s in subs)


def unpack(data: bytes) -> tuple[Header, list[Substream]]:
    """Parse and verify a container; raises a typed ``BitstreamError`` on anything wrong."""
    mv = memoryview(data)
    if len(mv) < 5 or bytes(mv[:4]) != MAGIC:
        raise NotEdgecodecError("not an edgecodec file (bad magic bytes)")
    version = mv[4]
    if version not in VERSIONS:
        raise UnsupportedVersionError(
            f"bitstream format version {version} is not supported by this edgecodec (reads versions "
            f"{', '.join(map(str, VERSIONS))}); upgrade edgecodec"
        )
    st = _V1 if version == 1 else _V2
    if len(mv) < st.size:
        raise CorruptStreamError(f"file is truncated inside its header ({len(mv)} bytes)")
    max_error, metrics = None, None
    if version == 1:
        _magic, _ver, flags, header_len, digest, w, h, ch, depth, quality, precision, n_sub = st.unpack_from(mv, 0)
        fixed = st.size
        if flags:
            raise CorruptStreamError("flags must be 0 in a version 1 header; the file is corrupt")
    else:
        _magic, _ver, flags, header_len, digest, w, h, ch, depth, q16, precision, bound, n_sub = st.unpack_from(mv, 0)
        if flags & ~_KNOWN_FLAGS:
            raise CorruptStreamError(f"unknown header flags {flags:#04x}; the file is corrupt")
        fixed = st.size + (_METRICS.size if flags & FLAG_METRICS else 0)
        quality = q16 / QUALITY_STEPS
        if q16 < QUALITY_STEPS:
            raise CorruptStreamError(f"quality {quality} is below 1; the file is corrupt")
        if flags & FLAG_RESIDUAL:
            max_error = bound
        elif bound:
            raise CorruptStreamError("error bound set without a residual layer; the file is corrupt")
    if n_sub > MAX_SUBSTREAMS or header_len != fixed + _SUB.size * n_sub + _CRC.size:
        raise CorruptStreamError("header length is inconsistent; the file is corrupt")
    if len(mv) < header_len:
        raise CorruptStreamError(f"file is truncated inside its header ({len(mv)} of {header_len} bytes)")
    (crc,) = _CRC.unpack_from(mv, header_len - _CRC.size)
    if zlib.crc32(mv[: header_len - _CRC.size]) != crc:
        raise CorruptStreamError("header checksum mismatch; the file is corrupt")
    if version >= 2 and flags & FLAG_METRICS:
        metrics = Metrics.unpacked(bytes(mv[st.size : fixed]))
    header = Header(bytes(digest), w, h, ch, depth, quality, precision, max_error, metrics, version)
    subs = []
    pos = header_len
    for i in range(n_sub):
        sid, lanes, length, scrc = _SUB.unpack_from(mv, fixed + _SUB.size * i)
        if pos + length > len(mv):
            raise CorruptStreamError(f"substream {sid} is truncated at byte {len(mv)} (needs {pos + length}); the file is incomplete")
        payload = bytes(mv[pos : pos + length])
        if zlib.crc32(payload) != scrc:
            raise CorruptStreamError(f"substream {sid} checksum mismatch at byte offset {pos}; the file is corrupt")
        subs.append(Substream(sid, lanes, payload))
        pos += length
    if pos != len(mv):
        raise CorruptStreamError(f"{len(mv) - pos} unexpected bytes after the last substream; the file is corrupt")
    return header, subs


def header_size(n_substreams: int, metrics: bool = True) -> int:
    """Bytes of a v2 header with ``n_substreams`` directory entries (and the metrics block)."""
    return _V2.size + (_METRICS.size if metrics else 0) + _SUB.size * n_substreams + _CRC.size


def directory_offset(header: Header) -> int:
    """Byte offset of the substream directory (tests and tools edit headers through it)."""
    if header.version == 1:
        return _V1.size
    return _V2.size + (_METRICS.size if header.metrics else 0)
