import json
import re

import pytest

from eef.errors import DataError
from eef.trajectory import Message, Provenance, Trajectory, Turn
from eef.trajectory_files import append_trajectories, read_trajectories, write_trajectories


def _trajectory(id="t0", n_turns=3, **changes) -> Trajectory:
    turns = tuple(
        Turn(
            f"Thought: step {k}\nAction: click[{k}]",
            f"click[{k}]",
            f"page {k + 1}",
            reward=1.0 if k == n_turns - 1 else 0.0,
            trainable=k != 1,
        )
        for k in range(n_turns)
    )
    fields = dict(
        id=id,
        env="shop",
        task_id="shop_3",
        prompt=(
            Message("system", "Be a shopper."),
            Message("user", "example page"),
            Message("assistant", "Action: search[scarf]"),
        ),
        first_observation="page 0",
        turns=turns,
        reward=1.0,
        success=True,
        terminated=True,
        provenance=Provenance(
            "self", iteration=2, start_step=1, parent_id="p0", model="ckpt-2", sampling={"temperature": 0.7, "seed": 3}
        ),
        meta={"replay": {"diverged": False}},
    )
    return Trajectory(**(fields | changes))


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_records(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_write_then_read_gives_equal_trajectories(tmp_path):
    trajectories = [
        _trajectory("a"),
        _trajectory(
            "b", n_turns=0, reward=0.0, success=False, terminated=False, provenance=Provenance("gpt-4"), meta={}
        ),
    ]
    path = tmp_path / "sub" / "t.jsonl"
    assert write_trajectories(path, trajectories) == 2
    assert read_trajectories(path) == trajectories
    assert [r["id"] for r in _lines(path)] == ["a", "b"]


def test_messages_alternate_and_leave_out_the_final_observation():
    t = _trajectory()
    messages = t.messages()
    assert messages[:3] == list(t.prompt)
    assert messages[3] == Message("user", "page 0")
    after = messages[3:]
    assert [m.role for m in after] == ["user", "assistant"] * 3
    assert [m.content for m in after[1::2]] == [turn.text for turn in t.turns]
    assert [m.content for m in after[2::2]] == ["page 1", "page 2"]  # "page 3" follows the last action
    assert [m.trainable for m in after[1::2]] == [True, False, True]
    assert not any(m.trainable for m in after[::2])


def test_context_at_ends_with_the_observation_after_the_previous_turn():
    t = _trajectory()
    assert t.context_at(0) == list(t.prompt) + [Message("user", "page 0")]
    for k in range(1, 4):
        context = t.context_at(k)
        assert len(context) == 3 + 1 + 2 * k
        assert context[-1] == Message("user", t.turns[k - 1].observation)
        assert context[-2].role == "assistant" and context[-2].content == t.turns[k - 1].text
    assert t.context_at(3)[-1].content == "page 3"
    assert t.context_at(2) == t.messages()[: len(t.context_at(2))]
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="outside 0..3"):
            t.context_at(bad)


def test_with_masks_sets_each_turn_and_keeps_the_rest():
    t = _trajectory()
    masked = t.with_masks([False, True, False])
    assert [turn.trainable for turn in masked.turns] == [False, True, False]
    assert [turn.trainable for turn in t.turns] == [True, False, True]  # the original is untouched
    assert [turn.text for turn in masked.turns] == [turn.text for turn in t.turns]
    assert masked.with_masks([True, False, True]) == t
    with pytest.raises(ValueError, match="2 masks for 3 turns"):
        t.with_masks([True, False])


def test_bad_json_names_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_trajectory().to_dict()) + "\n\n{not json\n")
    with pytest.raises(DataError, match=r"t\.jsonl:3: not valid JSON") as e:
        read_trajectories(path)
    assert e.value.line == 3


@pytest.mark.parametrize(
    "edit, field, reason",
    [
        (lambda r: r["turns"][0].pop("action"), "turns[0].action", "missing"),
        (lambda r: r.pop("task_id"), "task_id", "missing"),
        (lambda r: r["provenance"].pop("source"), "provenance.source", "missing"),
        (lambda r: r.update(reward="1.0"), "reward", "expected a number, got str"),
        (lambda r: r.update(success=1), "success", "expected a boolean, got int"),
        (lambda r: r["turns"][2].update(reward=True), "turns[2].reward", "got a boolean"),
        (lambda r: r["prompt"][1].update(role="tool"), "prompt[1].role", "'tool' is not one of"),
        (lambda r: r.update(turns={}), "turns", "expected a list"),
        (lambda r: r["provenance"].update(start_step=4), "provenance.start_step", "outside 0..3"),
        (lambda r: r["provenance"].update(start_step=-1), "provenance.start_step", "outside 0..3"),
    ],
)
def test_malformed_field_is_named_with_its_line(tmp_path, edit, field, reason):
    good, bad = _trajectory("a").to_dict(), _trajectory("b").to_dict()
    edit(bad)
    path = tmp_path / "t.jsonl"
    _write_records(path, [good, bad])
    with pytest.raises(DataError, match=re.escape(f"t.jsonl:2: field '{field}': ")) as e:
        read_trajectories(path)
    assert e.value.field == field and reason in e.value.reason


def test_non_object_line_is_rejected(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=":1: expected a JSON object, got list"):
        read_trajectories(path)


def test_duplicate_id_names_the_second_line(tmp_path):
    path = tmp_path / "t.jsonl"
    append_trajectories(path, [_trajectory("a"), _trajectory("b"), _trajectory("a")])
    with pytest.raises(DataError, match=r":3: field 'id': id 'a' appears twice"):
        read_trajectories(path)


def test_writing_a_repeated_id_fails_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trajectories(path, [_trajectory("old")])
    with pytest.raises(ValueError, match="appears twice"):
        write_trajectories(path, [_trajectory("a"), _trajectory("a")])
    assert [t.id for t in read_trajectories(path)] == ["old"]


def test_append_completes_a_whole_last_line_without_newline(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trajectories(path, [_trajectory("a"), _trajectory("b")])
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    append_trajectories(path, [_trajectory("c")])
    assert [t.id for t in read_trajectories(path)] == ["a", "b", "c"]


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_trajectories(tmp_path / "absent.jsonl")


def _torn_file(path):
    """Two whole records and a third cut mid-JSON, without its newline (a crash mid-append)."""
    append_trajectories(path, [_trajectory("a"), _trajectory("b")])
    whole = path.read_text()
    with path.open("a") as f:
        f.write(json.dumps(_trajectory("c").to_dict())[:50])
    return whole


def test_torn_last_line_is_skipped_only_on_request(tmp_path):
    path = tmp_path / "t.jsonl"
    _torn_file(path)
    assert [t.id for t in read_trajectories(path, skip_torn_tail=True)] == ["a", "b"]
    with pytest.raises(DataError, match=r":3: not valid JSON"):
        read_trajectories(path)


def test_append_after_a_torn_line_keeps_whole_records_only(tmp_path):
    path = tmp_path / "t.jsonl"
    whole = _torn_file(path)
    assert append_trajectories(path, [_trajectory("c"), _trajectory("d")]) == 2
    assert path.read_text().startswith(whole)
    assert [t.id for t in read_trajectories(path)] == ["a", "b", "c", "d"]
    assert read_trajectories(path)[2] == _trajectory("c")


def test_a_torn_line_in_the_middle_is_an_error_even_when_skipping(tmp_path):
    path = tmp_path / "t.jsonl"
    _torn_file(path)
    with path.open("a") as f:
        f.write("\n" + json.dumps(_trajectory("d").to_dict()) + "\n")
    with pytest.raises(DataError, match=r":3: not valid JSON"):
        read_trajectories(path, skip_torn_tail=True)


def test_write_replaces_atomically_and_cleans_up(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trajectories(path, [_trajectory("old")])
    before = path.read_bytes()

    def failing():
        yield _trajectory("new1")
        raise RuntimeError("generator broke")

    with pytest.raises(RuntimeError, match="generator broke"):
        write_trajectories(path, failing())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]
    write_trajectories(path, [_trajectory("new")])
    assert [t.id for t in read_trajectories(path)] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]


@pytest.mark.parametrize(
    "raw, shown", [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1" + "0" * 400, "inf")]
)
@pytest.mark.parametrize("field", ["reward", "turns[2].reward"])
def test_a_reward_that_is_not_a_finite_number_is_named_with_its_line(tmp_path, raw, shown, field):
    bad = _trajectory("b").to_dict()
    (bad if field == "reward" else bad["turns"][2])["reward"] = "__REWARD__"
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_trajectory("a").to_dict()) + "\n" + json.dumps(bad).replace('"__REWARD__"', raw) + "\n")
    with pytest.raises(DataError, match=re.escape(f"t.jsonl:2: field '{field}': must be a finite number, got {shown}")):
        read_trajectories(path)


def test_an_environment_sets_its_own_reward_scale(tmp_path):
    """A step penalty of a user's environment stays readable: only imported expert data is held to [0, 1]."""
    record = _trajectory("p").to_dict()
    record["reward"], record["turns"][0]["reward"] = -0.5, -0.1
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (read,) = read_trajectories(path)
    assert read.reward == -0.5 and read.turns[0].reward == -0.1


@pytest.mark.parametrize(
    "edit, field, reason",
    [
        (lambda r: r["meta"]["replay"].update(divergence=float("nan")), "meta.replay.divergence", "got nan"),
        (
            lambda r: r["provenance"]["sampling"].update(temperature=float("inf")),
            "provenance.sampling.temperature",
            "got inf",
        ),
        (lambda r: r["meta"].update(deep=json.loads("[" * 100 + "]" * 100)), "meta", "nested deeper than 64 levels"),
    ],
)
def test_free_form_blocks_must_hold_standard_json(tmp_path, edit, field, reason):
    bad = _trajectory().to_dict()
    edit(bad)
    path = tmp_path / "t.jsonl"
    _write_records(path, [bad])
    with pytest.raises(DataError, match=re.escape(f"t.jsonl:1: field '{field}': ") + ".*" + re.escape(reason)):
        read_trajectories(path)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b'{"id": "\xff"}\n', "not valid UTF-8"),
        (b"[" * 100000 + b"]" * 100000 + b"\n", "nested too deeply to read"),
        (b'{"id": ' + b"9" * 5000 + b"}\n", "a number has too many digits to read"),
    ],
)
def test_unreadable_lines_are_one_line_errors(tmp_path, data, reason):
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(_trajectory().to_dict()).encode() + b"\n" + data)
    with pytest.raises(DataError, match=re.escape(f"t.jsonl:2: {reason}")):
        read_trajectories(path)


def test_a_trainable_flag_in_the_prompt_is_dropped_on_read(tmp_path):
    record = _trajectory().to_dict()
    record["prompt"][2]["trainable"] = True  # what imports of ETO's "OK" handshake used to write
    path = tmp_path / "t.jsonl"
    _write_records(path, [record])
    (read,) = read_trajectories(path)
    assert read.prompt == _trajectory().prompt
    assert not any(m.trainable for m in read.with_masks([False] * 3).messages())


def test_non_finite_numbers_are_never_written(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trajectories(path, [_trajectory("old")])
    before = path.read_bytes()
    for bad in (_trajectory("n", reward=float("nan")), _trajectory("m", meta={"x": float("inf")})):
        with pytest.raises(DataError, match="holds NaN or an infinite number"):
            write_trajectories(path, [_trajectory("a"), bad])
        with pytest.raises(DataError, match="holds NaN or an infinite number"):
            append_trajectories(path, [bad])
        assert path.read_bytes() == before


def test_append_after_a_whole_but_unreadable_last_line_keeps_it_for_the_reader(tmp_path):
    path = tmp_path / "t.jsonl"
    append_trajectories(path, [_trajectory("a")])
    with path.open("a") as f:
        f.write('{"id": ' + "9" * 5000 + "}")  # valid JSON, no newline: not what a crash leaves
    with pytest.raises(DataError, match=r"t\.jsonl:2: a number has too many digits to read$"):
        read_trajectories(path, skip_torn_tail=True)
    append_trajectories(path, [_trajectory("b")])
    with pytest.raises(DataError, match=r"t\.jsonl:2: a number has too many digits to read$"):
        read_trajectories(path, skip_torn_tail=True)
