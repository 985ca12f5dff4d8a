"""The integer entropy model: from z symbols to every y table index, and the two substreams.

* ``z`` (hyper-latent, C_z x h x w) is coded with one fixed table per channel.
* The integer hyper-decoder maps ``z`` to, per y element, a scale index ``s``
  in ``0..S-1`` and a mean ``mq`` in 1/F units. With ``m = floor(mq / F)`` and
  ``f = mq - F*m``, the element codes ``y - m`` with table ``s*F + f`` (a
  Gaussian of mean f/F and scale ``scales[s]``).
* Elements with ``s < skip_below`` are not coded: both sides infer
  ``y = floor((mq + F/2) / F)``, so the encoder must reconstruct with that value.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import CorruptStreamError
from . import rans
from .cdf import CdfTables, gaussian_pmf, logistic_pmf
from .intnet import IntNet

Y_CLAMP = 127  # the synthesis input is int8: |y| <= 127
Z_CLAMP = 127  # the integer hyper-decoder input is int8 too


@dataclass(frozen=True)
class LatentConfig:
    y_channels: int
    z_channels: int
    scale_min: float
    scale_max: float
    scale_levels: int
    mean_steps: int
    skip_below: int
    precision: int

    def __post_init__(self) -> None:
        if self.scale_levels < 2 or self.mean_steps < 1 or not 0 <= self.skip_below <= self.scale_levels:
            raise ValueError("invalid latent configuration")

    def scales(self) -> np.ndarray:
        step = math.log(self.scale_max / self.scale_min) / (self.scale_levels - 1)
        return self.scale_min * np.exp(step * np.arange(self.scale_levels))


def build_y_tables(cfg: LatentConfig) -> CdfTables:
    pmfs, offs = [], []
    min_prob = 2.0**-cfg.precision
    for s in cfg.scales():
        for f in range(cfg.mean_steps):
            p, lo = gaussian_pmf(f / cfg.mean_steps, float(s), min_prob)
            pmfs.append(p)
            offs.append(lo)
    return CdfTables.from_pmfs(pmfs, offs, cfg.precision)


def build_z_tables(means: np.ndarray, scales: np.ndarray, precision: int) -> CdfTables:
    pmfs, offs = [], []
    for m, s in zip(np.ravel(means), np.ravel(scales)):
        p, lo = logistic_pmf(float(m), float(s), 2.0**-precision)
        pmfs.append(p)
        offs.append(lo)
    return CdfTables.from_pmfs(pmfs, offs, precision)


@dataclass
class Parse:
    """Everything the bitstream means, before any transform runs."""

    z: np.ndarray  # (Cz, hz, wz) int64
    y: np.ndarray  # (M, hy, wy) int16 (|y| <= 127), skipped elements filled in
    table: np.ndarray  # (M, hy, wy) y table index, in the hyper-decoder's integer dtype
    coded: np.ndarray  # (M, hy, wy) bool
    stats: dict = field(default_factory=dict)

    def digest(self) -> str:
        h = hashlib.sha256()
        for a in (self.z, self.y, self.table, self.coded):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()


def _round_clamped(y: np.ndarray) -> np.ndarray:
    """Nearest integers as int16 (int64 would be 4x a 12 MP image's 18 MB); the coder clamps to
    +-127 anyway, and values beyond int16 are counted as clamped all the same."""
    y = np.rint(y) if y.dtype.kind == "f" else y
    return np.clip(y, -(1 << 15), (1 << 15) - 1).astype(np.int16)


class EntropyModel:
    def __init__(self, cfg: LatentConfig, hyper: IntNet, y_tables: CdfTables, z_tables: CdfTables):
        if y_tables.count != cfg.scale_levels * cfg.mean_steps or z_tables.count != cfg.z_channels:
            raise ValueError("table counts do not match the latent configuration")
        self.cfg = cfg
        self.hyper = hyper
        self.y_tables = y_tables
        self.z_tables = z_tables
        self._y_dec = rans.Decoder(y_tables)
        self._z_dec = rans.Decoder(z_tables)

    def y_params(self, z: np.ndarray, y_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(table index, integer mean offset, coded mask) for every y element, from z alone.

        The hyper-decoder's last layer (2M channels at the latents' resolution) runs band by band
        of latent rows into these three arrays, so its whole output (and its temporaries) never
        exist at once: a 48 MP photo's would be ~0.3 GB in int16.
        """
        cfg = self.cfg
        m = cfg.y_channels
        *front, last = self.hyper.layers
        h = np.asarray(z, dtype=np.int64)
        for layer in front:
            h = layer(h)
        if last.weight.shape[0] != 2 * m or last.d2s != 1 or last.output_hw(*h.shape[1:]) != tuple(y_shape):
            raise CorruptStreamError("hyper-latent shape does not match the image size")
        dt = last.out_dtype
        table, base, coded = np.empty((m, *y_shape), dt), np.empty((m, *y_shape), dt), np.empty((m, *y_shape), bool)
        f = dt.type(cfg.mean_steps)
        log_f = cfg.mean_steps.bit_length() - 1
        pow2 = cfg.mean_steps == 1 << log_f
        for r0, r1, raw in last.bands(h):
            mq, s = raw[:m], raw[m:]
            t, b, c = table[:, r0:r1], base[:, r0:r1], coded[:, r0:r1]
            skipped = s < cfg.skip_below
            np.logical_not(skipped, out=c)
            # base = floor((mq + F/2 * skipped) / F): the mean's integer part where coded, the inferred
            # (rounded) value where skipped; arithmetic, not a masked copy (numpy's where= is slow)
            np.multiply(skipped, f // 2, out=b, casting="unsafe")
            b += mq
            # table = s*F + (mq - F*floor(mq / F)): the scale's row plus the mean's fraction in 1/F steps
            if pow2:  # F = 2**log_f: floor division is an arithmetic shift, the remainder a mask
                b >>= log_f
                np.left_shift(s, log_f, out=t)
                t |= mq & (f - 1)
            else:
                np.floor_divide(b, f, out=b)
                np.remainder(mq, f, out=t)
                t += s * f
        return table, base, coded

    def _z_table(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(self.cfg.z_channels)[:, None, None], shape)

    def encode(self, y: np.ndarray, z: np.ndarray, rd_weight: np.ndarray | None = None) -> tuple[Parse, list[tuple[int, int, bytes]]]:
        """Code latents. Returns the parse (with the y the decoder will see) and substreams as
        (id, lanes, payload).

        ``y`` is the analysis output (float, or integers already). Without ``rd_weight`` every element
        is rounded to the nearest integer. With it (per channel: bits worth one squared latent step of
        error, see ``models/rdo.py``) every coded element becomes whichever of ``floor(y)`` and
        ``floor(y) + 1`` costs less in table bits plus ``rd_weight * error**2``: the encoder spends
        bits where they buy distortion. The decoder is unaffected (any integer is a valid latent).
        """
        z = np.clip(np.asarray(z, dtype=np.int64), -Z_CLAMP, Z_CLAMP)
        y = np.asarray(y)
        table, base, coded = self.y_params(z, y.shape[1:])
        if rd_weight is None or y.dtype.kind in "iu":
            y_final = _round_clamped(y)
        else:
            y_final = self._rd_round(y, table, base, coded, np.asarray(rd_weight, np.float64))
        del y  # in place from here: these are per-element arrays of the whole image
        clamped = int(np.count_nonzero(np.abs(y_final) > Y_CLAMP))
        np.clip(y_final, -Y_CLAMP, Y_CLAMP, out=y_final)
        skip_changed = int(np.count_nonzero((y_final != base) & ~coded))
        np.copyto(y_final, base, where=~coded, casting="unsafe")
        zt = self._z_table(z.shape)
        z_bits = self.z_tables.model_bits(z.ravel(), zt.ravel())
        yv = (y_final - base)[coded]
        yt = table[coded]
        y_bits = self.y_tables.model_bits(yv, yt)
        z_lanes = rans.choose_lanes(z.size, z_bits)
        y_lanes = rans.choose_lanes(yv.size, y_bits)
        subs = [
            (1, z_lanes, rans.encode(z.ravel(), zt.ravel(), self.z_tables, z_lanes)),
            (2, y_lanes, rans.encode(yv, yt, self.y_tables, y_lanes)),
        ]
        stats = {
            "clamped": clamped,
            "skipped": int(coded.size - np.count_nonzero(coded)),
            "skip_changed": skip_changed,
            "y_elements": int(coded.size),
            "model_bits": z_bits + y_bits,
            "z_lanes": z_lanes,
            "y_lanes": y_lanes,
        }
        return Parse(z, y_final, table, coded, stats), subs

    def _rd_round(self, y: np.ndarray, table: np.ndarray, base: np.ndarray, coded: np.ndarray, weight: np.ndarray) -> np.ndarray:
        out = _round_clamped(y)  # skipped elements: the decoder infers them anyway
        flat = np.flatnonzero(coded)
        per_channel = y[0].size
        for i in range(0, flat.size, 1 << 20):  # a chunk at a time: float64 temporaries of a 12 MP image are GBs
            idx = flat[i : i + (1 << 20)]
            t, b, v = table.flat[idx].astype(np.int64), base.flat[idx].astype(np.int64), y.flat[idx].astype(np.float64)
            w = weight[idx // per_channel]
            lo = np.floor(v).astype(np.int64)
            cost_lo = self.y_tables.symbol_bits(lo - b, t) + w * (v - lo) ** 2
            cost_hi = self.y_tables.symbol_bits(lo + 1 - b, t) + w * (lo + 1 - v) ** 2
            out.flat[idx] = np.clip(np.where(cost_lo <= cost_hi, lo, lo + 1), -(1 << 15), (1 << 15) - 1)
        return out

    def decode(self, subs: dict[int, tuple[int, bytes]], z_shape: tuple[int, int, int], y_hw: tuple[int, int]) -> Parse:
        if 1 not in subs or 2 not in subs:
            raise CorruptStreamError("stream lacks its latent substreams")
        t0 = time.perf_counter()
        zt = self._z_table(z_shape)
        z_lanes, z_payload = subs[1]
        z = self._z_dec.decode(z_payload, zt.ravel(), z_lanes).reshape(z_shape)
        if np.abs(z).max(initial=0) > Z_CLAMP:
            raise CorruptStreamError("hyper-latent value out of range; the file is corrupt")
        t1 = time.perf_counter()
        table, base, coded = self.y_params(z, y_hw)
        t2 = time.perf_counter()
        if np.abs(base).max(initial=0) > Y_CLAMP:
            raise CorruptStreamError("latent value out of range; the file is corrupt")
        y_lanes, y_payload = subs[2]
        yv = self._y_dec.decode(y_payload, table[coded], y_lanes)
        yv += base[coded]  # int64: a corrupt value cannot wrap
        if np.abs(yv).max(initial=0) > Y_CLAMP:
            raise CorruptStreamError("latent value out of range; the file is corrupt")
        y = base if base.dtype == np.int16 else base.astype(np.int16)  # base is not needed after this: in place
        y[coded] = yv
        t3 = time.perf_counter()
        stats = {"hyper_s": t2 - t1, "entropy_s": (t1 - t0) + (t3 - t2), "coded": int(np.count_nonzero(coded)), "y_lanes": y_lanes}
        return Parse(z, y, table, coded, stats)
