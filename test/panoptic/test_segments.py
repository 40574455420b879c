"""`dense_index` on every path (lookup table, hash of 24-bit ids, binary search) against a plain
dictionary lookup per pixel, and its error on ids missing from the segments list."""

import numpy as np
import pytest

from segmentation_ros.panoptic import segments
from segmentation_ros.panoptic.segments import dense_index


def dict_reference(id_map, ids, values):
    table = {0: 0, **dict(zip(ids.tolist(), values.tolist()))}
    return np.array([table[int(v)] for v in id_map.ravel()]).reshape(id_map.shape)


@pytest.mark.parametrize(
    ("num", "low", "high", "dtype"),
    [
        (30, 1, 200, np.uint32),  # small ids: lookup table
        (30, 1 << 16, 1 << 24, np.uint32),  # COCO's 24-bit ids: hash
        (300, 1 << 16, 1 << 24, np.int64),  # hash, other dtype
        (3000, 1 << 16, 1 << 24, np.uint32),  # too many for the hash: binary search
        (20, 1 << 33, 1 << 40, np.int64),  # beyond 32 bits: binary search
    ],
)
def test_dense_index_matches_a_dictionary(num, low, high, dtype):
    rng = np.random.default_rng(num)
    ids = rng.choice(np.arange(low, high, max(1, (high - low) // (8 * num))), num, replace=False)
    values = rng.permutation(num) + 1
    id_map = rng.choice(np.concatenate([[0], ids]), (40, 50)).astype(dtype)
    np.testing.assert_array_equal(
        dense_index(id_map, ids, values, "x"), dict_reference(id_map, ids, values)
    )

    # An id in the map that the list lacks is named, whichever path runs.
    stranger = int(ids.max()) + 1 if dtype == np.int64 or ids.max() + 1 < 1 << 32 else 1
    id_map[3, 4] = stranger
    with pytest.raises(ValueError, match=rf"\[{stranger}\] that are not in its segments list"):
        dense_index(id_map, ids, values, "x")


def test_hash_collisions_of_a_key_set_are_avoided():
    """Keys that share their high bits collide under most multipliers: a working one is found
    (or the binary search is used), never a wrong index."""
    ids = (np.arange(1, 40, dtype=np.int64) << 18) | 5
    id_map = np.concatenate([[0], ids]).repeat(7).reshape(-1, 8)
    values = np.arange(1, ids.size + 1)
    found = segments._perfect_hash(np.concatenate([[0], ids]).astype(np.uint32))
    assert (
        found is None
        or np.unique(
            (np.concatenate([[0], ids]).astype(np.uint32) * found[0]) >> np.uint32(32 - found[1])
        ).size
        == ids.size + 1
    )
    np.testing.assert_array_equal(
        dense_index(id_map, ids, values, "x"), dict_reference(id_map, ids, values)
    )
