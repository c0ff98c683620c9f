"""The weight-only block quantizer (onnxruntime's kernel, as the engine calls it) against a numpy
reference of the MatMulNBits format: scale, zero point, packing order. And the fact behind the
real model's INT4 figures (bench/results/int8.md): weights that sit on a Q4_1 grid (blocks of 32,
16 levels, float step and minimum) are recovered exactly by a float zero point, not by MatMulNBits'
integer one, and only when the blocks line up."""

from __future__ import annotations

import numpy as np
import pytest

from sphana_bridge.engine import quantize_blocks_chunks, quantize_blocks_rows, quantize_float_zp_chunks, quantize_float_zp_rows

K, N = 256, 48


def _unpack(pk: np.ndarray, sc: np.ndarray, zp: np.ndarray, bits: int, bs: int, symmetric: bool) -> np.ndarray:
    """MatMulNBits tensors back to a float [K, N]: two 4-bit codes per byte, low nibble first."""
    n, kb = sc.shape
    if bits == 4:
        q = np.stack([pk & 0x0F, pk >> 4], axis=-1).reshape(n, -1).astype(np.int32)
        z = np.full((n, kb), 8) if symmetric else np.stack([zp & 0x0F, zp >> 4], -1).reshape(n, -1)[:, :kb].astype(np.int32)
    else:
        q = pk.reshape(n, -1).astype(np.int32)
        z = np.full((n, kb), 128) if symmetric else zp.reshape(n, -1)[:, :kb].astype(np.int32)
    return ((q - np.repeat(z, bs, 1)) * np.repeat(sc, bs, 1)).T


def _ref_asym(w: np.ndarray, bs: int, bits: int, float_zp: bool) -> np.ndarray:
    """Textbook min/max asymmetric blocks along K; the integer-zero-point form includes 0 in the range."""
    qmax = 2**bits - 1
    out = np.empty_like(w)
    for b0 in range(0, w.shape[0], bs):
        blk = w[b0 : b0 + bs]
        lo, hi = (blk.min(0), blk.max(0)) if float_zp else (np.minimum(blk.min(0), 0), np.maximum(blk.max(0), 0))
        s = (hi - lo) / qmax
        s[s == 0] = 1
        z = -lo / s if float_zp else np.clip(np.round(-lo / s), 0, qmax)
        out[b0 : b0 + bs] = (np.clip(np.round(blk / s + z), 0, qmax) - z) * s
    return out


def _q41_grid(rng) -> np.ndarray:
    """A [K, N] weight on a Q4_1 grid along K: per 32-block a float step d and minimum m, codes 0..15."""
    d = rng.uniform(0.005, 0.02, size=(K // 32, N)).astype(np.float32)
    m = -rng.uniform(0.05, 0.15, size=(K // 32, N)).astype(np.float32)
    q = rng.integers(0, 16, size=(K, N))
    q[::32] = 0
    q[1::32] = 15  # every block uses its full range, as real Q4_1 blocks do
    return (np.repeat(m, 32, 0) + np.repeat(d, 32, 0) * q).astype(np.float32)


rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731


@pytest.mark.parametrize("bits,bs,symmetric", [(4, 32, False), (4, 64, False), (4, 32, True), (8, 32, True)])
def test_kernel_equals_the_numpy_reference(bits, bs, symmetric):
    w = np.random.default_rng(0).standard_normal((K, N)).astype(np.float32) * 0.05
    pk, sc, zp = quantize_blocks_chunks([(0, K, w)], (K, N), bs, bits, symmetric)
    assert pk.shape == (N, K // bs, bs * bits // 8) and sc.shape == (N, K // bs)
    deq = _unpack(pk, sc, zp, bits, bs, symmetric)
    if not symmetric:
        ref = _ref_asym(w, bs, bits, float_zp=False)
        off = np.abs(deq - ref) > 1e-7
        # the kernel multiplies by 1/scale where the reference divides: a value within float
        # rounding of a half step may land one level over (1 of 12288 here), never more
        assert off.mean() < 1e-3, off.mean()
        assert (np.abs(deq - ref)[off] <= np.repeat(sc, bs, 1).T[off] * (1 + 1e-5)).all()
    step = np.repeat(np.abs(sc), bs, 1).T
    assert (np.abs(deq - w) <= step * 0.5 * (1 + 1e-5) + 1e-8).mean() > 0.99  # half a step (clipped codes aside)
    expected = {(4, 32, False): 0.081, (4, 64, False): 0.092, (4, 32, True): 0.085, (8, 32, True): 0.0054}[(bits, bs, symmetric)]
    # the relative error of a Gaussian tensor, close to what the real SmolLM2 tensors measured
    assert abs(rel(deq, w) - expected) < 0.35 * expected, rel(deq, w)
    # the transposed-layout entry point gives the same bytes
    pk2, sc2, zp2 = quantize_blocks_rows([(0, N, np.ascontiguousarray(w.T))], (N, K), bs, bits, symmetric)
    np.testing.assert_array_equal(pk2, pk)
    np.testing.assert_array_equal(sc2, sc)
    np.testing.assert_array_equal(zp2, zp)


def test_a_q41_grid_is_recovered_by_a_float_zero_point_only_when_blocks_align():
    w = _q41_grid(np.random.default_rng(1))
    pk, sc, zp = quantize_blocks_chunks([(0, K, w)], (K, N), 32, 4, False)
    ort = rel(_unpack(pk, sc, zp, 4, 32, False), w)
    assert ort > 0.03  # the integer zero point moves every value of a block
    assert rel(_ref_asym(w, 32, 4, float_zp=True), w) < 1e-6  # the float one lands on the grid
    shifted = np.ascontiguousarray(w[16 : K - 16])  # 32-blocks straddling two source blocks
    assert rel(_ref_asym(shifted, 32, 4, float_zp=True), shifted) > 0.03
    assert rel(_ref_asym(w, 64, 4, float_zp=True), w) > 0.03  # b64 spans two source blocks


def _unpack_float_zp(pk: np.ndarray, sc: np.ndarray, zp: np.ndarray, bs: int, K_: int) -> np.ndarray:
    """rtn-float-zp's MatMulNBits tensors back to a float [K, N]: (q - zp) * scale, zp a float."""
    n, kb = sc.shape
    q = np.stack([pk & 0x0F, pk >> 4], axis=-1).reshape(n, -1).astype(np.float64)
    return ((q - np.repeat(zp, bs, 1)) * np.repeat(sc, bs, 1)).T[:K_]


def test_float_zero_points_reproduce_a_q41_grid():
    """rtn-float-zp on weights already on a Q4_1 grid (blocks of 32 aligned with the source's):
    every value comes back to float rounding; the integer zero point (rtn) loses > 3 %."""
    w = _q41_grid(np.random.default_rng(1))
    # two K-row chunks, as the engine streams them: the same bytes as one call
    pk, sc, zp = quantize_float_zp_chunks([(0, 128, w[:128]), (128, K, w[128:])], (K, N), 32, 4)
    pk1, sc1, zp1 = quantize_float_zp_chunks([(0, K, w)], (K, N), 32, 4)
    np.testing.assert_array_equal(pk, pk1)
    np.testing.assert_array_equal(zp, zp1)
    assert pk.shape == (N, K // 32, 16) and sc.shape == zp.shape == (N, K // 32) and zp.dtype == np.float32
    deq = _unpack_float_zp(pk, sc, zp, 32, K)
    assert rel(deq, w) < 1e-6, rel(deq, w)
    assert np.abs(deq - w).max() < 1e-6
    np.testing.assert_allclose(deq, _ref_asym(w, 32, 4, float_zp=True), atol=1e-6)
    ipk, isc, izp = quantize_blocks_chunks([(0, K, w)], (K, N), 32, 4, False)
    assert rel(_unpack(ipk, isc, izp, 4, 32, False), w) > 0.03
    # the transposed-layout entry point gives the same bytes
    tpk, tsc, tzp = quantize_float_zp_rows([(0, 20, np.ascontiguousarray(w.T[:20])), (20, N, np.ascontiguousarray(w.T[20:]))], (N, K), 32, 4)
    np.testing.assert_array_equal(tpk, pk)
    np.testing.assert_array_equal(tsc, sc)
    np.testing.assert_array_equal(tzp, zp)


@pytest.mark.parametrize("bs", [32, 64, 128])
def test_float_zero_points_on_gaussian_weights_are_no_worse_than_integer_ones(bs):
    """Off any grid (Gaussian weights), rtn-float-zp is plain asymmetric min/max RTN: its error
    equals the numpy reference and is at most the integer-zero-point RTN's (figures in
    bench/results/int8.md)."""
    for seed in range(3):
        w = np.random.default_rng(10 + seed).standard_normal((K, N)).astype(np.float32) * 0.05
        pk, sc, zp = quantize_float_zp_chunks([(0, K, w)], (K, N), bs, 4)
        deq = _unpack_float_zp(pk, sc, zp, bs, K)
        ref = _ref_asym(w, bs, 4, float_zp=True)
        assert np.abs(deq - ref).max() < 1e-6  # same levels as the reference (rounding ties aside)
        ipk, isc, izp = quantize_blocks_chunks([(0, K, w)], (K, N), bs, 4, False)
        e_int, e_float = rel(_unpack(ipk, isc, izp, 4, bs, False), w), rel(deq, w)
        assert e_float <= e_int, (e_float, e_int)
        # a float zero point cannot beat min/max's half-step bound: the gain is the integer
        # zero point's rounding (and zero kept in range), a few percent of the error at most here
        assert e_float > 0.85 * e_int, (e_float, e_int)
        print(f"b{bs} seed {seed}: int-zp {e_int:.4f} float-zp {e_float:.4f}")


def test_float_zero_points_of_a_partial_block_ignore_the_padding():
    """K not a multiple of the block: the last block's min/max come from its real rows only."""
    k = 80
    w = np.random.default_rng(5).standard_normal((k, N)).astype(np.float32)
    pk, sc, zp = quantize_float_zp_chunks([(0, k, w)], (k, N), 32, 4)
    assert pk.shape == (N, 3, 16)
    deq = _unpack_float_zp(pk, sc, zp, 32, k)
    np.testing.assert_allclose(deq, _ref_asym(w, 32, 4, float_zp=True), atol=1e-5)
    # a constant block is kept exactly (scale 1, code 0)
    c = np.full((32, 4), 0.37, dtype=np.float32)
    pk, sc, zp = quantize_float_zp_chunks([(0, 32, c)], (32, 4), 32, 4)
    np.testing.assert_allclose(_unpack_float_zp(pk, sc, zp, 32, 32), c, atol=1e-6)
