import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eef.errors import DataError
from eef.jsonl import iter_json_array

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(values=st.lists(_VALUES, max_size=12), chunk=st.integers(1, 40), indent=st.sampled_from([None, 1]))
def test_any_array_reads_back_whatever_the_piece_size(tmp_path_factory, values, chunk, indent):
    path = tmp_path_factory.mktemp("a") / "a.json"
    path.write_text(json.dumps(values, indent=indent), encoding="utf-8")
    assert [v for _, v in iter_json_array(path, chunk_chars=chunk)] == values


@pytest.mark.parametrize(
    "text, message",
    [
        ("{}", r"a.json:1: expected a JSON array"),
        ("[1,\n2,", r"a.json:2: the file ends before element \[2\], as if cut short"),
        ('[1,\n{"x": "abc', r"a.json:2: element \[1\] is not valid JSON \(Unterminated string.*cut short"),
        ('[1,\n\n{"x": bad}]', r"a.json:3: element \[1\] is not valid JSON \(Expecting value\)$"),
        ("[1 2]", r"expected ',' or ']' after element \[0\]; found '2'"),
        ("[1, 2", r"after element \[1\]; the file ends, as if cut short"),
    ],
)
def test_bad_arrays_are_named_with_line_and_element(tmp_path, text, message):
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        list(iter_json_array(path, chunk_chars=3))
