"""Comparing ScienceWorld observations the way a replay needs: listing order does not count.

The simulator lists a room's objects and doors in an order that changes from run to run (one
per line), so the same state can print differently; two observations show the same state when
they hold the same lines, each as often.
"""

from __future__ import annotations

from collections import Counter


def _lines(observation: str) -> Counter[str]:
    return Counter(line.strip() for line in observation.splitlines() if line.strip())


def same_state(expected: str, seen: str) -> bool:
    """Whether two observations hold the same lines, each as often, in any order.

    >>> same_state("In it, you see:\\n\\ta cup\\n\\ta chair", "In it, you see:\\n\\ta chair\\n\\ta cup")
    True
    >>> same_state("the thermometer reads 47 degrees", "the thermometer reads 49 degrees")
    False
    """
    return expected == seen or _lines(expected) == _lines(seen)


def differing_lines(expected: str, seen: str) -> tuple[list[str], list[str]]:
    """The lines only ``expected`` has and the lines only ``seen`` has (for divergence reports)."""
    a, b = _lines(expected), _lines(seen)
    return sorted((a - b).elements()), sorted((b - a).elements())
