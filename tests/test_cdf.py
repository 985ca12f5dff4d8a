"""CDF tables: exact totals, no zero-frequency symbol, stored and loaded unchanged."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecodec.entropy.cdf import CdfTables, gaussian_pmf, quantize_pmf


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=300),
    st.integers(10, 16),
)
def test_quantized_pmf_sums_to_total_and_never_zero(pmf, precision):
    pmf = np.asarray(pmf)
    if pmf.sum() == 0:
        pmf = pmf + 1
    freq = quantize_pmf(pmf, precision)
    assert freq.sum() == 1 << precision
    assert freq.min() >= 1


def test_quantization_tracks_the_probabilities():
    p = np.array([0.5, 0.25, 0.125, 0.125])
    assert list(quantize_pmf(p, 12)) == [2048, 1024, 512, 512]


def test_tables_round_trip_through_arrays():
    pmfs, offs = zip(*(gaussian_pmf(0.25, s, 2.0**-12) for s in (0.2, 1.0, 7.5)))
    t = CdfTables.from_pmfs(list(pmfs), list(offs), 12)
    u = CdfTables.from_arrays(t.arrays("y."), "y.")
    assert np.array_equal(t.cdf, u.cdf) and np.array_equal(t.offset, u.offset) and u.precision == 12
    for row, n in zip(t.cdf, t.length):
        assert row[0] == 0 and row[n + 1] == 1 << 12
        assert np.all(np.diff(row[: n + 2]) >= 1)  # every symbol, escape included, is codable


def test_rare_symbols_are_left_to_the_escape():
    pmf, lo = gaussian_pmf(0.0, 0.11, 2.0**-12)
    assert lo == 0 and pmf.size == 1  # only 0 is likelier than one count; everything else escapes
