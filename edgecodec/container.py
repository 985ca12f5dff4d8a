"""Container v1: the byte layout of an edgecodec file (specified in docs/bitstream.md)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import CorruptStreamError, NotEdgecodecError, UnsupportedVersionError

MAGIC = b"EDGC"
VERSION = 1
DIGEST_BYTES = 16
MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 27  # 134 Mpixel; larger claims are treated as corruption
MAX_SUBSTREAMS = 16

_FIXED = struct.Struct("<4sBBH16sIIBBBBB")  # magic ver flags header_len digest w h ch depth quality precision n_sub
_SUB = struct.Struct("<BHII")  # id lanes length crc32
_CRC = struct.Struct("<I")


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
    quality: int
    precision: int

    def __post_init__(self) -> None:
        if len(self.model_digest) != DIGEST_BYTES:
            raise ValueError("model digest must be 16 bytes")
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE and self.width * self.height <= MAX_PIXELS):
            raise CorruptStreamError(f"image size {self.width}x{self.height} is out of range; the file is corrupt")
        if self.channels not in (1, 3) or self.bit_depth not in (8, 16):
            raise CorruptStreamError("unsupported channel count or bit depth in header; the file is corrupt")
        if not 1 <= self.precision <= 16:
            raise CorruptStreamError("coder precision out of range; the file is corrupt")


def pack(header: Header, subs: list[Substream]) -> bytes:
    if len(subs) > MAX_SUBSTREAMS:
        raise ValueError("too many substreams")
    header_len = _FIXED.size + _SUB.size * len(subs) + _CRC.size
    head = _FIXED.pack(
        MAGIC,
        VERSION,
        0,
        header_len,
        header.model_digest,
        header.width,
        header.height,
        header.channels,
        header.bit_depth,
        header.quality,
        header.precision,
        len(subs),
    )
    for s in subs:
        head += _SUB.pack(s.id, s.lanes, len(s.payload), zlib.crc32(s.payload))
    head += _CRC.pack(zlib.crc32(head))
    return head + b"".join(s.payload for s in subs)


def unpack(data: bytes) -> tuple[Header, list[Substream]]:
    """Parse and verify a container; raises a typed ``BitstreamError`` on anything wrong."""
    mv = memoryview(data)
    if len(mv) < 5 or bytes(mv[:4]) != MAGIC:
        raise NotEdgecodecError("not an edgecodec file (bad magic bytes)")
    if mv[4] != VERSION:
        raise UnsupportedVersionError(
            f"bitstream format version {mv[4]} is not supported by this edgecodec (reads version {VERSION}); upgrade edgecodec"
        )
    if len(mv) < _FIXED.size:
        raise CorruptStreamError(f"file is truncated inside its header ({len(mv)} bytes)")
    magic, _ver, _flags, header_len, digest, w, h, ch, depth, quality, precision, n_sub = _FIXED.unpack_from(mv, 0)
    if n_sub > MAX_SUBSTREAMS or header_len != _FIXED.size + _SUB.size * n_sub + _CRC.size:
        raise CorruptStreamError("header length is inconsistent; the file is corrupt")
    if len(mv) < header_len:
        raise CorruptStreamError(f"file is truncated inside its header ({len(mv)} of {header_len} bytes)")
    (crc,) = _CRC.unpack_from(mv, header_len - _CRC.size)
    if zlib.crc32(mv[: header_len - _CRC.size]) != crc:
        raise CorruptStreamError("header checksum mismatch; the file is corrupt")
    header = Header(bytes(digest), w, h, ch, depth, quality, precision)
    subs = []
    pos = header_len
    for i in range(n_sub):
        sid, lanes, length, scrc = _SUB.unpack_from(mv, _FIXED.size + _SUB.size * i)
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
