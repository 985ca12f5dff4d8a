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

from itertools import cycle

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


SCALAR_LANES = 12  # at most this many lanes, Python ints per symbol beat numpy's per-step calls (measured)
SCALAR_BLOCK = 1 << 16  # symbols per block on the scalar path (its Python lists stay small)
LOW32 = (1 << 32) - 1


class Decoder:
    """Decodes streams for one table set; builds its slot lookup once and reuses it.

    The lookup is one int64 per slot (``(freq << 32) | bias``, ``packed_lut``): a step gathers once
    per lane instead of twice, from half the memory. Both fields are below 2**17 (precision <= 16),
    so the packing is lossless.
    """

    def __init__(self, tables: CdfTables):
        self.tables = tables
        lut_freq, lut_bias, self.lut_sym = slot_tables(tables)
        self.lut_packed = packed_lut(lut_freq, lut_bias)

    def decode(self, payload: bytes, table: np.ndarray, lanes: int) -> np.ndarray:
        tables = self.tables
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
            raise DesyncError("entropy decoder state out of range at start; the file is corrupt")
        steps = -(-n // k)
        values = np.empty(n, np.int64)
        escapes = []
        scalar = k <= SCALAR_LANES
        run = _ScalarSteps(self, x, words) if scalar else _VectorSteps(self, x, words)
        block = max(1, (SCALAR_BLOCK if scalar else BLOCK_SYMBOLS) // k)  # steps per block
        for b0 in range(0, steps, block):
            b1 = min(steps, b0 + block)
            first, end = b0 * k, min(b1 * k, n)
            tb = table[first:end]
            slot_of = run.block(tb, b1 - b0)  # the LUT index of every symbol of the block
            sym = self.lut_sym[slot_of[: end - first]]
            escapes.append(np.flatnonzero(sym == tables.length[tb]) + first)
            np.add(sym, tables.offset[tb], out=values[first:end])
        if run.pos != n_words or np.any(run.state() != STATE_LOW):
            raise DesyncError("entropy decoder desynchronized (final state mismatch); the file is corrupt")
        esc = np.concatenate(escapes) if escapes else np.zeros(0, np.int64)
        n_esc = int(esc.size)
        values[esc] = _read_leb128(buf[end_words:], n_esc)
        if n_esc == 0 and end_words != len(buf):
            raise CorruptStreamError("entropy-coded data has trailing bytes; the file is corrupt")
        return values


def slot_tables(tables: CdfTables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slot (``table << precision | slot``): the symbol's frequency, the bias ``slot - start``
    (so that ``x' = freq * (x >> p) + bias``) and the symbol, int64."""
    p = tables.precision
    freq_rows, bias_rows, sym_rows = [], [], []
    slots = np.arange(1 << p, dtype=np.int64)
    for t in range(tables.count):
        c = tables.cdf[t, : tables.length[t] + 2].astype(np.int64)
        f = np.diff(c)
        s = np.repeat(np.arange(f.size, dtype=np.int64), f)
        freq_rows.append(f[s])
        bias_rows.append(slots - c[s])
        sym_rows.append(s)
    empty = np.zeros(0, np.int64)
    return tuple(np.concatenate(r) if r else empty for r in (freq_rows, bias_rows, sym_rows))


def packed_lut(freq: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``(freq << 32) | bias`` in int64: lossless while both are in ``[0, 2**31)`` (checked)."""
    if freq.size and (freq.min() < 0 or bias.min() < 0 or max(int(freq.max()), int(bias.max())) > LOW32 >> 1):
        raise ValueError("slot table fields out of range for packing")
    return (freq << 32) | bias


class _VectorSteps:
    """A coder step is a few same-dtype numpy calls over all lanes (int64 throughout: numpy's
    cheapest call is an array ufunc with positional ``out``; a scalar operand, a keyword ``out`` or a
    mixed dtype costs it more at Kodak's tens of lanes)."""

    def __init__(self, dec: Decoder, x: np.ndarray, words: np.ndarray):
        k = x.size
        self.p = dec.tables.precision
        self.lut = dec.lut_packed
        self.x, self.words, self.word_list, self.pos, self.n_words = x, words, memoryview(words), 0, words.size
        self.mask, self.prec = np.full(k, (1 << self.p) - 1, np.int64), np.full(k, self.p, np.int64)
        self.low_bound, self.word_bits = np.full(k, STATE_LOW, np.int64), np.full(k, WORD_BITS, np.int64)
        self.s32, self.m32 = np.full(k, 32, np.int64), np.full(k, LOW32, np.int64)
        self.need, self.tmp = np.empty(k, dtype=bool), np.empty(k, np.int64)

    def state(self) -> np.ndarray:
        return self.x

    def block(self, tb: np.ndarray, n_steps: int) -> np.ndarray:
        k = self.x.size
        # per-symbol LUT row offsets, padded to whole steps so every step works on full-lane rows
        base = np.zeros(n_steps * k, dtype=np.int64)
        np.left_shift(tb, self.p, out=base[: tb.size], dtype=np.int64)
        slot_of = np.empty(n_steps * k, dtype=np.int64)
        idx, row = slot_of.reshape(-1, k), base.reshape(-1, k)
        last = tb.size - (n_steps - 1) * k  # lanes in use at the block's last step
        full = n_steps if last == k else n_steps - 1
        self._steps(idx[:full], row[:full], k)
        if full < n_steps:  # only the first lanes decode at a partial last step
            self._steps(idx[full:, :last], row[full:, :last], last)
        return slot_of

    def _steps(self, idx_rows: np.ndarray, base_rows: np.ndarray, k: int) -> None:
        x, mask, prec, low_bound, s32, m32, need, tmp = (
            a[:k] for a in (self.x, self.mask, self.prec, self.low_bound, self.s32, self.m32, self.need, self.tmp)
        )
        lut, words, wl, word_bits, pos, n_words = self.lut, self.words, self.word_list, self.word_bits, self.pos, self.n_words
        band, add, mul, shr, shl, less = np.bitwise_and, np.add, np.multiply, np.right_shift, np.left_shift, np.less
        for idx, row in zip(idx_rows, base_rows):
            band(x, mask, idx)
            add(idx, row, idx)  # LUT index: table << p | slot
            shr(x, prec, x)
            e = lut[idx]
            shr(e, s32, tmp)
            mul(x, tmp, x)  # freq * (x >> p)
            band(e, m32, tmp)
            add(x, tmp, x)  # + bias
            less(x, low_bound, need)
            j = need.nonzero()[0]
            if j.size:
                nxt = pos + j.size
                if nxt > n_words:
                    raise DesyncError("entropy decoder ran out of data; the file is truncated or corrupt")
                if j.size <= 6:  # a few lanes: Python ints beat five fancy-indexing numpy calls
                    for i in j.tolist():
                        x[i] = (int(x[i]) << WORD_BITS) | wl[pos]
                        pos += 1
                else:
                    x[j] = shl(x[j], word_bits[: j.size]) | words[pos:nxt]
                    pos = nxt
        self.pos = pos


class _ScalarSteps:
    """Few lanes: one symbol at a time in Python ints (the same arithmetic, the same words read in
    the same order), which beats a dozen numpy calls per step of a handful of lanes."""

    def __init__(self, dec: Decoder, x: np.ndarray, words: np.ndarray):
        self.p = dec.tables.precision
        self.lut = memoryview(dec.lut_packed)
        self.xs, self.words, self.pos = x.tolist(), memoryview(words), 0

    def state(self) -> np.ndarray:
        return np.array(self.xs, dtype=np.int64)

    def block(self, tb: np.ndarray, n_steps: int) -> np.ndarray:
        p, lut, words, xs, pos = self.p, self.lut, self.words, self.xs, self.pos
        mask, low, low32, bits = (1 << p) - 1, STATE_LOW, LOW32, WORD_BITS
        slots: list[int] = []
        append = slots.append
        try:
            # symbol i is lane i % K's: the lanes in turn, a partial last step simply ends early
            for row, lane in zip(np.left_shift(tb, p, dtype=np.int64).tolist(), cycle(range(len(xs)))):
                x = xs[lane]
                j = (x & mask) + row
                e = lut[j]
                x = (e >> 32) * (x >> p) + (e & low32)
                if x < low:
                    x = (x << bits) | words[pos]
                    pos += 1
                xs[lane] = x
                append(j)
        except IndexError:
            raise DesyncError("entropy decoder ran out of data; the file is truncated or corrupt") from None
        self.pos = pos
        return np.array(slots, dtype=np.int64)


def decode(payload: bytes, table: np.ndarray, tables: CdfTables, lanes: int) -> np.ndarray:
    return Decoder(tables).decode(payload, table, lanes)
