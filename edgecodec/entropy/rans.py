"""Interleaved rANS in numpy: every coder step is a few vector operations over all lanes.

State ``x`` lives in ``[2**16, 2**32)``; renormalization moves 16-bit words, at
most one per lane per step (this needs precision <= 16). Symbol ``i`` belongs
to lane ``i % K`` and step ``i // K``; the last step may use only a prefix of
the lanes. Every lane starts from ``x = 2**16`` and the decoder checks that it
ends there: any other final state is a desync.

Payload layout (little-endian)::

    u32 n_words | K x u32 final states | n_words x u16 | bypass bytes

The bypass bytes hold escaped values, in symbol order, as zigzag LEB128.
"""

from __future__ import annotations

import numpy as np

from ..errors import CorruptStreamError, DesyncError
from .cdf import CdfTables

STATE_LOW = 1 << 16
WORD_BITS = 16
MAX_LANES = 65535


def choose_lanes(n_symbols: int, estimated_bits: float, flush_fraction: float = 0.02, max_lanes: int = 4096) -> int:
    """Lanes for a stream: as many as keeps the 4-byte lane flushes near ``flush_fraction`` of it.

    More lanes mean fewer sequential steps (numpy's per-call cost dominates) but
    every lane flushes 4 bytes; small streams get few lanes, big ones many.
    """
    by_size = int(estimated_bits / 8 * flush_fraction / 4)
    return int(max(1, min(max_lanes, n_symbols, by_size)))


def _zigzag_leb128(values: np.ndarray) -> bytes:
    out = bytearray()
    for v in values.tolist():
        u = (v << 1) ^ (v >> 63) if v < 0 else v << 1
        u &= (1 << 64) - 1
        while True:
            b = u & 0x7F
            u >>= 7
            if u:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
    return bytes(out)


def _read_leb128(buf: memoryview, count: int) -> np.ndarray:
    vals = np.empty(count, dtype=np.int64)
    pos = 0
    for i in range(count):
        u = shift = 0
        while True:
            if pos >= len(buf) or shift > 63:
                raise CorruptStreamError("escape data ends early or is malformed; the file is truncated or corrupt")
            b = buf[pos]
            pos += 1
            u |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        vals[i] = (u >> 1) ^ -(u & 1)
    if pos != len(buf):
        raise CorruptStreamError("escape data has trailing bytes; the file is corrupt")
    return vals


def _symbols(values: np.ndarray, table: np.ndarray, tables: CdfTables) -> tuple[np.ndarray, np.ndarray]:
    sym = values.astype(np.int64) - tables.offset[table]
    length = tables.length[table].astype(np.int64)
    esc = (sym < 0) | (sym >= length)
    return np.where(esc, length, sym), esc


BLOCK_SYMBOLS = 1 << 20  # the encoder looks up frequencies a block at a time: bounded memory at any image size


def encode(values: np.ndarray, table: np.ndarray, tables: CdfTables, lanes: int) -> bytes:
    """Code integer ``values``; ``table[i]`` selects the CDF row for ``values[i]``."""
    values = np.ascontiguousarray(values).ravel()
    table = np.ascontiguousarray(table).ravel()
    if values.shape != table.shape:
        raise ValueError("values and table indexes differ in size")
    n = values.size
    k = int(lanes)
    if not 1 <= k <= MAX_LANES:
        raise ValueError(f"lanes must be 1..{MAX_LANES}")
    p = tables.precision
    x = np.full(k, STATE_LOW, dtype=np.int64)
    chunks: list[np.ndarray] = []
    escapes: list[np.ndarray] = []
    steps = -(-n // k)
    block = max(1, BLOCK_SYMBOLS // k)  # steps per block; coding runs backwards, block by block
    for b_hi in range(steps, 0, -block):
        b_lo = max(0, b_hi - block)
        first, end = b_lo * k, min(b_hi * k, n)
        sym, esc = _symbols(values[first:end], table[first:end].astype(np.int64), tables)
        escapes.append(values[first:end][esc].astype(np.int64))
        freq, start = tables.freq_and_start(table[first:end].astype(np.int64), sym)
        freq = freq.astype(np.int64)
        start = start.astype(np.int64)
        limit = freq << (32 - p)  # renormalize when x >= limit: then x >> 16 < limit keeps x < 2**32 after coding
        for t in range(b_hi - 1, b_lo - 1, -1):
            lo = t * k - first
            hi = min(lo + k, end - first)
            xs = x[: hi - lo]
            high = xs >= limit[lo:hi]
            if np.count_nonzero(high):
                chunks.append((xs[high] & 0xFFFF).astype(np.uint16))
                xs[high] >>= WORD_BITS
            q, r = np.divmod(xs, freq[lo:hi])
            q <<= p
            q += r
            q += start[lo:hi]
            xs[:] = q
    words = np.concatenate(chunks[::-1]) if chunks else np.zeros(0, np.uint16)
    head = np.array([words.size], dtype="<u4").tobytes() + x.astype("<u4").tobytes()
    esc_values = np.concatenate(escapes[::-1]) if escapes else np.zeros(0, np.int64)
    return head + words.astype("<u2").tobytes() + _zigzag_leb128(esc_values)


class Decoder:
    """Decodes streams for one table set; builds its slot lookup once and reuses it."""

    def __init__(self, tables: CdfTables):
        self.tables = tables
        p = tables.precision
        freq_rows, bias_rows, sym_rows = [], [], []
        slots = np.arange(1 << p, dtype=np.int64)
        for t in range(tables.count):
            c = tables.cdf[t, : tables.length[t] + 2].astype(np.int64)
            f = np.diff(c)
            s = np.repeat(np.arange(f.size, dtype=np.int64), f)
            freq_rows.append(f[s])
            bias_rows.append(slots - c[s])  # x' = freq * (x >> p) + (slot - start)
            sym_rows.append(s)
        empty = np.zeros(0, np.int64)
        # int64 throughout the per-step loop: numpy's fast path is same-dtype ufuncs over arrays
        # (a scalar operand or a mixed dtype costs it 2-3x the instructions at Kodak's ~100 lanes)
        self.lut_freq = np.concatenate(freq_rows) if freq_rows else empty
        self.lut_bias = np.concatenate(bias_rows) if bias_rows else empty
        self.lut_sym = np.concatenate(sym_rows) if sym_rows else empty

    def decode(self, payload: bytes, table: np.ndarray, lanes: int) -> np.ndarray:
        tables = self.tables
        p = tables.precision
        table = np.ascontiguousarray(table).ravel()
        n = table.size
        k = int(lanes)
        if not 1 <= k <= MAX_LANES:
            raise CorruptStreamError(f"lane count {k} is invalid; the file is corrupt")
        if table.size and (table.min() < 0 or table.max() >= tables.count):
            raise CorruptStreamError("table index out of range; the file does not match this model")
        buf = memoryview(payload)
        if len(buf) < 4 + 4 * k:
            raise CorruptStreamError("entropy-coded data is shorter than its lane states; the file is truncated")
        n_words = int(np.frombuffer(buf[:4], dtype="<u4")[0])
        end_words = 4 + 4 * k + 2 * n_words
        if end_words > len(buf):
            raise CorruptStreamError("entropy-coded data is truncated")
        x = np.frombuffer(buf[4 : 4 + 4 * k], dtype="<u4").astype(np.int64)
        words = np.frombuffer(buf[4 + 4 * k : end_words], dtype="<u2").astype(np.int64)
        if np.any(x < STATE_LOW):
            raise DesyncError("entropy coder state out of range at start; the file is corrupt")
        steps = -(-n // k)
        # every operand a lane-sized array: same-dtype array ufuncs are numpy's cheapest call
        mask, prec = np.full(k, (1 << p) - 1, np.int64), np.full(k, p, np.int64)
        low_bound, word_bits = np.full(k, STATE_LOW, np.int64), np.full(k, WORD_BITS, np.int64)
        need = np.empty(k, dtype=bool)
        lut_freq, lut_bias = self.lut_freq, self.lut_bias
        band, add, mul, shr, shl, less = np.bitwise_and, np.add, np.multiply, np.right_shift, np.left_shift, np.less
        pos = 0
        last = n - (steps - 1) * k  # lanes in use at the last step
        partial = steps - 1 if last < k else -1
        values = np.empty(n, np.int64)
        escapes = []
        x_all = x
        block = max(1, BLOCK_SYMBOLS // k)  # steps per block: the per-symbol int64 rows of one block at a time
        for b0 in range(0, steps, block):
            b1 = min(steps, b0 + block)
            first, end = b0 * k, min(b1 * k, n)
            tb = table[first:end]
            # per-symbol LUT row offsets, padded to whole steps so every step works on full-lane rows
            base = np.zeros((b1 - b0) * k, dtype=np.int64)
            np.left_shift(tb, p, out=base[: end - first], dtype=np.int64)
            slot_of = np.empty((b1 - b0) * k, dtype=np.int64)  # LUT index per symbol; looked up once per block
            for t, (idx, row) in enumerate(zip(slot_of.reshape(-1, k), base.reshape(-1, k)), start=b0):
                if t == partial:  # only the first lanes decode at a partial last step
                    x = x[:last]
                    mask, prec, low_bound, need = mask[:last], prec[:last], low_bound[:last], need[:last]
                    idx, row = idx[:last], row[:last]
                band(x, mask, out=idx)
                add(idx, row, out=idx)
                shr(x, prec, out=x)
                mul(x, lut_freq[idx], out=x)
                add(x, lut_bias[idx], out=x)
                less(x, low_bound, out=need)
                j = need.nonzero()[0]
                if j.size:
                    nxt = pos + j.size
                    if nxt > n_words:
                        raise DesyncError("entropy decoder ran out of data; the file is truncated or corrupt")
                    x[j] = shl(x[j], word_bits[: j.size]) | words[pos:nxt]
                    pos = nxt
            sym = self.lut_sym[slot_of[: end - first]]
            escapes.append(np.flatnonzero(sym == tables.length[tb]) + first)
            np.add(sym, tables.offset[tb], out=values[first:end])
        x = x_all
        if pos != n_words or np.any(x != STATE_LOW):
            raise DesyncError("entropy decoder desynchronized (final state mismatch); the file is corrupt")
        esc = np.concatenate(escapes) if escapes else np.zeros(0, np.int64)
        n_esc = int(esc.size)
        values[esc] = _read_leb128(buf[end_words:], n_esc)
        if n_esc == 0 and end_words != len(buf):
            raise CorruptStreamError("entropy-coded data has trailing bytes; the file is corrupt")
        return values


def decode(payload: bytes, table: np.ndarray, tables: CdfTables, lanes: int) -> np.ndarray:
    return Decoder(tables).decode(payload, table, lanes)
