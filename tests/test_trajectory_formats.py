import json
import re

import pytest

from eef.agent.prompt import PromptConfig, build_prompt
from eef.errors import DataError, UnknownNameError
from eef.trajectory import Message, Provenance, Trajectory, Turn
from eef.trajectory_formats import (
    export_trajectories,
    from_openai,
    from_sharegpt,
    import_trajectories,
    to_openai,
    to_sharegpt,
)


def _trajectory(id="t0", task_id="shop_3", **changes) -> Trajectory:
    fields = dict(
        id=id,
        env="shop",
        task_id=task_id,
        prompt=build_prompt("shop", PromptConfig(one_shot=True)),  # system, then a one-shot example
        first_observation="page 0",
        turns=(
            Turn("Thought: look.\nAction: search[hat]", "search[hat]", "page 1", 0.0, True),
            Turn("Thought: oops.\nAction: click[wrong", "click[wrong]", "page 2", 0.0, False),
            Turn("Action: click[Buy Now]", "click[Buy Now]", "Thank you", 0.75, True),
        ),
        reward=0.75,
        success=False,
        terminated=True,
        provenance=Provenance("self", iteration=1, start_step=1, parent_id="p", model="m", sampling={"seed": 1}),
        meta={"note": "x"},
    )
    return Trajectory(**(fields | changes))


def _write(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize("format", ["sharegpt", "openai"])
def test_export_then_import_restores_equal_trajectories(tmp_path, format):
    trajectories = [
        _trajectory("a"),
        _trajectory("b", task_id="7", turns=(), reward=0.0, terminated=False, provenance=Provenance("gpt-4"), meta={}),
    ]
    path = tmp_path / f"out.{format}.jsonl"
    assert export_trajectories(trajectories, path, format) == 2
    assert import_trajectories(path, format, env="ignored") == trajectories
    assert [json.loads(line)["item_id"] for line in path.read_text().splitlines()] == ["shop_3", "shop_7"]


def test_sharegpt_roles_and_loss_flags():
    t = _trajectory()
    record = to_sharegpt(t)
    conversation = record["conversations"]
    assert len(conversation) == len(t.messages())
    assert [m["from"] for m in conversation[:3]] == ["system", "human", "gpt"]
    assert all(m["loss"] is None for m in conversation if m["from"] != "gpt")
    assert [m["loss"] for m in conversation if m["from"] == "gpt"] == [False] * 5 + [True, False, True]
    assert conversation[-1]["value"] == "Action: click[Buy Now]"  # no observation after the last action
    assert (record["item_id"], record["reward"], record["success"]) == ("shop_3", 0.75, False)
    assert list(conversation[0]) == ["from", "loss", "value"]


def test_openai_roles_and_weights():
    record = to_openai(_trajectory())
    messages = record["messages"]
    assert [m["role"] for m in messages[:3]] == ["system", "user", "assistant"]
    assert all("weight" not in m for m in messages if m["role"] != "assistant")
    assert [m["weight"] for m in messages if m["role"] == "assistant"] == [0] * 5 + [1, 0, 1]
    assert record["item_id"] == "shop_3" and record["eef"]["id"] == "t0"


def test_extra_block_keeps_what_the_messages_lose():
    t = _trajectory(turns=(Turn("Thought: x\nAction: search[a", "search[a] exactly", "o1", 0.5, True),))
    assert from_sharegpt(to_sharegpt(t)) == t  # the recorded action, not the parsed one
    assert from_openai(to_openai(t)).turns[0].reward == 0.5


AGENTGYM = {
    "item_id": "webshop_6",
    "conversations": [
        {"from": "human", "loss": None, "value": "You are web shopping. Answer with Thought and Action."},
        {"from": "gpt", "loss": False, "value": "OK"},
        {"from": "human", "loss": None, "value": "WebShop [SEP] Instruction: a red hat [SEP] Search"},
        {"from": "gpt", "loss": True, "value": "Thought: search it.\nAction: search[red hat]"},
        {"from": "human", "loss": None, "value": "results"},
        {"from": "gpt", "loss": False, "value": "Thought: maybe.\nAction: Click [B01"},
        {"from": "human", "loss": None, "value": "item page"},
        {"from": "gpt", "loss": True, "value": "Thought: buy.\nAction: click[Buy Now]"},
    ],
}


def test_agentgym_record_without_eef_block_is_split_into_prompt_and_turns():
    t = from_sharegpt(AGENTGYM, "agentgym.jsonl", 1)
    assert t.prompt == (
        Message("user", "You are web shopping. Answer with Thought and Action."),
        Message("assistant", "OK"),
    )
    assert t.first_observation == "WebShop [SEP] Instruction: a red hat [SEP] Search"
    assert t.actions == ["search[red hat]", "click[B01]", "click[Buy Now]"]
    assert t.observations == ["results", "item page", ""]
    assert [turn.trainable for turn in t.turns] == [True, False, True]
    assert (t.id, t.env, t.task_id) == ("webshop_6", "webshop", "webshop_6")
    assert (t.reward, t.success, t.terminated, t.provenance) == (0.0, False, True, Provenance("imported"))


def test_foreign_reward_success_source_and_env():
    t = from_sharegpt(AGENTGYM | {"reward": 1.0, "source": "agentgym"}, env="shop")
    assert (t.reward, t.success, t.turns[-1].reward, t.turns[0].reward) == (1.0, True, 1.0, 0.0)
    assert (t.env, t.provenance.source) == ("shop", "agentgym")
    assert from_sharegpt(AGENTGYM | {"reward": 1.0, "success": False}).success is False
    assert from_sharegpt(AGENTGYM | {"reward": 0.5}, source="mine").provenance.source == "mine"


def test_foreign_prompt_without_trainable_messages_ends_before_the_first_real_turn():
    conversations = [dict(m, loss=False) if m["from"] == "gpt" else m for m in AGENTGYM["conversations"]]
    t = from_sharegpt({"item_id": "webshop_6", "conversations": conversations})
    assert [m.content for m in t.prompt][1] == "OK"  # the handshake stays context
    assert t.prompt[0].content.startswith("You are web shopping")
    assert "OK" not in t.actions and len(t.turns) == 3
    assert not any(turn.trainable for turn in t.turns)


def test_foreign_openai_record_without_weights_trains_every_assistant_message(tmp_path):
    record = {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "o0"},
            {"role": "assistant", "content": "Action: click[a]"},
            {"role": "user", "content": "o1"},
            {"role": "assistant", "content": "Action: click[b]"},
            {"role": "user", "content": "o2"},
        ]
    }
    path = tmp_path / "oa.jsonl"
    _write(path, [record, record])
    a, b = import_trajectories(path, "openai", env="shop")
    assert a.prompt == (Message("system", "sys"),) and a.first_observation == "o0"
    assert a.actions == ["click[a]", "click[b]"] and a.observations == ["o1", "o2"]
    assert all(turn.trainable for turn in a.turns)
    assert (a.id, b.id, a.task_id) == ("shop_1", "shop_2", "shop_1")  # numbered by line


def test_repeated_foreign_item_ids_get_suffixes(tmp_path):
    path = tmp_path / "a.jsonl"
    _write(path, [AGENTGYM, AGENTGYM, AGENTGYM | {"item_id": "webshop_6#2"}, AGENTGYM])
    assert [t.id for t in import_trajectories(path, "sharegpt")] == [
        "webshop_6",
        "webshop_6#2",
        "webshop_6#2#2",
        "webshop_6#3",
    ]


def test_repeated_eef_ids_are_an_error(tmp_path):
    path = tmp_path / "a.jsonl"
    _write(path, [to_sharegpt(_trajectory("a")), to_sharegpt(_trajectory("a"))])
    with pytest.raises(DataError, match=r"a\.jsonl:2: field 'eef\.id': id 'a' appears twice"):
        import_trajectories(path, "sharegpt")


def _with(record, edit):
    record = json.loads(json.dumps(record))
    edit(record)
    return record


@pytest.mark.parametrize(
    "format, edit, field, reason",
    [
        (
            "sharegpt",
            lambda r: r["conversations"][3].update({"from": "bot"}),
            "conversations[3].from",
            "'bot' is not one of system, human, gpt",
        ),
        ("sharegpt", lambda r: r["conversations"][3].pop("value"), "conversations[3].value", "missing"),
        ("sharegpt", lambda r: r["conversations"][3].update(loss="yes"), "conversations[3].loss", "expected a boolean"),
        (
            "sharegpt",
            lambda r: r["conversations"].insert(5, {"from": "system", "value": "x"}),
            "conversations[5].from",
            "expected 'gpt'",
        ),
        ("sharegpt", lambda r: r.update(conversations="x"), "conversations", "expected a list"),
        ("sharegpt", lambda r: r["conversations"].__setitem__(2, "hi"), "conversations[2]", "expected an object"),
        ("sharegpt", lambda r: r.update(item_id=6), "item_id", "expected a string"),
        ("sharegpt", lambda r: r.update(item_id="webshop"), "item_id", "no '<env>_' prefix"),
        ("sharegpt", lambda r: r.pop("item_id"), "item_id", "pass env"),
        ("sharegpt", lambda r: r.update(reward="1"), "reward", "expected a number"),
        ("sharegpt", lambda r: r.update(reward=float("nan")), "reward", "must be a finite number in [0, 1], got nan"),
        ("sharegpt", lambda r: r.update(reward=float("inf")), "reward", "must be a finite number in [0, 1], got inf"),
        ("sharegpt", lambda r: r.update(reward=1e300), "reward", "must be a finite number in [0, 1], got 1e+300"),
        ("openai", lambda r: r.update(reward=-5), "reward", "must be a finite number in [0, 1], got -5"),
        (
            "sharegpt",
            lambda r: r.update(conversations=[{"from": "gpt", "value": "x"}]),
            "conversations",
            "no 'human' message",
        ),
        ("openai", lambda r: r["messages"][3].update(weight=2), "messages[3].weight", "2 is not one of 0, 1"),
        ("openai", lambda r: r["messages"][3].update(weight=True), "messages[3].weight", "got a boolean"),
        ("openai", lambda r: r["messages"][1].update(role="tool"), "messages[1].role", "'tool' is not one of"),
        ("openai", lambda r: r["messages"][1].update(content=None), "messages[1].content", "expected a string"),
    ],
)
def test_foreign_errors_name_file_line_and_field(tmp_path, format, edit, field, reason):
    good = AGENTGYM if format == "sharegpt" else to_openai(_trajectory())
    good = _with(good, lambda r: r.pop("eef", None))
    path = tmp_path / "in.jsonl"
    _write(path, [good, _with(good, edit)])
    with pytest.raises(DataError, match=re.escape(f"in.jsonl:2: field '{field}': ")) as e:
        import_trajectories(path, format)
    assert reason in e.value.reason


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda r: r["eef"]["provenance"].pop("source"), "eef.provenance.source"),
        (lambda r: r["eef"]["provenance"].update(start_step=9), "eef.provenance.start_step"),
        (lambda r: r["eef"]["turns"][1].update(action=3), "eef.turns[1].action"),
        (lambda r: r["eef"]["turns"][1].update(reward="0"), "eef.turns[1].reward"),
        (lambda r: r["eef"]["turns"][1].update(reward=float("nan")), "eef.turns[1].reward"),
        (lambda r: r.update(reward=float("inf")), "reward"),
        (lambda r: r["eef"]["meta"].update(x=float("nan")), "eef.meta.x"),
        (lambda r: r["eef"]["turns"].pop(), "eef.turns"),
        (lambda r: r["eef"]["turns"].__setitem__(0, []), "eef.turns[0]"),
        (lambda r: r["eef"].update(prompt_messages=2), "eef.prompt_messages"),
        (lambda r: r["eef"].update(prompt_messages=99), "eef.prompt_messages"),
        (lambda r: r["eef"].pop("final_observation"), "eef.final_observation"),
        (lambda r: r["eef"].pop("id"), "eef.id"),
        (lambda r: r["eef"].update(meta=[]), "eef.meta"),
        (lambda r: r.pop("reward"), "reward"),
        (lambda r: r.update(success="yes"), "success"),
        (lambda r: r.update(eef="x"), "eef"),
    ],
)
def test_eef_block_errors_name_their_field(tmp_path, edit, field):
    path = tmp_path / "own.jsonl"
    _write(path, [_with(to_sharegpt(_trajectory()), edit)])
    with pytest.raises(DataError, match=re.escape(f"own.jsonl:1: field '{field}': ")):
        import_trajectories(path, "sharegpt")


def test_bad_json_missing_file_and_bad_encoding(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(AGENTGYM) + "\n{\n")
    with pytest.raises(DataError, match=r"x\.jsonl:2: not valid JSON"):
        import_trajectories(path, "sharegpt")
    path.write_bytes(json.dumps(AGENTGYM).encode() + b'\n"\xff"\n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: not valid UTF-8"):
        import_trajectories(path, "sharegpt")
    path.write_text("[]\n")
    with pytest.raises(DataError, match=r"x\.jsonl:1: expected a JSON object, got list"):
        import_trajectories(path, "openai")
    with pytest.raises(DataError, match="no such file"):
        import_trajectories(tmp_path / "absent.jsonl", "sharegpt")


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown format 'alpaca'; known: openai, sharegpt"):
        export_trajectories([_trajectory()], tmp_path / "x.jsonl", "alpaca")
    with pytest.raises(UnknownNameError, match="unknown format 'alpaca'"):
        import_trajectories(tmp_path / "x.jsonl", "alpaca")
    assert list(tmp_path.iterdir()) == []


def test_export_error_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.jsonl"
    export_trajectories([_trajectory("old")], path, "openai")
    before = path.read_bytes()

    def failing():
        yield _trajectory("new")
        raise RuntimeError("broke")

    with pytest.raises(RuntimeError, match="broke"):
        export_trajectories(failing(), path, "openai")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_an_eto_record_keeps_its_ok_handshake_in_the_prompt(tmp_path):
    record = {
        "id": 3,
        "item_id": "webshop_3",
        "reward": 1.0,
        "conversations": [
            {"from": "human", "value": "You are web shopping. Reply with Thought and Action."},
            {"from": "gpt", "value": "OK"},
            {"from": "human", "value": "Observation:\nWebShop [SEP] Instruction: [SEP] a red shirt [SEP] Search"},
            {"from": "gpt", "value": "Thought: search.\nAction: search[red shirt]"},
            {"from": "human", "value": "Observation:\n... [SEP] B0001 [SEP] red shirt"},
            {"from": "gpt", "value": "Thought: buy.\nAction: click[Buy Now]"},
        ],
    }
    path = tmp_path / "eto.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (trajectory,) = import_trajectories(path, "sharegpt")
    assert [m.content for m in trajectory.prompt] == ["You are web shopping. Reply with Thought and Action.", "OK"]
    assert trajectory.prompt == build_prompt("webshop", PromptConfig(trajectory.prompt[0].content, system_role=False))
    assert not any(m.trainable for m in trajectory.with_masks([False, False]).messages())  # "OK" does not train
    assert trajectory.actions == ["search[red shirt]", "click[Buy Now]"]
    assert trajectory.first_observation.startswith("Observation:\nWebShop")


def test_a_file_without_records_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match=r"empty\.jsonl: no records: the file is empty"):
        import_trajectories(path, "sharegpt")


def test_export_refuses_non_finite_numbers_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.jsonl"
    export_trajectories([_trajectory("old")], path, "sharegpt")
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"out\.jsonl:2: a record holds NaN or an infinite number"):
        export_trajectories([_trajectory("a"), _trajectory("b", reward=float("inf"))], path, "sharegpt")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
