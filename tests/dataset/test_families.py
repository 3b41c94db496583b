"""Post families: the top of each parent chain, safe against cycles."""

import numpy as np

from furrytag_cli.dataset.families import ParentLinks


def links(*pairs):
    found = ParentLinks()
    for child, parent in pairs:
        found.add(child, parent)
    return found


def roots(found, *ids):
    return found.roots(np.array(ids, dtype=np.uint64)).tolist()


def test_chains_resolve_to_their_top_in_any_order():
    chain = links((3, 2), (9, 7), (2, 1), (4, 2))
    assert roots(chain, 1, 2, 3, 4, 5, 9) == [1, 1, 1, 1, 5, 7]


def test_no_links_and_self_parents_leave_ids_alone():
    assert roots(ParentLinks(), 4, 5) == [4, 5]
    assert len(links((8, 8))) == 0


def test_cycles_and_their_tails_end_with_the_cycles_smallest_id():
    cycle = links((10, 11), (11, 12), (12, 10), (13, 11), (14, 13), (3, 2), (2, 3))
    assert roots(cycle, 10, 11, 12, 13, 14, 2, 3, 1) == [10, 10, 10, 10, 10, 2, 2, 1]


def test_long_chains_resolve_fully():
    chain = links(*((i + 1, i) for i in range(1, 5000)))
    assert roots(chain, 5000, 2500, 2, 1) == [1, 1, 1, 1]
