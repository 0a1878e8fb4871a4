"""Range checks for settings dataclasses: each rule names what it wants, and a class reports every
field out of range at once, as ``key: reason`` pairs that the config loader puts under the key's
path and the CLI under the option's name.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Speed:
...     steps: int = 1
...     rate: float = 0.5
...     def __post_init__(self):
...         check_fields(self, steps=at_least(1), rate=between(0, 1))
>>> Speed(steps=0, rate=float("nan"))
Traceback (most recent call last):
...
eef.checks.FieldErrors: steps: must be at least 1, got 0; rate: must be a number in [0, 1], got nan
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

Rule = Callable[[Any], "str | None"]  # a reason the value is out of range, or None
# the types a YAML value has, as error messages name them
TYPE_WORDS: dict[type, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


class FieldErrors(ValueError):
    """Fields of one settings object that are out of range: ``problems`` holds (field, reason)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in problems))


def check_fields(obj: Any, **rules: Rule) -> None:
    """Apply each rule to the field of its name (a None value is not checked: optional fields).

    Raises:
        FieldErrors: every field a rule rejects.
    """
    problems = [
        (name, reason)
        for name, rule in rules.items()
        if getattr(obj, name) is not None and (reason := rule(getattr(obj, name)))
    ]
    if problems:
        raise FieldErrors(problems)


def at_least(low: float) -> Rule:
    """A finite number >= ``low`` (an integer where ``low`` is one)."""

    def rule(value: Any) -> str | None:
        return None if _finite(value) and value >= low else f"must be at least {low}, got {value!r}"

    return rule


def above(low: float) -> Rule:
    """A finite number > ``low``."""

    def rule(value: Any) -> str | None:
        return None if _finite(value) and value > low else f"must be a finite number above {low}, got {value!r}"

    return rule


def between(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Rule:
    """A finite number in the interval from ``low`` to ``high`` (closed unless said open)."""
    shown = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"

    def rule(value: Any) -> str | None:
        inside = (
            _finite(value)
            and (low < value if open_low else low <= value)
            and (value < high if open_high else value <= high)
        )
        return None if inside else f"must be a number in {shown}, got {value!r}"

    return rule


def one_of(*choices: Any) -> Rule:
    """One of ``choices``."""

    def rule(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(str, choices))}, got {value!r}"

    return rule


def each(rule: Rule, *, empty_ok: bool = False) -> Rule:
    """``rule`` for every element of a sequence (non-empty unless ``empty_ok``); the first element
    out of range is named."""

    def check(value: Any) -> str | None:
        if not len(value) and not empty_ok:
            return "must not be empty"
        return next((f"[{i}] {reason}" for i, v in enumerate(value) if (reason := rule(v))), None)

    return check


def matches(pattern: str, wanted: str) -> Rule:
    """A string the regular expression ``pattern`` matches whole; ``wanted`` says what that is."""

    def rule(value: Any) -> str | None:
        return None if isinstance(value, str) and re.fullmatch(pattern, value) else f"expected {wanted}, got {value!r}"

    return rule


def not_empty(value: Any) -> str | None:
    """A rule: a string or collection with something in it."""
    return None if len(value) else "must not be empty"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
