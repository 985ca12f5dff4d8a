"""Integer-exact synthesis: latents -> pixels identical, bit for bit, on every device.

The base of the residual layer (``--max-error``): the encoder codes ``original - base`` with a hard
per-pixel bound, which holds only if the decoder computes the very same ``base``. The float runtimes
differ from one another by up to 3 levels; this is integer arithmetic, so every CPU, BLAS, thread
count and numpy version (1.24 and 2.x) gives the same bytes.

Definition. The net is ``g_s`` of ``transforms.npz`` (``decoder='full'``) or ``f_s`` of ``fast.npz``
(``'fast'``): four 3x3 stride-1 convolutions, zero padding 1, each followed by depth-to-space 2.
Each layer ``i`` (an ``intnet.IntLayer``) maps integer input ``x`` (C, h, w) to ``q``:

1. ``acc[o,y,x] = sum_{c,ky,kx} W[o,c,ky,kx] * x[c, y+ky-1, x+kx-1]`` (``x = 0`` outside), exact;
2. ``q[o] = clamp(((acc[o] + bias[o]) * mult[o] + 2**(shift[o] - 1)) >> shift[o], 0, 255)``: integer
   arithmetic, ``>>`` the arithmetic (flooring) shift, so rounding half up; the clamp at 0 is the
   ReLU of layers 0..2 and, for the last layer, the pixel range;
3. depth-to-space (PyTorch ``pixel_shuffle``): channel ``4c + 2i + j`` at ``(y, x)`` goes to channel
   ``c`` at ``(2y + i, 2x + j)`` of the next layer's input.

Layer 0's input is ``y_hat``, integers in ``[-127, 127]``; layers 1..3 take the previous ``q`` in
``[0, 255]``; the last ``q`` (R, G, B at 16x) are the pixels, cropped to height x width.

The integer parameters come from the bundle's arrays by IEEE-754 binary64 arithmetic, each
operation correctly rounded (float16/float32 arrays are widened to float64 first, exactly), so
every device derives the same integers; ``rint`` rounds half to even:

* layer 0 (float weights ``w``, bias ``b``, input ``y_hat * inv_gain``), rebuilt per quality:
  ``wf[o,c,ky,kx] = w[o,c,ky,kx] * float64(float32(inv_gain[c]))`` (an exact product);
  ``s_w[o] = max_{c,ky,kx} |wf[o,c,ky,kx]| / 32767`` (1 where that is 0);
  ``W = rint(wf / s_w[o])``, int16 in ``[-32767, 32767]``; ``bias = rint(b / s_w[o])``;
  ``real[o] = s_w[o] / s_out``;
* layers 1..3 (the bundle's int8 codes ``wq`` in ``[-127, 127]`` with zero points 0, per-channel
  ``wscale``, input grid ``inq = [s_in, 0, 0, 255]``): ``W = wq``;
  ``bias = rint(b / (s_in * wscale[o]))``; ``real[o] = (s_in * wscale[o]) / s_out``;
* ``s_out`` is the next layer's ``inq`` scale, and ``1 / 255`` for the last layer (pixels);
* ``(mult, shift) = fixed_point_exact(real, bits)``: ``(m, e) = frexp(real)`` (``real = m * 2**e``,
  ``0.5 <= m < 1``), ``mult = rint(m * 2**bits)``, ``shift = bits - e``; where ``mult`` rounded up to
  ``2**bits``: ``mult = 2**(bits - 1)``, ``shift = shift - 1``. No ``log2``/``exp2``: a libm may
  round those differently and move ``floor(log2(real))`` near a power of two;
* ``bits[o] = min(31, 62 - bit_length(B[o]))``, ``B[o] = in_max * sum |W[o]| + |bias[o]|``
  (``in_max`` 127 for layer 0, 255 after), so step 2 never leaves int64. For the shipped bundle
  (and any layer with ``B < 2**31``) ``bits = 31``: ``mult`` in ``[2**30, 2**31)``. A bundle needing
  ``bits < 16`` or ``shift`` outside 1..62 is refused.

How it is computed here (any implementation of the above is conformant): each convolution is a
float GEMM of integer operands, float32 for int8 weights over reduction slices in which every partial
sum stays below 2**24 (``intnet.exact_slices``; one slice for the shipped layers) and float64 for
layer 0's int16 weights (partial sums below ``1728 * 32767 * 127 < 2**53``), so exact in any
summation order or thread count; step 2 runs in int64. Activations are uint8, written by each
layer's epilogue through a depth-to-space view into the next layer's zero-bordered buffer, a band of
output rows per GEMM. A large image runs window by window (``tiling.plan``: cores of
``WINDOW_CORE`` latents plus a 2-latent halo; the synthesis sees under 2 latents around a pixel, so
every core is the whole-image result, exactly).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import tiling
from ..errors import BundleError
from ..nn import CHUNK_BYTES, weight_matrix
from .intnet import IntLayer

W16 = 32767  # layer 0's int16 weight codes
Y_MAX = 127  # |y_hat| bound: layer 0's in_max
PIXEL_MAX = 255
MIN_BITS = 16  # fewest significant bits a requantization multiplier may keep
WINDOW_CORE = 64  # window core in latents (1024 px): ~30 MB of activations per window
BAND_BYTES = 4 << 20  # patch matrix per GEMM: cache-sized bands ...
MIN_COLUMNS = 2048  # ... but at least this many output pixels per GEMM (each one a BLAS thread barrier)


def fixed_point_exact(real: np.ndarray, bits: np.ndarray | int = 31) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mult, shift) with ``mult`` in ``[2**(bits - 1), 2**bits)`` and ``mult / 2**shift`` =
    ``real`` rounded (half to even) to ``bits`` significant bits, from exact operations only
    (``frexp``, ``ldexp``, ``rint``). ``intnet.fixed_point`` floors a ``log2``, which a math library
    may round onto the integer above near a power of two."""
    real = np.asarray(real, dtype=np.float64)
    bits = np.broadcast_to(np.asarray(bits, dtype=np.int64), real.shape)
    if not (np.all(real > 0) and np.all(real < np.inf)):
        raise BundleError("requantization scale must be positive and finite")
    if np.any(bits < 1) or np.any(bits > 31):
        raise BundleError("requantization multiplier width out of range")
    m, e = np.frexp(real)  # real = m * 2**e, 0.5 <= m < 1: exact
    mult = np.rint(np.ldexp(m, bits.astype(np.int32))).astype(np.int64)  # [2**(bits-1), 2**bits]
    shift = bits - e.astype(np.int64)
    top = mult == np.left_shift(np.int64(1), bits)  # rounded up to the next power of two
    mult[top] >>= 1
    shift[top] -= 1
    if shift.min() < 1 or shift.max() > 62:
        raise BundleError("requantization scale out of the integer path's range")
    return mult, shift


def requantized(weight: np.ndarray, bias: np.ndarray, real: np.ndarray, in_max: int) -> IntLayer:
    """The ``IntLayer`` (clamp 0..255, depth-to-space 2) of integer ``weight`` (Cout, Cin, 3, 3),
    int64 ``bias`` and float64 scales ``real``, its multipliers as wide as int64 allows (``bits``)."""
    cout = weight.shape[0]
    l1 = np.abs(weight.astype(np.int64)).reshape(cout, -1).sum(1)  # an integer sum: exact
    bound = [int(v) * in_max + abs(int(b)) for v, b in zip(l1, bias)]
    bits = np.array([min(31, 62 - v.bit_length()) for v in bound], np.int64)
    if bits.min() < MIN_BITS:
        raise BundleError("integer synthesis layer too large for exact int64 requantization")
    mult, shift = fixed_point_exact(real, bits)
    lo, hi = np.zeros(cout, np.int64), np.full(cout, PIXEL_MAX, np.int64)
    return IntLayer(weight, np.asarray(bias, np.int64), mult, shift, lo, hi, stride=1, d2s=2, in_max=in_max)


def _f64(a) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def _get(arrays, key: str):
    return arrays[key] if key in arrays else None


class _Spec:
    """One layer's bundle arrays, checked against what the integer path supports."""

    def __init__(self, arrays, key: str, first: bool):
        try:
            self.b = _f64(arrays[key + "b"])
            stride, d2s, relu = (int(v) for v in arrays[key + "meta"])
            inq = _get(arrays, key + "inq")
            if first:
                if key + "w" not in arrays or inq is not None:
                    raise BundleError(f"integer synthesis needs float weights and no input grid in {key}")
                w = self.w = _f64(arrays[key + "w"])
            else:
                if key + "wq" not in arrays or inq is None:
                    raise BundleError(f"integer synthesis needs int8 weights and an input grid in {key}")
                w = self.wq = np.asarray(arrays[key + "wq"])
                symmetric = not np.any(np.asarray(arrays[key + "wzp"]) != 0)
                if w.dtype != np.int8 or not symmetric or int(np.abs(w.astype(np.int64)).max(initial=0)) > 127:
                    raise BundleError(f"{key}wq must be symmetric int8 in [-127, 127]")
                self.wscale = _f64(arrays[key + "wscale"])
                s, zp, lo, hi = (float(v) for v in inq)
                if not (s > 0 and zp == 0 and lo == 0 and hi == PIXEL_MAX):
                    raise BundleError(f"integer synthesis needs uint8 activation grids [s, 0, 0, 255], got {list(inq)} in {key}")
                self.s_in = s
        except KeyError as e:
            raise BundleError(f"bundle lacks synthesis array {e.args[0]!r}") from None
        if w.ndim != 4 or w.shape[2:] != (3, 3) or stride != 1 or d2s != 2:
            raise BundleError(f"integer synthesis supports 3x3 stride-1 layers with depth-to-space 2 ({key})")
        self.relu = bool(relu)
        self.cout, self.cin = w.shape[:2]


class _Step:
    """An ``IntLayer``'s fused executor: GEMMs per band of output rows straight from the zero-bordered
    input, then step 2 in int64 written as uint8 through a depth-to-space view.

    Two exact ways to the accumulator (both need the layer's reduction in one exact slice, so every
    partial sum of any subset of its terms is exact in the GEMM's float type):

    * ``im2col``: ``W (Cout, 9 Cin) @ patches (9 Cin, pixels)``; at stride 1 a patch row ``(c, ky, kx)``
      is one contiguous run of the flat padded input;
    * ``taps`` (few outputs, as in the last layer): ``W (9 Cout, Cin) @ input (Cin, pixels)``, one GEMM
      for the nine taps, whose shifted (Cout, pixels) blocks are then summed: no 9x patch matrix.
    """

    def __init__(self, layer: IntLayer):
        self.layer = layer
        self.slices = list(layer._slices)  # [(row0, row1, (Cout, rows) float32 or float64 weights)]
        self.ftype = self.slices[0][2].dtype
        self.cout, self.cin = layer.weight.shape[:2]
        self.taps = len(self.slices) == 1 and self.cout <= self.cin
        if self.taps:  # row t * Cout + o: W[o, :, t // 3, t % 3]
            w = layer.weight.astype(self.ftype).transpose(2, 3, 0, 1)
            self.w9 = np.ascontiguousarray(w.reshape(9 * self.cout, self.cin))
        col = (-1, 1, 1)
        self.mult = layer.mult.reshape(col)
        self.shift = layer.shift.reshape(col)
        self.const = layer._const.reshape(col)  # bias * mult + 2**(shift - 1)
        self._keep: tuple[bytes, list] | None = None

    def _slices_for(self, keep: np.ndarray | None) -> list:
        """The weight slices for only the input channels ``keep`` (the others are all zero: their
        terms are zeros, so dropping them leaves every sum as it is)."""
        if keep is None:
            return self.slices
        if self._keep is None or self._keep[0] != keep.tobytes():
            (_, _, wt), cout = self.slices[0], self.cout
            sub = np.ascontiguousarray(wt.reshape(cout, self.cin, 9)[:, keep].reshape(cout, -1))
            self._keep = (keep.tobytes(), [(0, sub.shape[1], sub)])
        return self._keep[1]

    def run(self, src: np.ndarray, h: int, w: int, dst: np.ndarray, keep: np.ndarray | None = None) -> None:
        """``src``: the zero-bordered input (Cin, h + 3, w + 2) (the extra zero row: slack for the flat
        patches), only the channels ``keep`` when given (im2col, one slice); ``dst``: the
        (Cout / 4, 2h, 2w) uint8 output, a view allowed."""
        cin, cout, wp = src.shape[0], self.cout, w + 2
        slices = self._slices_for(keep) if keep is not None and not self.taps else self.slices
        isz = self.ftype.itemsize
        row_bytes = (9 * cout if self.taps else 9 * cin) * wp * isz
        rows = max(BAND_BYTES // row_bytes, min(-(-MIN_COLUMNS // wp), CHUNK_BYTES // row_bytes))
        rows = max(1, min(h, rows))
        if self.taps:
            x_buf = np.empty(cin * (rows + 3) * wp, self.ftype)
            tap_buf = np.empty(9 * cout * (rows * wp + 2 * wp + 2), self.ftype)
        else:
            cols_buf = np.empty(9 * cin * rows * wp, self.ftype)
        prod_buf = np.empty(cout * rows * wp, self.ftype)
        acc_buf = np.empty(cout * rows * w, np.int64)
        sc, sr, se = src.strides
        dc, dy, dx = dst.strides
        co = cout // 4
        dview = as_strided(dst, (co, 2, 2, h, w), (dc, dy, dx, dy * 2, dx * 2))
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            n = (r1 - r0) * wp  # whole padded rows: each row's 2 extra columns are skipped below
            acc = acc_buf[: cout * (r1 - r0) * w].reshape(cout, r1 - r0, w)
            if self.taps:
                span = n + 2 * wp + 2  # input columns the nine shifted blocks read
                x = x_buf[: cin * (r1 - r0 + 3) * wp].reshape(cin, -1)
                x[...] = src[:, r0 : r1 + 3].reshape(cin, -1)
                t9 = np.matmul(self.w9, x[:, :span], out=tap_buf[: 9 * cout * span].reshape(9 * cout, span))
                p = prod_buf[: cout * n].reshape(cout, n)
                np.copyto(p, t9[:cout, :n])
                for t in range(1, 9):
                    off = (t // 3) * wp + t % 3
                    p += t9[t * cout : (t + 1) * cout, off : off + n]  # exact: a partial sum of the slice
                np.copyto(acc, p.reshape(cout, r1 - r0, wp)[:, :, :w], casting="unsafe")
            else:
                k9 = 9 * cin
                cols = cols_buf[: k9 * n].reshape(k9, n)
                cols.reshape(cin, 3, 3, n)[...] = as_strided(src[:, r0:], (cin, 3, 3, n), (sc, sr, se, se))
                for i, (a, b, wt) in enumerate(slices):
                    p = np.matmul(wt, cols[a:b], out=prod_buf[: cout * n].reshape(cout, n))  # exact integers
                    p = p.reshape(cout, r1 - r0, wp)[:, :, :w]
                    if i == 0:
                        np.copyto(acc, p, casting="unsafe")
                    else:
                        acc += p.astype(np.int64)
            acc *= self.mult
            acc += self.const
            acc >>= self.shift
            np.clip(acc, 0, PIXEL_MAX, out=acc)
            np.copyto(dview[:, :, :, r0:r1], acc.reshape(co, 2, 2, r1 - r0, w), casting="unsafe")


def _padded(c: int, h: int, w: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A (c, h + 3, w + 2) buffer with zero borders (and a zero slack row), and its interior."""
    buf = np.empty((c, h + 3, w + 2), dtype)
    buf[:, :1] = 0
    buf[:, h + 1 :] = 0
    buf[:, 1 : h + 1, :1] = 0
    buf[:, 1 : h + 1, w + 1 :] = 0
    return buf, buf[:, 1 : h + 1, 1 : w + 1]


class IntegerSynthesis:
    """``IntegerSynthesis(bundle, 'full' | 'fast')(y_hat, inv_gain, height, width)`` -> HxWx3 uint8,
    the synthesis (``g_s`` or the fast ``f_s``) in exact integer arithmetic (module docstring)."""

    def __init__(self, bundle, decoder: str = "full"):
        if decoder not in ("full", "fast"):
            raise ValueError(f"unknown decoder {decoder!r}; expected 'full' or 'fast'")
        net = "g_s" if decoder == "full" else "f_s"
        arrays = bundle.transforms if decoder == "full" else bundle.fast_transforms
        if f"{net}.count" not in arrays:
            raise BundleError(f"the bundle lacks the synthesis {net!r}")
        count = int(np.asarray(arrays[f"{net}.count"]))
        if count < 2:
            raise BundleError("integer synthesis needs at least two layers")
        self.decoder = decoder
        self.specs = [_Spec(arrays, f"{net}.{i}.", i == 0) for i in range(count)]
        for a, b in zip(self.specs, self.specs[1:]):
            if a.cout != 4 * b.cin:  # (a ReLU before a [0, 255] grid is that grid's clamp: optional)
                raise BundleError("integer synthesis layers do not chain")
        if self.specs[-1].cout != 12:
            raise BundleError("the synthesis must end in 3 channels at 16x")
        self.channels = self.specs[0].cin
        self.up = 2**count
        # s_out of each layer: the next one's input grid, pixels (1/255) after the last
        self._s_out = [sp.s_in for sp in self.specs[1:]] + [1.0 / PIXEL_MAX]
        self.layers = [self._tail_layer(i) for i in range(1, count)]  # layers 1.. do not depend on the quality
        self._tail = [_Step(lay) for lay in self.layers]
        self._head: tuple[bytes, _Step] | None = None

    def _tail_layer(self, i: int) -> IntLayer:
        sp = self.specs[i]
        s = sp.s_in * sp.wscale
        return requantized(sp.wq, np.rint(sp.b / s).astype(np.int64), s / self._s_out[i], PIXEL_MAX)

    @staticmethod
    def _inv_gain(inv_gain: np.ndarray) -> np.ndarray:
        return np.asarray(inv_gain, np.float32).reshape(-1).astype(np.float64)

    def first_int_layer(self, inv_gain: np.ndarray) -> IntLayer:
        """Layer 0 for this inverse gain (int16 weights)."""
        sp, ig = self.specs[0], self._inv_gain(inv_gain)
        if ig.shape != (self.channels,) or not np.all(np.isfinite(ig)):
            raise ValueError(f"inv_gain must hold {self.channels} finite values")
        wf = sp.w * ig[None, :, None, None]  # exact: float16/float32 products fit 53 bits
        scale = np.abs(wf).reshape(sp.cout, -1).max(axis=1) / W16  # max is exact; one division
        scale = np.where(scale > 0, scale, 1.0)
        wq = np.clip(np.rint(wf / scale[:, None, None, None]), -W16, W16).astype(np.int16)
        bias = np.rint(sp.b / scale).astype(np.int64)
        return requantized(wq, bias, scale / self._s_out[0], Y_MAX)

    def first_layer(self, inv_gain: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Layer 0 for this inverse gain as (int16-valued float64 weight matrix (K, Cout), bias, mult, shift)."""
        lay = self.first_int_layer(inv_gain)
        return weight_matrix(lay.weight, np.float64), lay.bias, lay.mult, lay.shift

    def int_layers(self, inv_gain: np.ndarray) -> list[IntLayer]:
        """The whole integer definition for this ``inv_gain``, one ``IntLayer`` per layer. Chained
        (``IntNet``) they compute what ``__call__`` does, only slower."""
        return [self.first_int_layer(inv_gain), *self.layers]

    def _steps(self, inv_gain: np.ndarray) -> list[_Step]:
        key = np.asarray(inv_gain, np.float32).tobytes()
        if self._head is None or self._head[0] != key:  # one quality after another: rebuilt only on change
            self._head = (key, _Step(self.first_int_layer(inv_gain)))
        return [self._head[1], *self._tail]

    def _window(self, steps: list[_Step], y: np.ndarray, out: np.ndarray, keep: np.ndarray | None) -> None:
        """``y`` (M, h, w) int8 latents -> ``out`` (16h, 16w, 3) uint8 (any strides); ``keep``: the
        channels of ``y`` not wholly zero, the only ones layer 0 reads (None: all)."""
        if keep is not None:
            y = y[keep]
        c, h, w = y.shape
        buf, inner = _padded(c, h, w, np.int8)
        inner[...] = y
        for i, st in enumerate(steps):
            if i + 1 < len(steps):
                nbuf, dst = _padded(st.cout // 4, 2 * h, 2 * w, np.uint8)
            else:
                nbuf, dst = None, out.transpose(2, 0, 1)
            st.run(buf, h, w, dst, keep if i == 0 else None)
            buf, h, w = nbuf, 2 * h, 2 * w

    def __call__(self, y_hat: np.ndarray, inv_gain: np.ndarray, height: int, width: int) -> np.ndarray:
        """y_hat (M, rows, cols) (or (1, M, rows, cols)) integers in [-127, 127], any integer dtype;
        inv_gain (M,) or (1, M, 1, 1) float32 -> the (height, width, 3) uint8 image, height <= 16 rows
        and width <= 16 cols. Windows of ``WINDOW_CORE`` latents bound the memory."""
        y = np.asarray(y_hat)
        if y.ndim == 4 and y.shape[0] == 1:
            y = y[0]
        if y.ndim != 3 or y.shape[0] != self.channels or not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
            raise ValueError(f"y_hat must be ({self.channels}, rows, cols) integers")
        _, rows, cols = y.shape
        u = self.up
        if not (0 < height <= u * rows and 0 < width <= u * cols):
            raise ValueError(f"{height}x{width} pixels do not fit {rows}x{cols} latents")
        if int(np.abs(y.astype(np.int64)).max()) > Y_MAX:
            raise ValueError("latents outside [-127, 127]")
        # latents 2 or more past the last pixel's own cannot reach it (nor could the zero padding)
        rows, cols = min(rows, -(-height // u) + tiling.HALO), min(cols, -(-width // u) + tiling.HALO)
        y = y[:, :rows, :cols].astype(np.int8)
        steps = self._steps(inv_gain)
        keep = np.flatnonzero(np.any(y != 0, axis=(1, 2)))  # all-zero channels (common at low quality) add nothing
        keep = None if keep.size == self.channels or steps[0].taps else keep
        tiles = tiling.plan(rows, cols, WINDOW_CORE)
        if len(tiles) == 1:
            out = np.empty((u * rows, u * cols, 3), np.uint8)
            self._window(steps, y, out, keep)
            return out if out.shape[:2] == (height, width) else np.ascontiguousarray(out[:height, :width])
        out = np.empty((height, width, 3), np.uint8)
        for t in tiles:
            (r0, r1, c0, c1), (a0, a1, b0, b1) = t.win, t.core
            py0, py1, px0, px1 = u * a0, min(height, u * a1), u * b0, min(width, u * b1)
            if py0 >= py1 or px0 >= px1:
                continue  # a core wholly outside the crop
            win = np.empty((u * (r1 - r0), u * (c1 - c0), 3), np.uint8)
            self._window(steps, y[:, r0:r1, c0:c1], win, keep)
            out[py0:py1, px0:px1] = win[py0 - u * r0 : py1 - u * r0, px0 - u * c0 : px1 - u * c0]
        return out
