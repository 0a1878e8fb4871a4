import json

import pytest

from eef.data.reader import iter_records
from eef.errors import DataError


def test_array_elements_carry_the_line_they_start_on(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"id": 1}, {"id": 2, "x": [1, 2]}, {"id": 3}], indent=2))
    records = list(iter_records(path))
    assert [r["id"] for _, r in records] == [1, 2, 3]
    lines = path.read_text().splitlines()
    assert [lines[n - 1].strip() for n, _ in records] == ["{", "{", "{"]
    assert [n for n, _ in records] == sorted({n for n, _ in records})


def test_json_lines_and_an_empty_array(tmp_path):
    lines = tmp_path / "a.jsonl"
    lines.write_text('{"id": 1}\n\n{"id": 2}\n')
    assert list(iter_records(lines)) == [(1, {"id": 1}), (3, {"id": 2})]
    empty = tmp_path / "e.json"
    empty.write_text(" [ ] \n")
    assert list(iter_records(empty)) == []


@pytest.mark.parametrize("text, line", [
    ('[\n {"id": 1},\n {"id": 2,,}\n]', 3),
    ('[\n {"id": 1}\n {"id": 2}\n]', 3),
    ('[\n {"id": 1}\n', 3),
    ('[\n {"id": 1}\n]\n junk', 4),
    ('{"id": 1}\n{"id": \n', 2),
])
def test_bad_json_names_file_and_line(tmp_path, text, line):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        list(iter_records(path))
    assert info.value.path == str(path) and info.value.line == line and "JSON" in info.value.reason


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        list(iter_records(tmp_path / "absent.json"))
