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


@pytest.mark.parametrize(
    "text, line",
    [
        ('[\n {"id": 1},\n {"id": 2,,}\n]', 3),
        ('[\n {"id": 1}\n {"id": 2}\n]', 3),
        ('[\n {"id": 1}\n', 3),
        ('[\n {"id": 1}\n]\n junk', 4),
        ('{"id": 1}\n{"id": \n', 2),
    ],
)
def test_bad_json_names_file_and_line(tmp_path, text, line):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        list(iter_records(path))
    assert info.value.path == str(path) and info.value.line == line and "JSON" in info.value.reason


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        list(iter_records(tmp_path / "absent.json"))


@pytest.mark.parametrize(
    "data, line, reason",
    [
        (b'[\n {"id": 1},\n {"id": "\xff"}\n]', 3, "not valid UTF-8"),
        (b'[\n {"id": 1},\n ' + b"[" * 100000 + b"]" * 100000 + b"\n]", 3, "nested too deeply to read"),
        (b'[\n {"id": 1},\n {"id": ' + b"1" * 5000 + b"}\n]", 3, "a number has too many digits to read"),
        (b'{"id": 1}\n{"id": ' + b"1" * 5000 + b"}\n", 2, "a number has too many digits to read"),
        (b'{"id": 1}\n{"id": 2', 2, "as if cut short"),
    ],
)
def test_unreadable_records_name_file_and_line(tmp_path, data, line, reason):
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        list(iter_records(path))
    assert (info.value.path, info.value.line) == (str(path), line) and reason in info.value.reason


def test_a_byte_order_mark_is_skipped(tmp_path):
    for name, text in (("a.json", '[{"id": 1}]'), ("a.jsonl", '{"id": 1}\n')):
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert list(iter_records(tmp_path / name)) == [(1, {"id": 1})]


def test_a_corrupt_gzip_file_is_named(tmp_path):
    import gzip

    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"id": 1}\n' * 1000)[:-40] + b"garbage" * 5)
    with pytest.raises(DataError, match=r"a\.jsonl\.gz: cannot read"):
        list(iter_records(path))
