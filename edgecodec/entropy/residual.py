"""The residual layer: every pixel within ``N`` levels of the original (``--max-error N``; 0 is lossless).

Given a base B that every decoder computes bit for bit (``intsynth.IntegerSynthesis``), the residual
``r = X - B`` is quantized with step ``2N + 1``: ``q = floor((r + N) / (2N + 1))``, and the decoder
outputs ``clip(B + q (2N + 1), 0, 255)``; ``|X - X'| <= N`` (the clip only moves towards X, which
lies in 0..255). ``q`` is coded losslessly with the rANS coder (``rans``) and an integer model:

* Tables: a fixed family of two-sided geometric (discrete Laplace) tables built with integers only
  (``family``), precision 15. Table ``j`` decays by ``t_j / 2**16`` per step, ``t_j = 65536 - d_j``,
  ``d_0 = 4``, ``d_(j+1) = d_j + max(1, (3 d_j) // 16)`` while below 65536. Weights ``w_0 = 2**30``,
  ``w_(k+1) = (w_k t_j) >> 16``; the support is ``|k| <= R`` with ``R`` the largest ``k <= 600`` with
  ``w_k >= 2**15`` (at least 1); the escape weighs ``2 w_(R+1) + 1``; each frequency is
  ``max(1, (w 2**15) // W)`` over the total W, and the centre takes what makes the sum 2**15.
* Contexts, all known to the decoder before it decodes a channel (no per-pixel sequential state):
  the base's activity ``a`` (sum over channels of |horizontal| + |vertical| central differences of B,
  edge-replicated), bucketed by ``A - 1`` transmitted thresholds; for channel ``c > 0`` also the
  co-located ``q`` of channel ``c - 1`` (``clip(q, -2, 2)``: 5 buckets) and the sum of its ``|q|``
  over the 3x3 neighbourhood (zero-padded), bucketed by ``NB - 1`` thresholds. Context index:
  ``a`` for channel 0, ``(a * 5 + p) * NB + n`` for the others.
* Channel ``c > 0`` codes ``u = q_c - ((alpha_c * q_(c-1)) >> 4) - mean[ctx]``, channel 0
  ``u = q_0 - mean[ctx]``, with table ``table[ctx]``; ``alpha_c`` (int8), ``mean`` (int8) and
  ``table`` (u8) are the encoder's choices, transmitted.

Substreams: ``FIRST_ID`` (3) holds the parameters, zlib-compressed::

    u8 format (1) | u8 channels C | u8 A | u8 NB | (A - 1) x u16 thresholds | (NB - 1) x u16 thresholds
    | (C - 1) x i8 alpha | per context of channel 0, then 1.., (u8 table, i8 mean)

and ``FIRST_ID + 1 + c`` the rANS payload of channel ``c`` (raster order; lanes in the directory).
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

from ..errors import CorruptStreamError
from . import rans
from .cdf import CdfTables

FIRST_ID = 3
FORMAT = 1
PRECISION = 15
MAX_RADIUS = 600
A_BUCKETS = 8
NB_BUCKETS = 3
PREV_BUCKETS = 5
MAX_Q = 255  # |q| <= 255 for any N


def quantize(original: np.ndarray, base: np.ndarray, max_error: int) -> np.ndarray:
    """q (int16, same shape): the residual on the step-(2N+1) grid."""
    r = original.astype(np.int16) - base.astype(np.int16)
    return np.floor_divide(r + max_error, 2 * max_error + 1).astype(np.int16)


def reconstruct(base: np.ndarray, q: np.ndarray, max_error: int) -> np.ndarray:
    """X' = clip(B + q (2N + 1), 0, 255) as uint8."""
    return np.clip(base.astype(np.int32) + q.astype(np.int32) * (2 * max_error + 1), 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def family() -> CdfTables:
    """The fixed table family (module docstring), integers only."""
    ds, d = [], 4
    while d < 65536:
        ds.append(d)
        d += max(1, (3 * d) // 16)
    rows, lengths = [], []
    total = 1 << PRECISION
    for d in ds:
        t = 65536 - d
        w = [1 << 30]
        while len(w) <= MAX_RADIUS + 1:
            w.append((w[-1] * t) >> 16)
        radius = max(1, max(k for k in range(MAX_RADIUS + 1) if w[k] >= 1 << 15))
        weights = [w[abs(k)] for k in range(-radius, radius + 1)] + [2 * w[radius + 1] + 1]
        big = sum(weights)
        freq = [max(1, (x << PRECISION) // big) for x in weights]
        freq[radius] += total - sum(freq)
        if freq[radius] < 1:
            raise AssertionError("table family construction failed")  # cannot happen for these parameters
        rows.append(freq)
        lengths.append(2 * radius + 1)
    width = max(lengths) + 2
    cdf = np.zeros((len(rows), width), np.int32)
    for i, f in enumerate(rows):
        c = np.concatenate([[0], np.cumsum(f)])
        cdf[i, : c.size] = c
        cdf[i, c.size :] = c[-1]
    length = np.asarray(lengths, np.int32)
    return CdfTables(cdf, length, -(length // 2), PRECISION)


@lru_cache(maxsize=1)
def _decoder() -> rans.Decoder:
    return rans.Decoder(family())


@lru_cache(maxsize=1)
def _bits() -> tuple[np.ndarray, int]:
    """Code length in bits of u = -V..V under every table (encoder only: it chooses, floats are fine)."""
    tab = family()
    v = MAX_RADIUS + 255
    u = np.arange(-v, v + 1)
    out = np.empty((tab.count, u.size))
    for j in range(tab.count):
        sym = u - tab.offset[j]
        esc = (sym < 0) | (sym >= tab.length[j])
        s = np.where(esc, tab.length[j], sym)
        f = tab.cdf[j, s + 1] - tab.cdf[j, s]
        out[j] = PRECISION - np.log2(f) + esc * 8 * (1 + np.log2(np.abs(u) + 1) // 7)
    return out, v


def activity(base: np.ndarray) -> np.ndarray:
    """Sum over channels of |B[y, x+1] - B[y, x-1]| + |B[y+1, x] - B[y-1, x]| (edge-replicated), int32."""
    b = np.pad(base.astype(np.int32), ((1, 1), (1, 1), (0, 0)), mode="edge")
    gx = np.abs(b[1:-1, 2:] - b[1:-1, :-2])
    gy = np.abs(b[2:, 1:-1] - b[:-2, 1:-1])
    return (gx + gy).sum(axis=2, dtype=np.int32)


def _box3(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, 1)
    h, w = a.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3))


def _bucket(x: np.ndarray, thresholds) -> np.ndarray:
    return np.searchsorted(np.asarray(thresholds, np.int64), x, side="right").astype(np.int32)


def _contexts(c: int, act_b: np.ndarray, prev: np.ndarray | None, nb_thr) -> np.ndarray:
    if c == 0:
        return act_b
    p = np.clip(prev, -2, 2).astype(np.int32) + 2
    n = _bucket(_box3(np.abs(prev.astype(np.int32))), nb_thr)
    return (act_b * PREV_BUCKETS + p) * NB_BUCKETS + n


def _n_contexts(c: int) -> int:
    return A_BUCKETS if c == 0 else A_BUCKETS * PREV_BUCKETS * NB_BUCKETS


def _prediction(alpha: int, prev: np.ndarray | None) -> np.ndarray | int:
    return 0 if prev is None or alpha == 0 else (alpha * prev.astype(np.int32)) >> 4


def _choose(u: np.ndarray, ctx: np.ndarray, n_ctx: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Per context the (table, mean) with the fewest bits, and the total bits."""
    bits, v = _bits()
    span = 2 * v + 1
    hist = np.bincount(ctx.ravel() * span + np.clip(u.ravel(), -v, v) + v, minlength=n_ctx * span).reshape(n_ctx, span)
    tables = np.zeros(n_ctx, np.int64)
    means = np.zeros(n_ctx, np.int64)
    total = 0.0
    grid = np.arange(span) - v
    for k in np.flatnonzero(hist.sum(axis=1)):
        h = hist[k]
        cum = np.cumsum(h)
        m = int(np.clip(grid[np.searchsorted(cum, cum[-1] / 2)], -127, 127))
        nz = np.flatnonzero(h)
        idx = np.clip(grid[nz] - m + v, 0, span - 1)
        cost = bits[:, idx] @ h[nz]
        j = int(np.argmin(cost))
        tables[k], means[k], total = j, m, total + float(cost[j])
    return tables, means, total


def _thresholds(values: np.ndarray, count: int) -> list[int]:
    qs = np.quantile(values, np.arange(1, count) / count) if values.size else np.zeros(count - 1)
    return [int(min(65535, max(0, np.floor(x)))) for x in qs]


def _plan(original: np.ndarray, base: np.ndarray, max_error: int):
    """Everything the encoder decides: q, thresholds, alphas, per-channel (contexts, u, tables, means, bits)."""
    q = quantize(original, base, max_error)
    chans = q.shape[2]
    act = activity(base)
    a_thr = _thresholds(act, A_BUCKETS)
    act_b = _bucket(act, a_thr)
    nb_thr: list[int] = []
    if chans > 1:
        s = _box3(np.abs(q[:, :, 0].astype(np.int32)))
        nz = s[s > 0]
        nb_thr = [0, int(min(65535, np.median(nz))) if nz.size else 1]
    alphas, chosen = [], []
    for c in range(chans):
        prev = q[:, :, c - 1] if c else None
        ctx = _contexts(c, act_b, prev, nb_thr)
        best = None
        for alpha in [0] if c == 0 else sorted({0, _alpha(q[:, :, c], prev)}):
            u = q[:, :, c].astype(np.int32) - _prediction(alpha, prev)
            tables, means, bits = _choose(u, ctx, _n_contexts(c))
            if best is None or bits < best[0]:
                best = (bits, alpha, u, tables, means)
        bits, alpha, u, tables, means = best
        if c:
            alphas.append(alpha)
        chosen.append((ctx, u, tables, means, bits))
    return q, a_thr, nb_thr, alphas, chosen


def _alpha(cur: np.ndarray, prev: np.ndarray) -> int:
    p = prev.astype(np.float64).ravel()
    den = float(p @ p)
    return 0 if den == 0 else int(np.clip(np.rint(16 * float(cur.astype(np.float64).ravel() @ p) / den), -64, 64))


def _params(chans: int, a_thr, nb_thr, alphas, chosen) -> bytes:
    raw = struct.pack("<BBBB", FORMAT, chans, A_BUCKETS, NB_BUCKETS if chans > 1 else 1)
    raw += struct.pack(f"<{len(a_thr)}H", *a_thr) + struct.pack(f"<{len(nb_thr)}H", *nb_thr)
    raw += struct.pack(f"<{len(alphas)}b", *alphas)
    for _, _, tables, means, _ in chosen:
        raw += np.stack([tables.astype(np.uint8), means.astype(np.int8).view(np.uint8)], axis=1).tobytes()
    return zlib.compress(raw, 9)


def estimate_bytes(original: np.ndarray, base: np.ndarray, max_error: int) -> float:
    """``encode``'s total payload, estimated from the model's code lengths without running the coder."""
    q, a_thr, nb_thr, alphas, chosen = _plan(original, base, max_error)
    return len(_params(q.shape[2], a_thr, nb_thr, alphas, chosen)) + sum(b / 8 + 4 * _lanes(u.size, b) + 4 for _, u, _, _, b in chosen)


def _lanes(n: int, bits: float) -> int:
    return rans.choose_lanes(n, bits)


def encode(original: np.ndarray, base: np.ndarray, max_error: int) -> list[tuple[int, int, bytes]]:
    """Substreams (id, lanes, payload) of the residual layer of ``original`` (HxWxC uint8) over ``base``."""
    original, base = _check(original), _check(base)
    if original.shape != base.shape:
        raise ValueError(f"original {original.shape} and base {base.shape} differ in shape")
    q, a_thr, nb_thr, alphas, chosen = _plan(original, base, max_error)
    subs = [(FIRST_ID, 1, _params(q.shape[2], a_thr, nb_thr, alphas, chosen))]
    tab = family()
    for c, (ctx, u, tables, means, bits) in enumerate(chosen):
        lanes = _lanes(u.size, bits)
        subs.append((FIRST_ID + 1 + c, lanes, rans.encode(u - means[ctx], tables[ctx], tab, lanes)))
    return subs


def _check(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError("residual layer images must be HxW or HxWxC uint8")
    return img[:, :, None] if img.ndim == 2 else img


def _read_params(raw: bytes, chans: int):
    d = zlib.decompressobj()
    try:
        data = d.decompress(raw, 1 << 16)  # bounded: the parameters are < 2 KB
    except zlib.error:
        raise CorruptStreamError("residual parameters are not valid zlib data; the file is corrupt") from None
    if not d.eof or d.unconsumed_tail or d.unused_data:
        raise CorruptStreamError("residual parameters are truncated or oversized; the file is corrupt")
    try:
        fmt, c, a, nb = struct.unpack_from("<BBBB", data, 0)
        if fmt != FORMAT or c != chans or a != A_BUCKETS or nb != (NB_BUCKETS if chans > 1 else 1):
            raise CorruptStreamError("residual parameters do not match this format; the file is corrupt")
        pos = 4
        a_thr = struct.unpack_from(f"<{a - 1}H", data, pos)
        pos += 2 * (a - 1)
        nb_thr = struct.unpack_from(f"<{nb - 1}H", data, pos) if chans > 1 else ()
        pos += 2 * len(nb_thr)
        alphas = struct.unpack_from(f"<{chans - 1}b", data, pos)
        pos += chans - 1
        per = []
        for ch in range(chans):
            n = _n_contexts(ch)
            arr = np.frombuffer(data, np.uint8, 2 * n, pos).reshape(n, 2)
            pos += 2 * n
            per.append((arr[:, 0].astype(np.int64), arr[:, 1].view(np.int8).astype(np.int64)))
    except struct.error:
        raise CorruptStreamError("residual parameters are truncated; the file is corrupt") from None
    except ValueError:
        raise CorruptStreamError("residual parameters are truncated; the file is corrupt") from None
    if pos != len(data):
        raise CorruptStreamError("residual parameters have trailing bytes; the file is corrupt")
    if any(int(t.max(initial=0)) >= family().count for t, _ in per):
        raise CorruptStreamError("residual table index out of range; the file is corrupt")
    return a_thr, nb_thr, alphas, per


def decode(subs: dict[int, tuple[int, bytes]], base: np.ndarray, max_error: int) -> np.ndarray:
    """X' (HxWxC uint8, like ``base``) from the residual substreams; within ``max_error`` of the original."""
    base = _check(base)
    h, w, chans = base.shape
    if FIRST_ID not in subs or any(FIRST_ID + 1 + c not in subs for c in range(chans)):
        raise CorruptStreamError("stream lacks its residual substreams")
    a_thr, nb_thr, alphas, per = _read_params(subs[FIRST_ID][1], chans)
    act_b = _bucket(activity(base), a_thr)
    q = np.empty((h, w, chans), np.int16)
    for c in range(chans):
        prev = q[:, :, c - 1] if c else None
        ctx = _contexts(c, act_b, prev, nb_thr)
        tables, means = per[c]
        lanes, payload = subs[FIRST_ID + 1 + c]
        u = _decoder().decode(payload, tables[ctx].ravel(), lanes).reshape(h, w)
        qc = u + means[ctx] + _prediction(alphas[c - 1] if c else 0, prev)
        if np.abs(qc).max(initial=0) > MAX_Q:
            raise CorruptStreamError("residual value out of range; the file is corrupt")
        q[:, :, c] = qc
    return reconstruct(base, q, max_error)
