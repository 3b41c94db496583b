"""Post families: a post, its parent, its parent's parent … share one family id.

The split of a post is a hash of its family id, so the family must be the top of the
whole parent chain: with the parent id alone, a child and its grandparent, or a post
and its own parent when that parent has a parent, could land in different splits.
Links are kept as two arrays of 64-bit ids (16 bytes per post that has a parent),
so the memory grows with the number of child posts only, not with the export.
"""

from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Pointer jumping doubles the reach each round: 64 rounds cover any chain.
_ROUNDS = 64


class ParentLinks:
    """Child → parent links of every post read, resolved to family roots at the end."""

    def __init__(self) -> None:
        self._child = array("Q")
        self._parent = array("Q")

    def __len__(self) -> int:
        return len(self._child)

    def add(self, child: int, parent: int) -> None:
        if child != parent:
            self._child.append(child)
            self._parent.append(parent)

    def roots(self, ids) -> "np.ndarray":
        """The topmost ancestor of each id (the id itself when it has no parent).

        Posts in or behind a parent cycle (which e621 should not have) get the smallest
        id of the cycle.
        """
        import numpy as np

        ids = np.asarray(ids, dtype=np.uint64)
        if not len(self._child) or not len(ids):
            return ids.copy()
        child, top = self._tops()
        at = np.minimum(np.searchsorted(child, ids), len(child) - 1)
        return np.where(child[at] == ids, top[at], ids)

    def _tops(self) -> tuple["np.ndarray", "np.ndarray"]:
        """(children sorted, the top of each one's chain)."""
        import numpy as np

        child = np.frombuffer(self._child, dtype=np.uint64)
        order = np.argsort(child, kind="stable")
        child, top = child[order], np.frombuffer(self._parent, dtype=np.uint64)[order]
        for _ in range(_ROUNDS):
            at = np.minimum(np.searchsorted(child, top), len(child) - 1)
            linked = child[at] == top
            if not linked.any():
                return child, top
            top = np.where(linked, top[at], top)
        # Still linked: in or behind a cycle. Such posts are few; walk them one by one.
        parent_of = dict(
            zip(child.tolist(), np.frombuffer(self._parent, dtype=np.uint64)[order].tolist())
        )
        at = np.minimum(np.searchsorted(child, top), len(child) - 1)
        for i in np.flatnonzero(child[at] == top).tolist():
            path, node = [], int(child[i])
            while node in parent_of and node not in path:
                path.append(node)
                node = parent_of[node]
            top[i] = min(path[path.index(node) :]) if node in path else node
        return child, top
