"""Numpy building blocks shared by the integer path and the numpy backend."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def im2col(x: np.ndarray, k: int, stride: int, pad: int) -> tuple[np.ndarray, int, int]:
    """(C, H, W) -> ((H' * W'), C * k * k) patches in (c, ky, kx) order, with H', W'."""
    c = x.shape[0]
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # C, Ho, Wo, k, k
    ho, wo = win.shape[1], win.shape[2]
    return win.transpose(1, 2, 0, 3, 4).reshape(ho * wo, c * k * k), ho, wo


def im2col_t(x: np.ndarray, k: int, stride: int, pad: int) -> tuple[np.ndarray, int, int]:
    """``im2col`` transposed: (C * k * k, H' * W') patches, (c, ky, kx) rows. Its copy runs along
    output columns (contiguous in ``x`` at stride 1), not across a k-wide window as ``im2col``'s does."""
    c = x.shape[0]
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # C, Ho, Wo, k, k
    ho, wo = win.shape[1], win.shape[2]
    return win.transpose(0, 3, 4, 1, 2).reshape(c * k * k, ho * wo), ho, wo


CHUNK_BYTES = 16 << 20  # im2col patches per GEMM: bounds the numpy paths' memory at any image size


def conv_bands(x: np.ndarray, k: int, stride: int, pad: int, itemsize: int = 4, chunk_bytes: int = CHUNK_BYTES, transposed: bool = False):
    """im2col over bands of output rows: yields (first row, end row, patches, output width); the
    patches are (pixels, C * k * k), or with ``transposed`` (C * k * k, pixels) (``im2col_t``).

    A band's patch matrix stays under ``chunk_bytes`` (a whole-image im2col of a 12 MP photo is
    gigabytes) and only the band is zero-padded (no padded copy of the whole input); every output
    element still sees exactly the same patch.
    """
    c, h, w = x.shape
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    rows = max(1, chunk_bytes // max(1, wo * c * k * k * itemsize))
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        top, bottom = r0 * stride - pad, (r1 - 1) * stride + k - pad  # input rows the band reads
        band = x[:, max(top, 0) : min(bottom, h)]
        if pad:
            band = np.pad(band, ((0, 0), (max(0, -top), max(0, bottom - h)), (pad, pad)))
        cols, _, _ = (im2col_t if transposed else im2col)(band, k, stride, 0)
        yield r0, r1, cols, wo


def conv2d(x: np.ndarray, w2d: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """Convolution of one image ``x`` (C, H, W) as im2col matrix products, band by band.

    ``w2d`` is (C * k * k, Cout) in (c, ky, kx) order. Output (Cout, H', W').
    The result dtype follows ``x``/``w2d``; with float64 and integer-valued
    operands every partial sum is an exact integer (< 2**53), so the product is
    exact whatever order or thread count BLAS uses.
    """
    dtype = np.result_type(x.dtype, w2d.dtype)
    ho = (x.shape[1] + 2 * pad - k) // stride + 1
    out = None
    for r0, r1, cols, wo in conv_bands(x, k, stride, pad, dtype.itemsize):
        if out is None:
            out = np.empty((w2d.shape[1], ho, wo), dtype)
        out[:, r0:r1] = (cols @ w2d).T.reshape(-1, r1 - r0, wo)
    return out


def depth_to_space(x: np.ndarray, r: int) -> np.ndarray:
    """PyTorch ``pixel_shuffle`` order: channel c*r*r + i*r + j goes to (c, y*r+i, x*r+j)."""
    c, h, w = x.shape
    co = c // (r * r)
    return x.reshape(co, r, r, h, w).transpose(0, 3, 1, 4, 2).reshape(co, h * r, w * r)


def weight_matrix(w: np.ndarray, dtype) -> np.ndarray:
    """(Cout, Cin, k, k) weights as the (Cin*k*k, Cout) matrix ``conv2d`` takes."""
    return np.ascontiguousarray(w.reshape(w.shape[0], -1).T.astype(dtype))
