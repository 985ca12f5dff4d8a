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


def conv2d(x: np.ndarray, w2d: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """Convolution of one image ``x`` (C, H, W) as an im2col matrix product.

    ``w2d`` is (C * k * k, Cout) in (c, ky, kx) order. Output (Cout, H', W').
    The result dtype follows ``x``/``w2d``; with float64 and integer-valued
    operands every partial sum is an exact integer (< 2**53), so the product is
    exact whatever order or thread count BLAS uses.
    """
    cols, ho, wo = im2col(x, k, stride, pad)
    out = cols @ w2d
    return out.T.reshape(-1, ho, wo)


def depth_to_space(x: np.ndarray, r: int) -> np.ndarray:
    """PyTorch ``pixel_shuffle`` order: channel c*r*r + i*r + j goes to (c, y*r+i, x*r+j)."""
    c, h, w = x.shape
    co = c // (r * r)
    return x.reshape(co, r, r, h, w).transpose(0, 3, 1, 4, 2).reshape(co, h * r, w * r)


def weight_matrix(w: np.ndarray, dtype) -> np.ndarray:
    """(Cout, Cin, k, k) weights as the (Cin*k*k, Cout) matrix ``conv2d`` takes."""
    return np.ascontiguousarray(w.reshape(w.shape[0], -1).T.astype(dtype))
