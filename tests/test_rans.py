"""Interleaved rANS: lossless for any integers, any table choice, any lane count; desync is an error."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecodec.entropy import rans
from edgecodec.entropy.cdf import CdfTables, gaussian_pmf
from edgecodec.errors import CorruptStreamError


def make_tables(scales, precision=12, mean=0.0):
    pmfs, offs = zip(*(gaussian_pmf(mean, s, 2.0**-precision) for s in scales))
    return CdfTables.from_pmfs(list(pmfs), list(offs), precision)


@settings(max_examples=150, deadline=None)
@given(
    n_tables=st.integers(1, 12),
    n=st.integers(0, 3000),
    lanes=st.integers(1, 300),
    precision=st.integers(8, 16),
    spread=st.floats(0.05, 200.0),
    seed=st.integers(0, 2**31),
)
def test_round_trip(n_tables, n, lanes, precision, spread, seed):
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.11, 0.11 + spread, n_tables)
    tables = make_tables(scales, precision)
    table = rng.integers(0, n_tables, n)
    values = np.rint(rng.normal(0, scales[table] * rng.uniform(0.5, 3.0))).astype(np.int64)
    if n:
        values[rng.integers(0, n, min(n, 5))] = rng.integers(-(2**40), 2**40, min(n, 5))  # escapes
    data = rans.encode(values, table, tables, lanes)
    assert np.array_equal(rans.decode(data, table, tables, lanes), values)


def test_extreme_values_round_trip():
    tables = make_tables([1.0])
    values = np.array([0, 2**62, -(2**62), -1, 1, 12345678901], dtype=np.int64)
    table = np.zeros(values.size, dtype=np.int64)
    assert np.array_equal(rans.decode(rans.encode(values, table, tables, 3), table, tables, 3), values)


def test_size_is_close_to_the_cross_entropy():
    rng = np.random.default_rng(0)
    tables = make_tables(np.geomspace(0.3, 20, 16))
    table = rng.integers(0, 16, 200_000)
    values = np.rint(rng.normal(0, np.geomspace(0.3, 20, 16)[table])).astype(np.int64)
    ideal = tables.model_bits(values, table) / 8
    lanes = rans.choose_lanes(values.size, ideal * 8)
    data = rans.encode(values, table, tables, lanes)
    escapes = len(
        rans._zigzag_leb128(values[(values - tables.offset[table] < 0) | (values - tables.offset[table] >= tables.length[table])])
    )
    assert len(data) - escapes - 4 * (lanes + 1) <= 1.003 * ideal


def test_lane_choice_keeps_flushes_small():
    assert rans.choose_lanes(10, 10_000) <= 10
    lanes = rans.choose_lanes(300_000, 25_000 * 8)
    assert 4 * lanes <= 0.02 * 25_000
    assert rans.choose_lanes(1, 1) == 1


@pytest.mark.parametrize("cut", [0, 3, 11, -1])
def test_truncated_payload_raises(cut):
    rng = np.random.default_rng(1)
    tables = make_tables([0.5, 3.0])
    table = rng.integers(0, 2, 5000)
    values = np.rint(rng.normal(0, 2, 5000)).astype(np.int64)
    data = rans.encode(values, table, tables, 16)
    with pytest.raises(CorruptStreamError):
        rans.decode(data[:cut], table, tables, 16)


def test_flipped_bits_never_pass_silently():
    rng = np.random.default_rng(2)
    tables = make_tables([0.5, 3.0, 10.0])
    table = rng.integers(0, 3, 4000)
    values = np.rint(rng.normal(0, 4, 4000)).astype(np.int64)
    data = bytearray(rans.encode(values, table, tables, 8))
    coded_end = 4 + 4 * 8 + 2 * int(np.frombuffer(bytes(data[:4]), "<u4")[0])  # escape bytes after this are CRC-protected
    silent = 0
    for _trial in range(200):
        bad = bytearray(data)
        pos = int(rng.integers(4, coded_end))
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            out = rans.decode(bytes(bad), table, tables, 8)
        except CorruptStreamError:
            continue
        silent += not np.array_equal(out, values)
    assert silent == 0  # the final-state check catches every flip in coded data


@pytest.mark.parametrize("precision", [8, 12, 16])
def test_packed_lut_holds_freq_and_bias_exactly(precision):
    tables = make_tables([0.02, 0.5, 3.0, 200.0], precision)  # 0.02: one symbol takes nearly every slot
    freq, bias, _ = rans.slot_tables(tables)
    packed = rans.Decoder(tables).lut_packed
    assert np.array_equal(packed >> 32, freq) and np.array_equal(packed & rans.LOW32, bias)
    assert freq.max() <= 1 << precision and bias.min() >= 0 and np.all(bias < freq)
    with pytest.raises(ValueError):
        rans.packed_lut(np.array([1 << 31]), np.array([0]))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 2500), lanes=st.integers(1, 40), corrupt=st.booleans(), seed=st.integers(0, 2**31))
def test_scalar_and_vector_steps_agree(n, lanes, corrupt, seed):
    """Few lanes decode in Python ints, more in numpy: the two must agree on every stream, corrupt ones too."""
    rng = np.random.default_rng(seed)
    tables = make_tables([0.3, 2.0, 9.0])
    table = rng.integers(0, 3, n)
    values = np.rint(rng.normal(0, 3, n)).astype(np.int64)
    data = bytearray(rans.encode(values, table, tables, lanes))
    if corrupt and len(data) > 4 + 4 * lanes:
        pos = int(rng.integers(4, len(data)))
        data[pos] ^= 1 << int(rng.integers(0, 8))
    dec = rans.Decoder(tables)
    results = []
    for scalar_lanes in (0, rans.MAX_LANES):
        old, rans.SCALAR_LANES = rans.SCALAR_LANES, scalar_lanes
        try:
            results.append(("ok", dec.decode(bytes(data), table, lanes).tolist()))
        except CorruptStreamError as e:
            results.append((type(e).__name__, str(e)))
        finally:
            rans.SCALAR_LANES = old
    assert results[0] == results[1]
    if not corrupt:
        assert results[0] == ("ok", values.tolist())


def test_scalar_and_vector_steps_agree_across_blocks(monkeypatch):
    rng = np.random.default_rng(5)
    tables = make_tables([0.3, 2.0, 9.0])
    table = rng.integers(0, 3, 3001)
    values = np.rint(rng.normal(0, 3, table.size)).astype(np.int64)
    monkeypatch.setattr(rans, "SCALAR_BLOCK", 97)
    monkeypatch.setattr(rans, "BLOCK_SYMBOLS", 101)
    for lanes in (1, 5, 13, 30):
        data = rans.encode(values, table, tables, lanes)
        for scalar_lanes in (0, rans.MAX_LANES):
            monkeypatch.setattr(rans, "SCALAR_LANES", scalar_lanes)
            assert np.array_equal(rans.decode(data, table, tables, lanes), values)
