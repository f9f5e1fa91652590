"""The sorting helpers the calibration uses instead of numpy's slower paths."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simrec.arrays import lexsort_ints, lexsorted_ints, sorted_unique

# bounds wide enough that two or three keys overflow 63 bits and take np.lexsort's path
_BOUND = st.sampled_from([1, 3, 1000, 2**20, 2**40, 2**62])


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(0, 60), st.integers(1, 3))
def test_packed_sorts_equal_numpy_lexsort(data, n, n_keys):
    g = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    keys = tuple(
        g.integers(-data.draw(_BOUND), data.draw(_BOUND), n, dtype=np.int64) for _ in range(n_keys)
    )
    order = np.lexsort(keys)
    np.testing.assert_array_equal(lexsort_ints(keys), order)  # ties in input order too
    for got, k in zip(lexsorted_ints(keys), keys, strict=True):
        np.testing.assert_array_equal(got, k[order])
    np.testing.assert_array_equal(sorted_unique(keys[0]), np.unique(keys[0]))


@settings(max_examples=100, deadline=None)
@given(st.data(), st.integers(1, 30), st.integers(1, 40), st.integers(0, 50))
def test_excluded_mask_by_row_index_equals_the_copied_rows(data, n_rows, n_items, n_cand):
    """excluded_mask(cand, m, of=rows) checks candidate row j against m's row rows[j], as
    excluded_mask(cand, m[rows]) does, on every path (unsorted indices, -1 slots, empty rows)."""
    import scipy.sparse as sp

    from simrec.arrays import excluded_mask

    g = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    dense = g.random((n_rows, n_items)) < data.draw(st.sampled_from([0.0, 0.1, 0.5]))
    m = sp.csr_matrix(dense)
    if m.nnz and data.draw(st.booleans()):  # the same entries, indices out of order
        order = np.concatenate(
            [
                g.permutation(np.arange(a, b))
                for a, b in zip(m.indptr[:-1], m.indptr[1:], strict=True)
            ]
        )
        m = sp.csr_matrix((m.data[order], m.indices[order], m.indptr), shape=m.shape)
    rows = g.integers(0, n_rows, n_cand)
    cand = g.integers(-1, n_items, (n_cand, 5))
    got = excluded_mask(cand, m, of=rows)
    np.testing.assert_array_equal(got, excluded_mask(cand, m[rows]))
    want = dense[rows[:, None], np.maximum(cand, 0)] & (cand >= 0)
    np.testing.assert_array_equal(got, want)
