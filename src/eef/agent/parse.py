"""Tolerant parsing of ReAct turns: whatever a model writes becomes some action string.

A model's turn should read ``Thought: ...`` then ``Action: ...``. Models drift: they drop the
``Action:`` marker, write ``ACTION :``, add text after the action, space or case the verb
(``Search [red shirt]``), forget the closing bracket, or quote the action. The parser undoes those
slips and never raises: output it cannot read becomes an action the environment rejects as
invalid, which is what the agent must learn from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ACTION_CHARS = 300

_ACTION_MARKER = re.compile(r"\baction\s*:", re.IGNORECASE)
_THOUGHT_MARKER = re.compile(r"^\s*thought\s*:\s*", re.IGNORECASE)
_BRACKET_CALL = re.compile(r"^([A-Za-z_][\w ]*?)\s*\[(.*)$", re.DOTALL)
_QUOTES = "`'\"*"
# An action begun but whose bracket is still open: a marker after it is part of its argument.
_OPEN_CALL = re.compile(r"\s*[`'\"*]*[A-Za-z_][\w ]*?\s*\[[^\]\r\n]*\Z")


@dataclass(frozen=True)
class ParsedTurn:
    """A turn split into its parts.

    Attributes:
        thought: the reasoning before the action ('' when none).
        action: the action string to send to the environment (may be '' or invalid).
        has_marker: whether an ``Action:`` marker was found (False: the action was guessed).
    """

    thought: str
    action: str
    has_marker: bool


def parse_turn(text: object) -> ParsedTurn:
    """Split a model's turn into thought and action.

    >>> parse_turn("Thought: find it.\\nAction: Search [red shirt").action
    'search[red shirt]'
    >>> parse_turn("click[Buy Now] because it fits").action
    'click[Buy Now]'
    """
    if not isinstance(text, str):
        return ParsedTurn("", "", False)
    marker = _last_marker(text)
    if marker:
        head, tail, has_marker = text[: marker.start()], text[marker.end() :], True
    else:
        head, tail, has_marker = "", _last_line(text), False
    action = _normalise(_first_line(tail))
    thought = _THOUGHT_MARKER.sub("", head).strip()
    return ParsedTurn(thought, action, has_marker)


def format_turn(thought: str, action: str) -> str:
    """The canonical ReAct text of a turn (what experts and training data use)."""
    return f"Thought: {thought}\nAction: {action}" if thought else f"Action: {action}"


def _last_marker(text: str) -> re.Match[str] | None:
    """The last ``Action:`` marker that is not inside the brackets of the action before it."""
    markers = list(_ACTION_MARKER.finditer(text))
    while len(markers) > 1 and _OPEN_CALL.match(text, markers[-2].end(), markers[-1].start()):
        markers.pop()
    return markers[-1] if markers else None


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not _THOUGHT_MARKER.match(line)]
    return lines[-1] if lines else ""


def _normalise(action: str) -> str:
    action = action.strip().strip(_QUOTES).strip()
    call = _BRACKET_CALL.match(action)
    if call:  # `Search [x] and more`, `click[x` -> `search[x]`, `click[x]`
        verb, rest = call.group(1).strip().lower(), call.group(2)
        close = rest.find("]")
        argument = rest[:close] if close >= 0 else rest.rstrip().rstrip(_QUOTES + ".")
        action = f"{verb}[{argument.strip()}]"
    else:
        action = action.rstrip(".")
    return action[:MAX_ACTION_CHARS]
