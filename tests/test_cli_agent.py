"""The agent commands end to end on files: model init -> explore -> train -> eval."""

import json

from typer.testing import CliRunner

from eef.cli import app
from eef.trajectory_files import read_trajectories

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_explore_train_eval_on_files(tmp_path):
    model = tmp_path / "model"
    _ok(
        [
            "model",
            "init",
            "--out",
            str(model),
            "--layers",
            "1",
            "--hidden-size",
            "32",
            "--heads",
            "2",
            "--kv-heads",
            "1",
            "--intermediate-size",
            "64",
            "--vocab-size",
            "600",
        ]
    )
    assert (model / "tokenizer.json").is_file()
    assert json.loads((model / "config.json").read_text())["num_key_value_heads"] == 1  # grouped-query from here on
    refused = runner.invoke(app, ["model", "init", "--out", str(tmp_path / "odd"), "--heads", "4", "--kv-heads", "3"])
    assert "--kv-heads: must divide heads (4), got 3" in str(refused.exception)

    rollouts = tmp_path / "rollouts.jsonl"
    explore = [
        "explore",
        "shop",
        "--model",
        str(model),
        "--out",
        str(rollouts),
        "--limit",
        "3",
        "--rollouts",
        "2",
        "--max-new-tokens",
        "6",
        "--num-envs",
        "4",
        "--instruction",
        "Shop with care.",
    ]
    assert "explored 6 episodes" in _ok(explore)
    assert "6 already in" in _ok(explore)  # a rerun repeats no finished start
    trajectories = read_trajectories(rollouts)
    assert len(trajectories) == 6 and {t.provenance.source for t in trajectories} == {"self"}

    restored = tmp_path / "restored.jsonl"
    _ok(
        [
            "explore",
            "shop",
            "--model",
            str(model),
            "--out",
            str(restored),
            "--from",
            str(rollouts),
            "--states",
            "1",
            "--max-new-tokens",
            "6",
        ]
    )
    assert {t.provenance.start_step for t in read_trajectories(restored)} == {1}
    beyond = ["explore", "shop", "--model", str(model), "--out", str(tmp_path / "none.jsonl"), "--from", str(rollouts)]
    refused = runner.invoke(app, [*beyond, "--states", "99"])
    assert "no trajectory there has any of the states '99'" in str(refused.exception)
    refused = runner.invoke(app, [*beyond[:-2], "--states", "1"])
    assert "--states picks states of the trajectories in --from" in str(refused.exception)
    assert not (tmp_path / "none.jsonl").exists()

    checkpoint = tmp_path / "ckpt"
    out = _ok(
        [
            "train",
            "--model",
            str(model),
            "--data",
            str(rollouts),
            "--out",
            str(checkpoint),
            "--epochs",
            "1",
            "--learning-rate",
            "1e-3",
            "--max-length",
            "1024",
            "--heldout",
            str(restored),
        ]
    )
    assert "held-out loss after" in out
    record = json.loads((checkpoint / "eef_train.json").read_text())
    assert record["agent"]["env"] == "shop" and record["agent"]["prompt"][0]["content"] == "Shop with care."
    assert any(r.startswith("transformers") for r in record["requires"]) and "transformers" in record["versions"]

    out = _ok(  # no ENV, no prompt options: the checkpoint's own
        [
            "eval",
            "--model",
            str(checkpoint),
            "--out",
            str(tmp_path / "eval"),
            "--limit",
            "2",
            "--max-new-tokens",
            "6",
            "--json",
        ]
    )
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["episodes"] == 2 and 0.0 <= figures["win_rate"] <= 1.0
    assert (tmp_path / "eval" / "tasks.tsv").is_file()
    assert {t.prompt[0].content for t in read_trajectories(tmp_path / "eval" / "trajectories.jsonl")} == {
        "Shop with care."
    }
    told = runner.invoke(
        app,
        ["eval", "shop", "--model", str(checkpoint), "--out", str(tmp_path / "eval2"), "--limit", "1"]
        + ["--max-new-tokens", "2", "--one-shot"],
    )
    assert told.exit_code == 0 and "trained with another prompt" in told.output


def test_an_unknown_split_is_a_clear_error(tmp_path):
    result = runner.invoke(
        app, ["eval", "shop", "--model", str(tmp_path), "--out", str(tmp_path / "e"), "--split", "nope"]
    )
    assert result.exit_code != 0 and "unknown split 'nope'" in str(result.exception)


def test_backend_mistakes_are_clear_errors(tmp_path):
    result = runner.invoke(app, ["eval", "shop", "--model", "gpt-4o", "--backend", "openai", "--out", str(tmp_path)])
    assert "--base-url" in str(result.exception)
    result = runner.invoke(app, ["eval", "shop", "--model", str(tmp_path / "absent"), "--out", str(tmp_path)])
    assert f"{tmp_path / 'absent'}: no such checkpoint directory" in str(result.exception)
