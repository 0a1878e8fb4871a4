"""The expert-data commands end to end: import -> check, and `eef expert` against a real
OpenAI-compatible server on localhost."""

import dataclasses
import json
import sys
from pathlib import Path

from eef.agent.serve import serve
from eef.cli import app
from eef.trajectory_files import read_trajectories, write_trajectories
from eef.trajectory_formats import import_trajectories

sys.path.insert(0, str(Path(__file__).parent / "data"))
from expert_files import eef_expert_record, eef_expert_sciworld_record, eto_record, scripted_runs, write_array
from shopper import Shopper

from cli_helpers import cli_ok, runner


def _json(output):
    return json.loads(output.strip().splitlines()[-1])


def test_import_then_check(tmp_path, shop_env):
    expert_runs = scripted_runs(shop_env)
    records = [eto_record(r) for r in expert_runs[:4]]
    tampered = eto_record(expert_runs[4])
    tampered["conversations"][4]["value"] = "Observation:\nsomething else"
    unknown = eto_record(expert_runs[5], record_id=99999)
    unknown["conversations"][2]["value"] = "Observation:\nWebShop [SEP] Instruction: [SEP] a unicorn [SEP] Search"
    source = write_array(tmp_path / "webshop_sft.json", records + [tampered, unknown])
    out = tmp_path / "experts.jsonl"
    command = ["data", "import", str(source), "--format", "eto", "--env", "shop", "--out", str(out), "--json"]
    assert _json(cli_ok(command)) == {
        "imported": 5,
        "successes": sum(r.success for r in expert_runs[:5]),
        "unresolved": 1,
    }
    (listed,) = [json.loads(line) for line in out.with_suffix(".unresolved.jsonl").read_text().splitlines()]
    assert listed["id"] == "99999" and "no shop task" in listed["reason"] and listed["file"] == str(source)

    refused = runner.invoke(app, command)
    assert refused.exit_code != 0 and "already exist" in str(refused.exception) and "--force" in str(refused.exception)
    cli_ok(command + ["--force"])

    figures = _json(cli_ok(["data", "check", str(out), "--env", "shop", "--json"]))
    assert figures == {"checked": 5, "ok": 4, "flagged": 1, "reasons": {"observation": 1}, "divergence_steps": {"0": 1}}
    checked = read_trajectories(out.with_suffix(".checked.jsonl"))
    assert [t.meta["replay"]["ok"] for t in checked] == [True] * 4 + [False]
    assert "already exist" in str(runner.invoke(app, ["data", "check", str(out), "--env", "shop"]).exception)


def test_check_replays_in_the_trajectories_env_and_takes_the_older_order(tmp_path):
    played = tmp_path / "oracle.jsonl"
    cli_ok(["expert", "shop", "--policy", "oracle", "--out", str(played), "--limit", "2"])
    assert _json(cli_ok(["data", "check", str(played), "--json"]))["ok"] == 2  # no --env: the trajectories' own
    older = runner.invoke(app, ["data", "check", "shop", str(played), "--force", "--json"])
    assert older.exit_code == 0 and _json(older.stdout)["ok"] == 2
    assert f"`eef data check ENV PATH` is deprecated; use `eef data check {played} --env shop`" in older.stderr
    twice = runner.invoke(app, ["data", "check", "shop", str(played), "--env", "shop"])
    assert f"eef data check takes PATH [--env ENV], got shop {played} --env shop" in str(twice.exception)


def test_bad_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 1, "conversations": 3}]')
    result = runner.invoke(
        app, ["data", "import", str(bad), "--format", "eto", "--env", "shop", "--out", str(tmp_path / "o.jsonl")]
    )
    assert "bad.json:1: field 'conversations': expected a list" in str(result.exception)
    result = runner.invoke(
        app, ["data", "import", str(bad), "--format", "eto", "--env", "alfworld", "--out", str(tmp_path / "o.jsonl")]
    )
    assert "unknown environment 'alfworld'" in str(result.exception)
    assert not (tmp_path / "o.jsonl").exists()


def test_expert_against_an_openai_compatible_server(tmp_path, shop_env):
    out = tmp_path / "gpt.jsonl"
    shopper = Shopper()
    with serve(shopper) as server:
        command = [
            "expert",
            "shop",
            "--policy",
            "openai",
            "--model",
            "fake-gpt",
            "--base-url",
            server.url,
            "--out",
            str(out),
            "--limit",
            "4",
            "--num-envs",
            "2",
            "--concurrency",
            "2",
            "--temperature",
            "0.7",
            "--price-in",
            "2.5",
            "--price-out",
            "10",
            "--json",
        ]
        first = _json(cli_ok(command))
        trajectories = read_trajectories(out)
        assert (first["new"], first["episodes"]) == (4, 4) and len(trajectories) == 4
        assert first["prompt_tokens"] == shopper.prompt_tokens > 0
        assert first["completion_tokens"] == shopper.completion_tokens > 0
        assert abs(first["cost"] - (shopper.prompt_tokens * 2.5 + shopper.completion_tokens * 10) / 1e6) < 1e-12
        assert {t.task_id for t in trajectories} == set(shop_env.task_ids("train")[:4])
        assert all(
            t.provenance.model == "fake-gpt" and t.provenance.sampling["temperature"] == 0.7 for t in trajectories
        )
        assert all(t.meta["usage"]["model_calls"] == len(t.turns) for t in trajectories)

        command[command.index("--limit") + 1] = "6"
        again = _json(cli_ok(command))
        assert (again["new"], again["episodes"]) == (2, 6)
        assert again["prompt_tokens"] == shopper.prompt_tokens


def test_program_experts_and_fetch_list(tmp_path):
    out = tmp_path / "oracle.jsonl"
    figures = _json(cli_ok(["expert", "shop", "--policy", "oracle", "--out", str(out), "--limit", "2", "--json"]))
    assert (figures["episodes"], figures["successes"], figures["cost"]) == (2, 2, None)
    assert "needs --model" in str(runner.invoke(app, ["expert", "shop", "--out", str(out)]).exception)
    refused = runner.invoke(app, ["expert", "shop", "--policy", "scripted", "--out", str(out), "--rollouts", "3"])
    assert "program expert" in str(refused.exception) and "--rollouts" in str(refused.exception)
    plays = []
    for seed in ("0", "0", "1"):  # --seed picks the scripted expert's choices
        path = tmp_path / f"scripted-{len(plays)}.jsonl"
        cli_ok(
            ["expert", "shop", "--policy", "scripted", "--out", str(path), "--limit", "40", "--seed", seed, "--json"]
        )
        plays.append([t.actions for t in read_trajectories(path)])
    assert plays[0] == plays[1] != plays[2]
    listing = cli_ok(["data", "fetch", "--list"]).splitlines()
    assert [line.split()[0] for line in listing] == [
        "eef-expert",
        "eto",
        "agenttraj-l",
        "eto-splits",
        "webshop-1k",
        "webshop-full",
    ]


def test_eto_task_lists_become_split_files(tmp_path):
    fetched = tmp_path / "eto-splits"
    for name, text in {
        "train_indices.json": "[0, 3, 4116, 4116, 4117]",
        "test_indices.json": "[2853, 5934, 3]",
        "test_indices_500.json": "[11786, 5433]",
    }.items():
        (fetched / "webshop").mkdir(parents=True, exist_ok=True)
        (fetched / "webshop" / name).write_text(text)
    out = tmp_path / "splits"
    command = ["data", "splits", str(fetched), "--env", "webshop", "--out", str(out), "--json"]
    output = cli_ok(command)
    assert "  train        4 tasks (5 listed; listed twice or more: webshop_4116)" in output
    assert "test & train: 1 tasks in both" in output
    assert f"use: -o goals=human -o 'split_files={{train: {out / 'train.json'}, test: " in output
    figures = _json(output)
    assert figures["splits"]["train"] == {
        "tasks": 4,
        "listed": 5,
        "repeated": ["webshop_4116"],
        "file": str(out / "train.json"),
    }
    assert figures["shared"] == {"test & train": 1}
    assert json.loads((out / "train.json").read_text()) == [0, 3, 4116, 4117]
    assert json.loads((out / "test500.json").read_text()) == [11786, 5433]
    assert "already exist" in str(runner.invoke(app, command).exception)
    cli_ok(command + ["--force"])
    missing = runner.invoke(app, ["data", "splits", str(fetched), "--env", "scienceworld", "--out", str(out)])
    assert "sciworld/train_indices.json: missing (eef data fetch eto-splits" in str(missing.exception)


def test_a_fetched_directory_imports_file_by_file(tmp_path, webshop_1k_dir):
    option = ["-o", f"data_dir={webshop_1k_dir}"]
    played = tmp_path / "oracle.jsonl"
    cli_ok(["expert", "webshop", "--policy", "oracle", "--out", str(played), "--limit", "4", *option])
    records = [eef_expert_record(run) for run in read_trajectories(played)]
    records[3]["info"]["reward"] = 0.5  # a failure, as the set keeps them
    fetched = tmp_path / "eef-expert"
    write_array(fetched / "webshop_gpt4_0613.json", records)
    write_array(fetched / "test trajs" / "NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json", [eef_expert_sciworld_record(0)])
    (fetched / "MANIFEST.json").write_text("{}")
    out = tmp_path / "experts.jsonl"
    command = ["data", "import", str(fetched), "--format", "eef-expert", "--env", "webshop", "--out", str(out)]
    output = cli_ok([*command, *option, "--json"])
    assert (
        "  test trajs/NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json: skipped: its 1 records are for scienceworld" in output
    )
    assert "  webshop_gpt4_0613.json: 4 imported (3 successes), 0 unresolved" in output
    figures = _json(output)
    assert (figures["imported"], figures["successes"], figures["unresolved"]) == (4, 3, 0)
    assert [(f["path"], f["imported"], f["elsewhere"]) for f in figures["files"]] == [
        ("test trajs/NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json", 0, ["scienceworld"]),
        ("webshop_gpt4_0613.json", 4, []),
    ]
    imported = read_trajectories(out)
    assert [t.meta["import"]["info"]["llm_name"] for t in imported] == ["gpt-4-0613"] * 4

    records[2]["conversations"][1]["role"] = "robot"
    write_array(fetched / "webshop_gpt4_0613.json", records)
    refused = runner.invoke(app, [*command, *option, "--force"])
    assert "webshop_gpt4_0613.json:" in str(refused.exception)
    assert "field 'conversations[1].role'" in str(refused.exception)


def test_export_writes_each_turns_mask_for_other_trainers(tmp_path, shop_env):
    runs = scripted_runs(shop_env, count=4)
    runs[0] = dataclasses.replace(
        runs[0], turns=(dataclasses.replace(runs[0].turns[0], trainable=False), *runs[0].turns[1:])
    )
    source = tmp_path / "train.jsonl"
    write_trajectories(source, runs)
    for format, key in (("sharegpt", "conversations"), ("openai", "messages")):
        out = tmp_path / f"{format}.jsonl"
        assert f"exported 4 trajectories ({format})" in cli_ok(
            ["data", "export", str(source), "--format", format, "--out", str(out)]
        )
        records = [json.loads(line) for line in out.read_text().splitlines()]
        flags = [
            [m.get("loss", m.get("weight")) for m in r[key] if m.get("from", m.get("role")) in ("gpt", "assistant")]
            for r in records
        ]
        assert flags == [
            [bool(t.trainable) if format == "sharegpt" else int(t.trainable) for t in r.turns] for r in runs
        ]
    back = import_trajectories(tmp_path / "openai.jsonl", "openai", env="shop")
    assert [[t.trainable for t in r.turns] for r in back] == [[t.trainable for t in r.turns] for r in runs]
    refused = runner.invoke(
        app, ["data", "export", str(source), "--format", "openai", "--out", str(tmp_path / "openai.jsonl")]
    )
    assert refused.exit_code != 0 and "already exists; pass --force" in str(refused.exception)
