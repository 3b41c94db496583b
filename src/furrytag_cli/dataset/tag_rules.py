"""Tag resolution: a post's raw e621 tags → labels per head.

Aliases are applied first, then each tag is closed under the implications (transitively,
safe against cycles). The closure of a tag is computed once and memoized, and only tags
whose closure reaches some head tag are kept in the lookup table, so labelling a post
costs one dictionary lookup per tag.
"""

from collections.abc import Iterable, Mapping

from furrytag_cli.model.categories import CategorySet


class TagResolver:
    """Maps a post's tags to head labels: aliases first, then implication closure."""

    def __init__(
        self,
        categories: CategorySet,
        aliases: Mapping[str, str],
        implications: Mapping[str, Iterable[str]],
    ) -> None:
        self.categories = categories
        self._aliases = dict(aliases)
        self._implies: dict[str, set[str]] = {}
        for antecedent, consequents in implications.items():
            self._implies.setdefault(self.canonical(antecedent), set()).update(
                self.canonical(c) for c in consequents
            )
        self._closures: dict[str, frozenset[str]] = {}
        # A slot is one output unit: (head, tag), numbered across heads in category order.
        self.slots: tuple[tuple[str, str], ...] = tuple(
            (head, tag) for head, tags in categories.heads.items() for tag in tags
        )
        self._table = self._label_table()

    def canonical(self, tag: str) -> str:
        """The name ``tag`` is aliased to (itself when not aliased)."""
        seen = {tag}
        while tag in self._aliases:
            tag = self._aliases[tag]
            if tag in seen:
                break
            seen.add(tag)
        return tag

    def closure(self, tag: str) -> frozenset[str]:
        """``tag`` after aliasing and every tag it implies, transitively; cycles are safe."""
        start = self.canonical(tag)
        done = self._closures.get(start)
        if done is not None:
            return done
        found, stack = {start}, [start]
        while stack:
            for implied in self._implies.get(stack.pop(), ()):
                if implied in found:
                    continue
                known = self._closures.get(implied)
                if known is not None:
                    found |= known
                else:
                    found.add(implied)
                    stack.append(implied)
        self._closures[start] = result = frozenset(found)
        return result

    def _label_table(self) -> dict[str, tuple[int, ...]]:
        """Raw tag name → slots it yields, for every tag that yields any."""
        slots_of: dict[str, list[int]] = {}
        for slot, (_, tag) in enumerate(self.slots):
            slots_of.setdefault(self.canonical(tag), []).append(slot)
        implied_by: dict[str, set[str]] = {}
        for antecedent, consequents in self._implies.items():
            for consequent in consequents:
                implied_by.setdefault(consequent, set()).add(antecedent)
        # Only tags that reach a head tag matter: walk the implications backwards from them.
        reaching, stack = set(slots_of), list(slots_of)
        while stack:
            for antecedent in implied_by.get(stack.pop(), ()):
                if antecedent not in reaching:
                    reaching.add(antecedent)
                    stack.append(antecedent)
        table = {
            tag: tuple(sorted({s for t in self.closure(tag) for s in slots_of.get(t, ())}))
            for tag in reaching
        }
        for antecedent in self._aliases:
            target = table.get(self.canonical(antecedent))
            if target is not None:
                table[antecedent] = target
        return table

    def slots_of(self, tags: Iterable[str]) -> list[int]:
        """The sorted slots a post with these raw tags is labelled with."""
        found: set[int] = set()
        table = self._table
        for tag in tags:
            hit = table.get(tag)
            if hit:
                found.update(hit)
        return sorted(found)

    def labels(self, tags: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Per head, the head's tags (in category order) that these raw tags yield."""
        labels: dict[str, list[str]] = {head: [] for head in self.categories.heads}
        for slot in self.slots_of(tags):
            head, tag = self.slots[slot]
            labels[head].append(tag)
        return {head: tuple(tags) for head, tags in labels.items()}
