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
