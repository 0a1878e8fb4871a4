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


def test_one_object_over_several_lines_is_named_as_such(tmp_path):
    """A record list wrapped in an object, e.g. ``{"data": [...]}``, is neither an array nor JSON lines."""
    path = tmp_path / "wrapped.json"
    path.write_text('{\n "data": [{"id": 1}]\n}\n')
    with pytest.raises(DataError) as info:
        list(iter_records(path))
    assert info.value.line == 1 and info.value.reason.startswith("one JSON object; expected a JSON array")


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


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_webshop_goal_lists_become_eef_task_ids_and_split_files_the_env_reads(tmp_path):
    from eef.data.reader import read_split_lists, shared_tasks, write_split_files
    from eef.envs.shop.webshop_data import shuffle_and_split

    # Shaped like ETO's: train sorted with one index listed twice, test unsorted and sharing one with train.
    files = {
        "train": _write(tmp_path / "webshop/train_indices.json", "[0, 3, 4116, 4116, 4117]"),
        "test": _write(tmp_path / "webshop/test_indices.json", "[2853, 5934, 3]"),
    }
    train, test = read_split_lists(files, "webshop")
    assert (train.split, train.entries, train.listed, train.repeated) == (
        "train",
        [0, 3, 4116, 4117],
        5,
        ["webshop_4116"],
    )
    assert test.task_ids == ["webshop_2853", "webshop_5934", "webshop_3"] and test.repeated == []
    assert shared_tasks([train, test]) == {"test & train": 1}

    written = write_split_files([train, test], tmp_path / "out")
    assert written == {"train": tmp_path / "out/train.json", "test": tmp_path / "out/test.json"}
    splits = shuffle_and_split(list(range(6000)), {name: str(path) for name, path in written.items()})
    assert splits == {"train": [0, 3, 4116, 4117], "test": [2853, 5934, 3]}


@pytest.mark.parametrize(
    "text, line, field, reason",
    [
        ("[1, 2,\n -3]", 2, "[2]", "expected a goal index (an integer >= 0), got -3"),
        ("[1, true]", 1, "[1]", "got True"),
        ('[1,\n\n "7"]', 3, "[1]", "got '7'"),
        ("[1.5]", 1, "[0]", "got 1.5"),
    ],
)
def test_a_bad_goal_index_names_file_line_and_position(tmp_path, text, line, field, reason):
    from eef.data.reader import read_split_lists

    path = _write(tmp_path / "test_indices.json", text)
    with pytest.raises(DataError) as info:
        read_split_lists({"test": path}, "webshop")
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)
    assert reason in info.value.reason


def test_a_task_list_must_be_a_non_empty_array_and_present(tmp_path):
    from eef.data.reader import read_split_lists
    from eef.errors import UnknownNameError

    with pytest.raises(DataError, match=r"test_indices\.json: expected a JSON array"):
        read_split_lists({"test": _write(tmp_path / "test_indices.json", '{"test": [1]}')}, "webshop")
    with pytest.raises(DataError, match=r"test_indices\.json: an empty task list"):
        read_split_lists({"test": _write(tmp_path / "test_indices.json", "[ ]")}, "webshop")
    with pytest.raises(DataError, match=r"absent\.json: no such file"):
        read_split_lists({"test": tmp_path / "absent.json"}, "webshop")
    with pytest.raises(UnknownNameError, match="unknown environment with task lists 'alfworld'"):
        read_split_lists({}, "alfworld")


def test_scienceworld_pairs_in_eto_names_become_the_package_names(tmp_path):
    from eef.data.reader import read_split_lists, write_split_files
    from eef.envs.scienceworld.tasks import read_index_file

    text = '[["task-1-boil", 3], ["task-9-mendellian-genetics-(known-plant)", 0], ["task-1-boil", 3]]'
    (dev,) = read_split_lists({"dev": _write(tmp_path / "sciworld/dev_indices.json", text)}, "scienceworld")
    assert dev.task_ids == ["boil/3", "mendelian-genetics-known-plant/0"] and dev.repeated == ["boil/3"]
    assert dev.entries == [["boil", 3], ["mendelian-genetics-known-plant", 0]]
    written = write_split_files([dev], tmp_path / "out")
    assert read_index_file(written["dev"]) == dev.task_ids

    bad = _write(tmp_path / "bad.json", '[["task-1-boil", 3],\n ["task-99-juggle", 1]]')
    with pytest.raises(DataError) as info:
        read_split_lists({"dev": bad}, "scienceworld")
    assert (info.value.line, info.value.field) == (2, "[1]") and "task-99-juggle" in info.value.reason
    with pytest.raises(DataError, match=r"field '\[0\]': expected \[task name, variation\]"):
        read_split_lists({"dev": _write(tmp_path / "flat.json", '["task-1-boil"]')}, "scienceworld")
