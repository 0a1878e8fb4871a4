import json
import re

import pytest
from expert_files import (
    ETO_INSTRUCTION,
    agentgym_record,
    eef_expert_record,
    eef_expert_sciworld_record,
    eto_record,
    session_of,
    write_array,
    write_eef_set,
    write_lines,
)

from eef.agent import PromptConfig, build_prompt
from eef.agent.parse import parse_turn
from eef.data.importers import expert_files, import_directory, import_file
from eef.errors import DataError, UnknownNameError
from eef.trajectory_formats import to_openai, to_sharegpt


def _same_episode(imported, run, *, outcome=True):
    """The imported trajectory is the recorded episode, in eef's observation format."""
    assert imported.task_id == run.task_id and imported.env == "shop"
    assert imported.first_observation == run.first_observation
    assert [t.action for t in imported.turns] == [parse_turn(t.text).action for t in run.turns]
    assert [t.observation for t in imported.turns[:-1]] == [t.observation for t in run.turns[:-1]]
    assert not outcome or (imported.reward, imported.success) == (run.reward, run.success)


def test_eto_file_resolves_sessions_and_keeps_failures(tmp_path, shop_env, expert_runs):
    path = write_array(tmp_path / "webshop_sft.json", [eto_record(r) for r in expert_runs])
    result = import_file(path, "eto", shop_env)
    assert not result.unresolved and len(result.trajectories) == len(expert_runs)
    for imported, run in zip(result.trajectories, expert_runs):
        _same_episode(imported, run)
        assert imported.id == f"gpt4/{session_of(run.task_id)}" and imported.provenance.source == "gpt4"
        assert imported.prompt[-1].content == "OK" and imported.turns[-1].observation == ""
        assert imported.meta["import"]["resolved_by"] == "session"
        assert imported.meta["import"]["line"] >= 2 and not imported.meta["import"]["reward_assumed"]
    assert {t.success for t in result.trajectories} == {True, False}


def test_ids_that_do_not_resolve_are_listed_not_dropped(tmp_path, shop_env, expert_runs):
    run = expert_runs[0]
    unknown_task = eto_record(run, record_id=99999)
    unknown_task["conversations"][2]["value"] = "Observation:\nWebShop [SEP] Instruction: [SEP] a unicorn [SEP] Search"
    records = [eto_record(run), unknown_task, eto_record(run, record_id="3_7"), eto_record(run, record_id="x")]
    result = import_file(write_array(tmp_path / "f.json", records), "eto", shop_env)
    assert [t.id for t in result.trajectories] == ["gpt4/" + str(session_of(run.task_id)), "gpt4/x"]
    assert result.trajectories[1].meta["import"]["resolved_by"] == "instruction"  # id 'x': by its page
    assert [u.id for u in result.unresolved] == ["99999", "3_7"]
    lines = (tmp_path / "f.json").read_text().splitlines()
    assert all(lines[u.line - 1].strip() == "{" and '"id": ' in lines[u.line] for u in result.unresolved)
    assert "no shop task has the instruction" in result.unresolved[0].reason
    assert "shop has no task 'melt/7'" in result.unresolved[1].reason


def test_repeated_ids_are_numbered(tmp_path, shop_env, expert_runs):
    path = write_array(tmp_path / "f.json", [eto_record(expert_runs[0])] * 3)
    ids = [t.id for t in import_file(path, "eto", shop_env).trajectories]
    assert ids[1:] == [f"{ids[0]}#2", f"{ids[0]}#3"]


def test_agentgym_file(tmp_path, shop_env, expert_runs):
    records = [agentgym_record(r) for r in expert_runs[:3]]
    records.append(agentgym_record(expert_runs[0], item_id="sciworld_12"))
    records.append(agentgym_record(expert_runs[0], item_id="alfworld_3"))
    result = import_file(write_lines(tmp_path / "traj.jsonl", records), "agentgym", shop_env)
    for imported, run in zip(result.trajectories, expert_runs):
        _same_episode(imported, run, outcome=False)
        assert imported.id == f"agentgym/{run.task_id}" and imported.meta["import"]["reward_assumed"]
        assert imported.reward == 1.0  # AgentTraj holds successes; `eef data check` verifies it
        assert imported.prompt[-1].content == "Ok." and all(t.trainable for t in imported.turns)
    assert [u.line for u in result.unresolved] == [4, 5]
    assert "own task list" in result.unresolved[0].reason and "'alfworld'" in result.unresolved[1].reason


def test_eef_expert_file(tmp_path, shop_env, expert_runs):
    # The EEF set names WebShop; here the same rows go to an environment registered as `webshop`.
    records = [eef_expert_record(r) for r in expert_runs[:4]]
    result = import_file(
        write_array(tmp_path / "webshop_gpt4_0613.json", records), "eef-expert", _Renamed(shop_env, "webshop")
    )
    assert not result.unresolved
    for imported, run in zip(result.trajectories, expert_runs):
        assert imported.task_id == run.task_id.replace("shop_", "webshop_")
        assert imported.provenance.model == "gpt-4-0613" and imported.id.startswith("gpt-4-0613/")
        assert imported.meta["import"]["info"]["agent_arch"] == "react"
        assert imported.prompt == () and imported.reward == run.reward
        assert [t.observation for t in imported.turns[:-1]] == [t.observation for t in run.turns[:-1]]
    with pytest.raises(
        DataError,
        match=r"nothing to import: all 4 records are skipped, this first one because the "
        r"record is for environment 'webshop', not 'shop'",
    ) as info:
        import_file(tmp_path / "webshop_gpt4_0613.json", "eef-expert", shop_env)
    assert info.value.line == 2


def test_eef_expert_scienceworld_rows(tmp_path):
    record = {
        "id": 7,
        "info": {"reward": 75, "task_name": "task-1-boil", "var_num": 3, "llm_name": "gpt-4"},
        "conversations": [
            {"role": "user", "content": "Task: boil water"},
            {"role": "assistant", "content": "Thought: go.\nAction: teleport to kitchen"},
            {"role": "user", "content": "Observation: You teleport to the kitchen."},
            {"role": "assistant", "content": "Action: focus on water"},
        ],
    }
    result = import_file(write_array(tmp_path / "sciworld_gpt4.json", [record]), "eef-expert", _SciWorld())
    (imported,) = result.trajectories
    assert imported.task_id == "boil/3" and imported.reward == 0.75 and not imported.success
    assert imported.actions == ["teleport to kitchen", "focus on water"]
    assert imported.turns[0].observation == "You teleport to the kitchen."


def test_eto_scienceworld_ids(tmp_path):
    record = {
        "id": "0_3",
        "conversations": [
            {"from": "human", "value": "You are a helpful assistant to do some scientific experiment."},
            {"from": "gpt", "value": "OK"},
            {"from": "human", "value": "Your task is to boil water."},
            {"from": "gpt", "value": "Thought: x\nAction: look around"},
        ],
    }
    (imported,) = import_file(write_array(tmp_path / "sciworld_sft.json", [record]), "eto", _SciWorld()).trajectories
    assert imported.task_id == "boil/3" and imported.reward == 1.0 and imported.meta["import"]["reward_assumed"]


def test_openai_and_own_exports_round_trip(tmp_path, shop_env, expert_runs):
    own = write_lines(tmp_path / "own.jsonl", [to_openai(r) for r in expert_runs[:2]])
    result = import_file(own, "openai", shop_env)
    assert [t.id for t in result.trajectories] == [r.id for r in expert_runs[:2]]
    assert result.trajectories[0].turns == expert_runs[0].turns
    assert result.trajectories[0].meta["import"]["resolved_by"] == "task id"
    shared = write_lines(tmp_path / "own.sharegpt.jsonl", [to_sharegpt(r) for r in expert_runs[:2]])
    assert [t.turns for t in import_file(shared, "agentgym", shop_env).trajectories] == [
        r.turns for r in expert_runs[:2]
    ]
    bare = {
        "messages": [
            {"role": "user", "content": expert_runs[1].first_observation},
            {"role": "assistant", "content": expert_runs[1].turns[0].text},
        ]
    }
    (by_page,) = import_file(write_lines(tmp_path / "bare.jsonl", [bare]), "openai", shop_env).trajectories
    assert by_page.task_id == expert_runs[1].task_id and by_page.id == "openai/1"


def test_wrong_format_missing_fields_and_bad_json_name_file_line_and_field(tmp_path, shop_env, expert_runs):
    agentgym = write_lines(tmp_path / "traj.jsonl", [agentgym_record(expert_runs[0])])
    with pytest.raises(DataError) as info:
        import_file(agentgym, "eto", shop_env)
    assert (info.value.path, info.value.line, info.value.field) == (str(agentgym), 1, "id")
    with pytest.raises(DataError) as info:
        import_file(agentgym, "openai", shop_env)
    assert info.value.field == "messages"
    broken = eef_expert_record(expert_runs[0])
    broken["conversations"][1]["role"] = "robot"
    path = write_array(tmp_path / "x.json", [eef_expert_record(expert_runs[1]), broken])
    with pytest.raises(DataError) as info:
        import_file(path, "eef-expert", _Renamed(shop_env, "webshop"))
    assert info.value.line > 2 and info.value.field == "conversations[1].role"
    typed = eto_record(expert_runs[0])
    typed["reward"] = "high"
    with pytest.raises(DataError, match="field 'reward': expected a number"):
        import_file(write_array(tmp_path / "t.json", [typed]), "eto", shop_env)
    bad = tmp_path / "bad.json"
    bad.write_text('[\n{"id": 1,\n "conversations": [}\n]')
    with pytest.raises(DataError, match=r"bad.json:3: not valid JSON"):
        import_file(bad, "eto", shop_env)
    with pytest.raises(UnknownNameError, match="unknown format 'alpaca'"):
        import_file(bad, "alpaca", shop_env)


class _Renamed:
    """The shop under another registered name (the EEF set's rows name `webshop`)."""

    def __init__(self, env, name):
        self._env, self.name = env, name

    def task_ids(self, split):
        return [t.replace("shop_", f"{self.name}_") for t in self._env.task_ids(split)]

    def reset(self, task_id):
        return self._env.reset(task_id.replace(f"{self.name}_", "shop_"))

    def __getattr__(self, attribute):
        return getattr(self._env, attribute)


class _SciWorld:
    """Just enough of a ScienceWorld environment to resolve task ids (``task/variation``)."""

    name = "scienceworld"

    def splits(self):
        return ["train"]

    def task_ids(self, split):
        return [f"boil/{v}" for v in range(5)]

    def is_success(self, reward):
        return reward >= 1.0


def test_records_are_read_as_json_objects(tmp_path, shop_env):
    with pytest.raises(DataError, match="expected a JSON object"):
        import_file(write_lines(tmp_path / "n.jsonl", [[1, 2]]), "openai", shop_env)


def test_alfworld_rows_and_records_without_an_action_are_listed(tmp_path, shop_env, expert_runs):
    run = expert_runs[0]
    alfworld = {**eto_record(run), "game_file": "json_2.1.1/train/pick_and_place/trial_1/game.tw-pddl"}
    silent = eto_record(run)
    silent["conversations"] = silent["conversations"][:3]  # the first page and no turn after it
    result = import_file(write_array(tmp_path / "f.json", [alfworld, silent, eto_record(run)]), "eto", shop_env)
    assert len(result.trajectories) == 1 and [u.id for u in result.unresolved] == [str(session_of(run.task_id))] * 2
    assert "'alfworld'" in result.unresolved[0].reason and "no action" in result.unresolved[1].reason


def _foreign_openai(run):
    record = to_openai(run)
    del record["eef"], record["success"]  # a file made elsewhere: success follows from the reward
    return record


_RECORDS = {"eto": eto_record, "agentgym": agentgym_record, "openai": _foreign_openai, "eef-expert": eef_expert_record}


def _write_with_reward(path, format, run, raw):
    """A good record, then one whose reward is the JSON text ``raw`` (NaN and Infinity as Python writes them)."""
    bad = _RECORDS[format](run)
    (bad["info"] if format == "eef-expert" else bad)["reward"] = "__REWARD__"
    good = json.dumps(_RECORDS[format](run))
    path.write_text(good + "\n" + json.dumps(bad).replace('"__REWARD__"', raw) + "\n")
    return path


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("NaN", "nan"),
        ("Infinity", "inf"),
        ("-Infinity", "-inf"),
        ("1e300", "1e+300"),
        ("-5", "-5"),
        ("1.5", "1.5"),
        ("1" + "0" * 400, "inf"),
    ],
)
@pytest.mark.parametrize("format", sorted(_RECORDS))
def test_a_reward_outside_0_1_names_file_line_and_field(tmp_path, shop_env, expert_runs, format, raw, shown):
    path = _write_with_reward(tmp_path / "experts.jsonl", format, expert_runs[0], raw)
    field = "info.reward" if format == "eef-expert" else "reward"
    with pytest.raises(
        DataError, match=re.escape(f"experts.jsonl:2: field '{field}': must be a finite number in [0, 1], got {shown}")
    ):
        import_file(path, format, shop_env)


@pytest.mark.parametrize("format", sorted(_RECORDS))
def test_rewards_at_the_ends_of_the_range_import(tmp_path, shop_env, expert_runs, format):
    for raw, success in (("0", False), ("1", True)):
        path = _write_with_reward(tmp_path / "experts.jsonl", format, expert_runs[0], raw)
        env = _Renamed(shop_env, "webshop") if format == "eef-expert" else shop_env
        imported = import_file(path, format, env).trajectories[1]
        assert (imported.reward, imported.success) == (float(raw), success)


def test_scienceworld_scores_are_checked_in_0_100_then_scaled(tmp_path):
    def record(score):
        return {
            "id": 7,
            "info": {"reward": score, "task_name": "task-1-boil", "var_num": 3},
            "conversations": [
                {"role": "user", "content": "Task: boil water"},
                {"role": "assistant", "content": "Action: look around"},
            ],
        }

    (full,) = import_file(write_array(tmp_path / "ok.json", [record(100)]), "eef-expert", _SciWorld()).trajectories
    assert (full.reward, full.success) == (1.0, True)
    for score, shown in ((150, "150"), (-100, "-100")):
        with pytest.raises(
            DataError, match=re.escape(f"field 'info.reward': must be a finite number in [0, 100], got {shown}")
        ):
            import_file(write_array(tmp_path / "bad.json", [record(score)]), "eef-expert", _SciWorld())


def test_a_non_finite_number_elsewhere_in_a_kept_block_is_named(tmp_path, shop_env, expert_runs):
    record = eef_expert_record(expert_runs[0])
    record["info"]["usage"] = {"cost": float("nan")}
    with pytest.raises(DataError, match=r"x\.json:2: field 'info\.usage\.cost': must be a finite number, got nan"):
        import_file(write_array(tmp_path / "x.json", [record]), "eef-expert", _Renamed(shop_env, "webshop"))


@pytest.mark.parametrize("text", ["", "\n \n", "[]", " [\n ] \n"])
def test_a_file_without_records_is_an_error(tmp_path, shop_env, text):
    path = tmp_path / "experts.json"
    path.write_text(text)
    with pytest.raises(DataError, match=r"experts\.json: no records: the file is empty"):
        import_file(path, "eto", shop_env)


def test_a_file_whose_every_record_is_skipped_is_an_error(tmp_path, shop_env, expert_runs):
    silent = eto_record(expert_runs[0])
    silent["conversations"] = silent["conversations"][:3]
    with pytest.raises(
        DataError,
        match=r"f\.jsonl:1: nothing to import: its only record is skipped, this first "
        r"one because the conversation has no assistant turn",
    ):
        import_file(write_lines(tmp_path / "f.jsonl", [silent]), "eto", shop_env)


def test_the_eto_handshake_is_the_same_untrained_prompt_eef_generates(tmp_path, shop_env, expert_runs):
    run = expert_runs[0]
    for format, record in (("eto", eto_record(run)), ("agentgym", agentgym_record(run))):
        path = write_lines(tmp_path / f"{format}.jsonl", [record])
        (imported,) = import_file(path, format, shop_env).trajectories
        assert not any(m.trainable for m in imported.prompt)
        masked = imported.with_masks([False] * len(imported.turns))
        assert not any(m.trainable for m in masked.messages())  # no token trains on a fully masked trajectory
    eto = import_file(tmp_path / "eto.jsonl", "eto", shop_env).trajectories[0]
    assert eto.prompt == build_prompt("shop", PromptConfig(ETO_INSTRUCTION, system_role=False))


def test_malformed_bytes_and_json_name_file_and_line(tmp_path, shop_env, expert_runs):
    good = json.dumps(eto_record(expert_runs[0]))
    cases = {
        "utf8.jsonl": (good + "\n").encode() + b'{"id": "\xff"}\n',
        "utf8.json": ("[" + good + ",\n").encode() + b'{"id": "\xff"}]',
        "deep.jsonl": (good + "\n" + "[" * 100000 + "]" * 100000 + "\n").encode(),
        "deep.json": ("[" + good + ",\n" + "[" * 100000 + "]" * 100000 + "]").encode(),
        "digits.jsonl": (good + '\n{"id": ' + "7" * 5000 + "}\n").encode(),
        "digits.json": ("[" + good + ',\n{"id": ' + "7" * 5000 + "}]").encode(),
        "torn.jsonl": (good + "\n" + good[:100]).encode(),
    }
    reasons = {
        "utf8": "not valid UTF-8",
        "deep": "nested too deeply to read",
        "digits": "a number has too many digits to read",
        "torn": "as if cut short",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as info:
            import_file(tmp_path / name, "eto", shop_env)
        assert info.value.path == str(tmp_path / name) and info.value.line == 2, name
        assert reasons[name.split(".")[0]] in info.value.reason and "\n" not in str(info.value)


@pytest.mark.parametrize("record_id", ["1" * 5000, "\u00b2", "1" * 5000 + "_3"])
def test_odd_ids_resolve_by_the_page_instead_of_failing(tmp_path, shop_env, expert_runs, record_id):
    path = write_array(tmp_path / "f.json", [eto_record(expert_runs[0], record_id=record_id)])
    (imported,) = import_file(path, "eto", shop_env).trajectories
    assert imported.task_id == expert_runs[0].task_id and imported.meta["import"]["resolved_by"] == "instruction"


def test_a_byte_order_mark_is_read_past(tmp_path, shop_env, expert_runs):
    record = json.dumps(eto_record(expert_runs[0]))
    for name, text in (("bom.json", "[" + record + "]"), ("bom.jsonl", record + "\n")):
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert len(import_file(tmp_path / name, "eto", shop_env).trajectories) == 1


def _relative(files, root):
    return [(f.path.relative_to(root).as_posix(), f.records, f.imported, f.unresolved, f.elsewhere) for f in files]


def test_a_fetched_eef_set_imports_file_by_file_into_webshop(tmp_path, shop_env, expert_runs):
    root = write_eef_set(tmp_path / "eef-expert", expert_runs)
    assert [p.relative_to(root).as_posix() for p in expert_files(root)] == [
        "test trajs/NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json",
        "webshop_gpt35_turbo.json",
        "webshop_gpt4_0613.json",
        "webshop_gpt4_0613_t07.json",
    ]
    result = import_directory(root, "eef-expert", _Renamed(shop_env, "webshop"))
    assert _relative(result.files, root) == [
        ("test trajs/NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json", 2, 0, 2, ("scienceworld",)),
        ("webshop_gpt35_turbo.json", 2, 2, 0, ()),
        ("webshop_gpt4_0613.json", 4, 4, 0, ()),
        ("webshop_gpt4_0613_t07.json", 2, 2, 0, ()),
    ]
    assert result.unresolved == []  # the ScienceWorld file is skipped whole, not listed record by record
    assert [f.successes for f in result.files[1:]] == [
        sum(r.success for r in runs) for runs in (expert_runs[4:6], expert_runs[:4], expert_runs[:2])
    ]
    ids = [t.id for t in result.trajectories]
    assert len(set(ids)) == len(ids) == 8
    first = f"gpt-4-0613/{session_of(expert_runs[0].task_id)}"
    assert first in ids and f"{first}#2" in ids  # the same model's second file repeats its record ids
    (again,) = [t for t in result.trajectories if t.id == f"{first}#2"]
    assert again.meta["import"]["file"] == str(root / "webshop_gpt4_0613_t07.json")
    assert again.meta["import"]["info"]["llm_name"] == "gpt-4-0613" == again.provenance.model
    assert again.meta["import"]["info"]["agent_arch"] == "react"


def test_a_fetched_eef_set_imports_its_scienceworld_runs_into_scienceworld(tmp_path, expert_runs):
    root = write_eef_set(tmp_path / "eef-expert", expert_runs)
    result = import_directory(root, "eef-expert", _SciWorld())
    assert [f.elsewhere for f in result.files] == [(), ("webshop",), ("webshop",), ("webshop",)]
    solved, partial = result.trajectories
    assert (solved.task_id, solved.reward, solved.success) == ("boil/3", 1.0, True)
    assert (partial.task_id, partial.reward, partial.success) == ("boil/4", 0.35, False)
    assert partial.meta["import"]["info"]["reward"] == 35  # the set's own 0-100 score is kept
    assert partial.meta["import"]["file"] == str(root / "test trajs" / "NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json")
    assert (
        partial.provenance.model == "NAT3I99p-ep6-6fm-ep6"
        and partial.meta["import"]["info"]["agent_arch"] == "think_act"
    )


def test_a_row_of_a_scienceworld_file_never_resolves_as_a_webshop_session(tmp_path, shop_env, expert_runs):
    bare = eef_expert_sciworld_record(session_of(expert_runs[0].task_id))
    del bare["info"]["task_name"], bare["info"]["var_num"]
    root = tmp_path / "set"
    write_array(root / "test trajs" / "gpt-4_sciworld_1_-200.json", [bare])
    write_array(root / "webshop_gpt4_0613.json", [eef_expert_record(expert_runs[0])])
    into_webshop = import_directory(root, "eef-expert", _Renamed(shop_env, "webshop"))
    assert into_webshop.files[0].elsewhere == ("scienceworld",) and len(into_webshop.trajectories) == 1
    with pytest.raises(DataError, match="the ScienceWorld row has no info.task_name and info.var_num"):
        import_file(root / "test trajs" / "gpt-4_sciworld_1_-200.json", "eef-expert", _SciWorld())


def test_a_directory_with_nothing_to_import_or_a_bad_file_is_an_error(tmp_path, shop_env, expert_runs):
    with pytest.raises(DataError, match=r"no expert files \(\.json, \.jsonl, \.jsonl\.gz\) in this directory"):
        import_directory(tmp_path, "eef-expert", shop_env)
    root = write_eef_set(tmp_path / "set", expert_runs)
    with pytest.raises(
        DataError,
        match=r"set: nothing to import for shop in 4 files \(10 records; records for scienceworld, webshop skipped\)",
    ):
        import_directory(root, "eef-expert", shop_env)
    broken = [eef_expert_sciworld_record(0), eef_expert_sciworld_record(1)]
    broken[1]["info"]["var_num"] = "four"
    path = write_array(root / "test trajs" / "NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json", broken)
    with pytest.raises(DataError) as info:
        import_directory(root, "eef-expert", _SciWorld())
    assert (info.value.path, info.value.field) == (str(path), "info.var_num") and info.value.line > 2
    with pytest.raises(UnknownNameError, match="unknown format 'alpaca'"):
        import_directory(root, "alpaca", _SciWorld())


def test_an_empty_file_in_a_directory_is_skipped(tmp_path, shop_env, expert_runs):
    write_array(tmp_path / "a.json", [eto_record(expert_runs[0])])
    (tmp_path / "b.jsonl").write_text("")
    result = import_directory(tmp_path, "eto", shop_env)
    assert [(f.records, f.imported) for f in result.files] == [(1, 1), (0, 0)]
