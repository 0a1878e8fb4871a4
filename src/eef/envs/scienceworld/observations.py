"""Comparing ScienceWorld observations the way a replay needs: listing order does not count.

The simulator lists a room's objects and doors one per line, and a container's contents as a
comma-separated list inside a line (``In the cupboard is: a drawer, a wood cup (containing red
paint).``, nested in parentheses); both orders can change between runs that reach the same
state. Two observations show the same state when they hold the same lines, each as often, where
each line is compared with its comma-separated lists sorted, at every depth of parentheses.
"""

from __future__ import annotations

import re
from collections import Counter

# Text of an inner level, once canonical, hides its punctuation from the levels around it.
_PROTECT = str.maketrans({",": "\x01", ".": "\x02", ":": "\x03"})
_RESTORE = str.maketrans({"\x01": ",", "\x02": ".", "\x03": ":"})
# A list after a colon runs to the full stop that ends its sentence (``you see: a, b. ``) or to
# the end of the level; a full stop inside a number does not end it.
_COLON_LIST = re.compile(r"(:\s+)(.*?)(?=\.(?:\s|$)|$)", re.DOTALL)


def _sorted_items(text: str) -> str:
    return ", ".join(sorted(item.strip() for item in text.split(",")))


def _canonical_level(text: str) -> str:
    """One level (inner parentheses already canonical and protected) with its lists sorted."""
    # Lists after a colon first, protected so that the level's own list does not split them.
    text = _COLON_LIST.sub(lambda m: m.group(1) + _sorted_items(m.group(2)).translate(_PROTECT), text)
    items = [item.strip() for item in text.split(",")]
    if len(items) == 1:
        return items[0]
    head = "containing " if items[0].startswith("containing ") else ""  # (containing soil, water)
    items[0] = items[0][len(head) :]
    return head + ", ".join(sorted(items))


def _level(text: str, start: int, depth: int) -> tuple[str, int, bool]:
    """The canonical form of ``text`` from ``start`` to the parenthesis closing this level (or
    the end), where it stopped, and whether a parenthesis closed it."""
    chars: list[str] = []
    i = start
    while i < len(text):
        char = text[i]
        if char == "(":
            inner, i, closed = _level(text, i + 1, depth + 1)
            chars.append(f"({inner}{')' if closed else ''}".translate(_PROTECT))
            continue
        if char == ")" and depth > 0:
            return _canonical_level("".join(chars)), i + 1, True
        chars.append(char)
        i += 1
    return _canonical_level("".join(chars)), i, False


def canonical_line(line: str) -> str:
    """``line`` with every comma-separated list sorted, at every depth of parentheses.

    >>> canonical_line("In the cupboard is: a drawer, a cup (containing water, soil).")
    'In the cupboard is: a cup (containing soil, water), a drawer.'
    """
    return _level(line.strip(), 0, 0)[0].translate(_RESTORE)


def _lines(observation: str) -> Counter[str]:
    return Counter(canonical_line(line) for line in observation.splitlines() if line.strip())


def same_state(expected: str, seen: str) -> bool:
    """Whether two observations hold the same lines, each as often, in any order, with the items
    of every comma-separated list inside a line in any order.

    >>> same_state("In it, you see:\\n\\ta cup\\n\\ta chair", "In it, you see:\\n\\ta chair\\n\\ta cup")
    True
    >>> same_state("a box (containing a cup, a pen)", "a box (containing a pen, a cup)")
    True
    >>> same_state("the thermometer reads 47 degrees", "the thermometer reads 49 degrees")
    False
    """
    return expected == seen or _lines(expected) == _lines(seen)


def differing_lines(expected: str, seen: str) -> tuple[list[str], list[str]]:
    """The lines only ``expected`` has and the lines only ``seen`` has (in canonical form, for
    divergence reports)."""
    a, b = _lines(expected), _lines(seen)
    return sorted((a - b).elements()), sorted((b - a).elements())
