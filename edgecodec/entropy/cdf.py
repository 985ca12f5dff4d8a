"""Integer CDF tables: quantized once at export, stored as data, only loaded at decode.

Quantization rule (documented in docs/bitstream.md): a table with support
``offset .. offset + n - 1`` has ``n + 1`` symbols, the last one being the
escape. Frequencies are ``max(1, round(p * 2**precision))`` so no symbol has
zero frequency; the total is then made exactly ``2**precision`` by adding or
removing counts at the most probable symbol (never below 1). Values outside
the support are coded as the escape symbol followed by the value in the bypass
substream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import BundleError

MAX_PRECISION = 16


def quantize_pmf(pmf: np.ndarray, precision: int) -> np.ndarray:
    """Integer frequencies summing to 2**precision, each >= 1. ``pmf`` includes the escape mass."""
    pmf = np.asarray(pmf, dtype=np.float64)
    total = 1 << precision
    if pmf.ndim != 1 or pmf.size < 2 or pmf.size > total // 2:
        raise ValueError(f"pmf of {pmf.size} symbols does not fit precision {precision}")
    pmf = np.clip(pmf, 0.0, None)
    pmf = pmf / pmf.sum()
    freq = np.maximum(1, np.rint(pmf * total)).astype(np.int64)
    excess = int(freq.sum()) - total
    # shift the rounding error onto the largest frequencies, one count at a time if needed
    while excess != 0:
        order = np.argsort(-freq, kind="stable")
        for i in order:
            if excess > 0:
                take = min(excess, int(freq[i]) - 1)
                freq[i] -= take
                excess -= take
            else:
                freq[i] -= excess
                excess = 0
            if excess == 0:
                break
    return freq


@dataclass(frozen=True)
class CdfTables:
    """A set of tables; row ``t`` has ``length[t]`` support symbols plus an escape.

    ``cdf[t, :length[t] + 2]`` are the cumulative frequencies (first 0, last
    ``2**precision``); the escape symbol is index ``length[t]``.
    """

    cdf: np.ndarray  # (T, S + 2) int32
    length: np.ndarray  # (T,) int32, support size without the escape
    offset: np.ndarray  # (T,) int32, value of support symbol 0
    precision: int

    def __post_init__(self) -> None:
        if not 1 <= self.precision <= MAX_PRECISION:
            raise BundleError(f"CDF precision {self.precision} outside 1..{MAX_PRECISION}")
        t = self.cdf.shape[0]
        if self.length.shape != (t,) or self.offset.shape != (t,):
            raise BundleError("CDF table arrays have inconsistent shapes")
        if t and (self.length.min() < 1 or self.length.max() + 2 > self.cdf.shape[1]):
            raise BundleError("CDF table lengths out of range")

    @property
    def count(self) -> int:
        return int(self.cdf.shape[0])

    @classmethod
    def from_pmfs(cls, pmfs: list[np.ndarray], offsets: list[int], precision: int) -> CdfTables:
        """``pmfs[t]`` gives the support probabilities; the escape gets the remaining mass."""
        width = max(len(p) for p in pmfs) + 2
        cdf = np.zeros((len(pmfs), width), dtype=np.int32)
        length = np.zeros(len(pmfs), dtype=np.int32)
        for t, p in enumerate(pmfs):
            p = np.asarray(p, dtype=np.float64)
            tail = max(1.0 - float(p.sum()), 0.0)
            freq = quantize_pmf(np.append(p, tail), precision)
            c = np.concatenate([[0], np.cumsum(freq)])
            cdf[t, : c.size] = c
            cdf[t, c.size :] = c[-1]
            length[t] = p.size
        return cls(cdf, length, np.asarray(offsets, dtype=np.int32), precision)

    def freq_and_start(self, table: np.ndarray, symbol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start = self.cdf[table, symbol]
        return self.cdf[table, symbol + 1] - start, start

    def symbol_bits(self, values: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Ideal cost in bits of each of ``values`` under its table (an escape: the escape symbol's
        cost, its bypass bytes excluded)."""
        sym = values.astype(np.int64) - self.offset[table]
        esc = (sym < 0) | (sym >= self.length[table])
        sym = np.where(esc, self.length[table], sym)
        f, _ = self.freq_and_start(table, sym)
        return self.precision - np.log2(f)

    def model_bits(self, values: np.ndarray, table: np.ndarray, chunk: int = 1 << 20) -> float:
        """Ideal cost in bits (cross-entropy) of ``values`` under these integer tables, escapes excluded.
        Summed a chunk at a time (bounded temporaries for any image size)."""
        values, table = np.ravel(values), np.ravel(table)
        return float(sum(np.sum(self.symbol_bits(values[i : i + chunk], table[i : i + chunk])) for i in range(0, values.size, chunk)))

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The arrays to store in a bundle's ``.npz`` (see ``from_arrays``)."""
        return {
            f"{prefix}cdf": self.cdf,
            f"{prefix}length": self.length,
            f"{prefix}offset": self.offset,
            f"{prefix}precision": np.asarray(self.precision, dtype=np.int32),
        }

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "") -> CdfTables:
        try:
            return cls(
                np.asarray(arrays[f"{prefix}cdf"], dtype=np.int32),
                np.asarray(arrays[f"{prefix}length"], dtype=np.int32),
                np.asarray(arrays[f"{prefix}offset"], dtype=np.int32),
                int(arrays[f"{prefix}precision"]),
            )
        except KeyError as e:
            raise BundleError(f"bundle tables lack array {e.args[0]!r}") from None


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.array([math.erfc(-v / math.sqrt(2.0)) for v in np.ravel(x)]).reshape(np.shape(x))


def _logistic_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(np.asarray(x) / 2.0))


def _trimmed(cdf, mean: float, scale: float, min_prob: float, radius: int) -> tuple[np.ndarray, int]:
    """Integers around ``mean`` whose probability is at least ``min_prob`` (at least one).

    Symbols rarer than one count at the table's precision would be given a
    whole count anyway; leaving them to the escape path wastes less.
    """
    lo = math.floor(mean) - radius
    k = np.arange(lo, math.ceil(mean) + radius + 1, dtype=np.float64)
    pmf = cdf((k + 0.5 - mean) / scale) - cdf((k - 0.5 - mean) / scale)
    keep = np.flatnonzero(pmf >= min_prob)
    if keep.size == 0:
        keep = np.array([int(np.argmax(pmf))])
    a, b = int(keep[0]), int(keep[-1])
    return pmf[a : b + 1], lo + a


def gaussian_pmf(mean: float, scale: float, min_prob: float) -> tuple[np.ndarray, int]:
    """Discretized Gaussian: (probabilities of the kept integers, value of the first)."""
    radius = int(math.ceil(scale * 9 + 2))
    return _trimmed(_normal_cdf, mean, scale, min_prob, radius)


def logistic_pmf(mean: float, scale: float, min_prob: float) -> tuple[np.ndarray, int]:
    radius = int(math.ceil(abs(mean) + scale * 25 + 2))
    return _trimmed(_logistic_cdf, mean, scale, min_prob, radius)
