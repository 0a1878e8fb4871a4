import pytest
from hypothesis import given
from hypothesis import strategies as st

from eef.agent.parse import MAX_ACTION_CHARS, format_turn, parse_turn


@pytest.mark.parametrize(
    "text, action",
    [
        ("Thought: I need a scarf.\nAction: search[blue scarf]", "search[blue scarf]"),
        ("click[Buy Now]", "click[Buy Now]"),  # no marker: the last line is the action
        ("I looked at the page.\nclick[X0001] seems right", "click[X0001]"),
        ("Thought: buy it.\nAction: click[Buy Now] because it matches.", "click[Buy Now]"),
        ("Thought: buy it.\nAction: click[Buy Now]\nI hope this works.", "click[Buy Now]"),
        ("Thought: x\nACTION : click[blue]", "click[blue]"),
        ("thought: x\naction:click[blue]", "click[blue]"),
        ("Action: Search [red shirt]", "search[red shirt]"),
        ("Action: CLICK[Next >]", "click[Next >]"),  # the verb is lowered, the argument kept
        ("Action: search[red shirt", "search[red shirt]"),
        ("Action: search[red shirt.", "search[red shirt]"),
        ("Action: click[ Buy Now ]", "click[Buy Now]"),
        ("Action: `click[Buy Now]`", "click[Buy Now]"),
        ('Action: "search[wool hat]"', "search[wool hat]"),
        ("Action: 'click[blue]'", "click[blue]"),
        ("Action: **click[blue]**", "click[blue]"),
        ("Action:\n\n  search[wool hat]\n", "search[wool hat]"),
        ("Action: finish.", "finish"),
        (
            "Thought: first I wanted to search.\nAction: search[hat]\nWait, no.\nAction: click[Back to Search]",
            "click[Back to Search]",
        ),  # the last marker wins
        ("Thought: t\nAction: search[action: figures]", "search[action: figures]"),  # a marker inside the argument
        ("Thought: t\nAction: click[Buy Now]\nReaction: none", "click[Buy Now]"),  # 'reaction:' is no marker
        ("Action: click[Buy Now]\u2028I hope this works.", "click[Buy Now]"),  # any Unicode line break ends it
        ("Action: search[red shirt.\x85]", "search[red shirt]"),  # a break inside the brackets leaves them open
        ("", ""),
        ("Thought: I am not sure what to do.", ""),  # only a thought: nothing to guess from
    ],
)
def test_tolerated_slips(text, action):
    assert parse_turn(text).action == action


def test_multi_line_thought_is_kept_whole():
    parsed = parse_turn("Thought: the page lists two scarves.\nThe first is wool.\n\nAction: click[X0001]")
    assert parsed.thought == "the page lists two scarves.\nThe first is wool."
    assert parsed.action == "click[X0001]" and parsed.has_marker


def test_has_marker_tells_a_guess_from_an_answer():
    assert parse_turn("Action: click[a]").has_marker
    assert not parse_turn("click[a]").has_marker
    assert not parse_turn("I will finish the transaction: click[a]").has_marker


@pytest.mark.parametrize("value", [None, 3, ["Action: click[a]"], b"Action: click[a]"])
def test_non_string_input_is_an_empty_action(value):
    parsed = parse_turn(value)
    assert (parsed.thought, parsed.action, parsed.has_marker) == ("", "", False)


def test_overlong_action_is_cut():
    assert parse_turn("Action: search[" + "x" * 1000 + "]").action == "search[" + "x" * (MAX_ACTION_CHARS - 7)


def test_format_turn_round_trips():
    assert format_turn("find it", "search[hat]") == "Thought: find it\nAction: search[hat]"
    assert format_turn("", "click[a]") == "Action: click[a]"
    assert parse_turn(format_turn("find it", "search[hat]")).thought == "find it"


@given(st.text())
def test_any_text_parses_to_a_short_single_line_action(text):
    parsed = parse_turn(text)
    assert isinstance(parsed.action, str) and isinstance(parsed.thought, str)
    assert len(parsed.action) <= MAX_ACTION_CHARS
    assert len(parsed.action.splitlines()) <= 1 and "\n" not in parsed.action


def _one_line(text: str) -> bool:
    # str.splitlines breaks at \x85, \u2028 and others too, not only at \n and \r.
    return "".join(text.splitlines()) == text


# A query: any single-line text without brackets, sometimes with an action marker inside it.
_QUERIES = (
    st.text(max_size=80) | st.builds("{} action: {}".format, st.text(max_size=30), st.text(max_size=30))
).filter(lambda q: _one_line(q) and "[" not in q and "]" not in q)


@given(thought=st.text(max_size=200), query=_QUERIES)
def test_formatted_search_parses_back(thought, query):
    assert parse_turn(format_turn(thought, f"search[{query}]")).action == f"search[{query.strip()}]"
