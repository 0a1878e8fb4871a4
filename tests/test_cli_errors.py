"""Bad input on the command line: one line naming the option, file or key, exit code 2, nothing
already written lost."""

import sys

import pytest

from eef.agent.prompt import build_prompt
from eef.cli import main
from eef.cli_options import refuse_overwrite_dir
from eef.errors import EefError
from eef.experts.oracle import oracle_trajectories
from eef.trajectory_files import write_trajectories


def _fails(args, capsys, monkeypatch) -> str:
    """Run ``eef ARGS`` as the console script does; its error output (exit code 2 checked)."""
    monkeypatch.setattr(sys, "argv", ["eef", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def data_dir(tmp_path):
    """A folder with an input file and a note the user wrote: what `train --out` must never remove."""
    folder = tmp_path / "work"
    (folder / "sub").mkdir(parents=True)
    (folder / "data.jsonl").write_text("")
    (folder / "sub" / "notes.txt").write_text("mine")
    return folder


def test_train_never_replaces_a_folder_that_holds_its_data(data_dir, capsys, monkeypatch):
    err = _fails(
        ["train", "--model", "m", "--data", str(data_dir / "data.jsonl"), "--out", str(data_dir), "--force"],
        capsys,
        monkeypatch,
    )
    assert f"{data_dir} holds the input {data_dir / 'data.jsonl'}, which replacing it would delete" in err
    assert (data_dir / "data.jsonl").is_file() and (data_dir / "sub" / "notes.txt").read_text() == "mine"


def test_an_existing_output_folder_needs_force_and_must_be_eefs(data_dir, tmp_path):
    with pytest.raises(EefError, match="already exists; pass --force to replace it"):
        refuse_overwrite_dir(data_dir, force=False)
    with pytest.raises(EefError, match="holds files eef did not write"):
        refuse_overwrite_dir(data_dir, force=True)
    (data_dir / "eef_train.json").write_text("{}")
    refuse_overwrite_dir(data_dir, force=True)  # a checkpoint eef wrote may be replaced when asked
    refuse_overwrite_dir(tmp_path / "new", force=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(EefError, match="exists and is not a directory"):
        refuse_overwrite_dir(tmp_path / "file", force=True)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--rows-per-step", "0", "--rows-per-step: must be at least 1, got 0"),
        ("--micro-batch-rows", "0", "--micro-batch-rows: must be at least 1, got 0"),
        ("--max-length", "0", "--max-length: must be at least 2, got 0"),
        ("--learning-rate", "nan", "--learning-rate: must be a finite number above 0, got nan"),
        ("--epochs", "-1", "--epochs: must be a finite number above 0, got -1.0"),
        ("--lora-r", "4", None),  # valid: reaches the empty data file
    ],
)
def test_train_settings_out_of_range_name_their_option(tmp_path, capsys, monkeypatch, option, value, message):
    data = tmp_path / "data.jsonl"
    data.write_text("")
    err = _fails(
        ["train", "--model", "m", "--data", str(data), "--out", str(tmp_path / "ckpt"), option, value],
        capsys,
        monkeypatch,
    )
    assert (message or f"--data {data}: no trajectories to train on") in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "-1"], "--temperature: must be at least 0, got -1.0"),
        (["--top-p", "0"], "--top-p: must be a number in (0, 1], got 0.0"),
        (["--max-new-tokens", "0"], "--max-new-tokens: must be at least 1, got 0"),
        (["--concurrency", "0"], "Invalid value for '--concurrency'"),
        (["--rollouts", "-2"], "Invalid value for '--rollouts'"),
        (["--limit", "0"], "Invalid value for '--limit'"),
        (["--num-envs", "0"], "Invalid value for '--num-envs'"),
    ],
)
def test_explore_options_out_of_range_name_their_option(tmp_path, capsys, monkeypatch, args, message):
    err = _fails(
        ["explore", "shop", "--model", str(tmp_path), "--out", str(tmp_path / "r.jsonl"), *args], capsys, monkeypatch
    )
    assert message in err and not (tmp_path / "r.jsonl").exists()


def test_env_verify_refuses_a_negative_limit(capsys, monkeypatch):
    assert "Invalid value for '--limit'" in _fails(["env", "verify", "shop", "--limit", "-3"], capsys, monkeypatch)


@pytest.mark.parametrize(
    "args, message",
    [
        (["env", "verify", "shop", "-o", "goals=[1,"], "error: option 'goals=[1,':1: not valid YAML"),
        (["run", "-s", "train.epochs=[1,"], "error: override 'train.epochs=[1,':1: not valid YAML"),
        (["run", "-s", "methods.run=[sft_pos"], "error: override 'methods.run=[sft_pos':1: not valid YAML"),
        (["run", "-s", "train.micro_batch_rows=0"], "train.micro_batch_rows: must be at least 1, got 0"),
    ],
)
def test_bad_yaml_and_values_in_options_are_one_error(capsys, monkeypatch, args, message):
    assert message in _fails(args, capsys, monkeypatch)


def test_a_folder_that_is_not_a_model_is_named(tmp_path, capsys, monkeypatch):
    (tmp_path / "notes.txt").write_text("not a model")
    err = _fails(
        ["eval", "shop", "--model", str(tmp_path), "--out", str(tmp_path / "eval"), "--limit", "1"], capsys, monkeypatch
    )
    assert f"error: {tmp_path}: cannot load a model and tokenizer (" in err and len(err.strip().splitlines()) == 1


def test_a_mistyped_checkpoint_directory_is_named_as_one(tmp_path, capsys, monkeypatch, shop_env):
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    write_trajectories(tmp_path / "d.jsonl", oracle_trajectories(shop_env, ["shop_0"], build_prompt("shop")))
    # a path that can only be local is refused before the hub is asked (which retries the network for a minute)
    for model, hint in (("./runs/tinyy", "; runs holds: tiny"), ("runs/tinyy/checkpoint", "")):
        err = _fails(["explore", "shop", "--model", model, "--out", "r.jsonl"], capsys, monkeypatch)
        assert err.endswith(f"error: {model}: no such checkpoint directory{hint}\n"), err
    # runs/tinyy may be a hub id: asked there (offline here: the test does not wait on the network's retries),
    # then named as a missing local directory too
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    err = _fails(["train", "--model", "runs/tinyy", "--data", "d.jsonl", "--out", "ck"], capsys, monkeypatch)
    assert "error: runs/tinyy: cannot load" in err and "no such local directory either; runs holds: tiny)" in err
    err = _fails(["eval", "--model", "runs/tinyy", "--out", "ev"], capsys, monkeypatch)  # no ENV: once blamed on it
    assert "runs/tinyy is no local checkpoint directory; runs holds: tiny" in err, err


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch, tiny_model_dir):
    taken = tmp_path / "taken.jsonl"
    taken.mkdir()  # a directory where the trajectories file goes
    err = _fails(
        [
            "explore",
            "shop",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(taken),
            "--limit",
            "1",
            "--max-new-tokens",
            "4",
        ],
        capsys,
        monkeypatch,
    )
    assert err == f"error: {taken}: exists and is not a file (it should hold trajectories, one per line)\n"
    eval_out = tmp_path / "eval-out"
    eval_out.write_text("a file where the evaluation's folder goes")
    err = _fails(
        [
            "eval",
            "shop",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(eval_out),
            "--limit",
            "1",
            "--max-new-tokens",
            "4",
        ],
        capsys,
        monkeypatch,
    )
    assert (
        err.strip().splitlines()[-1]
        == f"error: {eval_out}: exists and is not a directory (the evaluation writes its files into one)"
    )
    assert eval_out.read_text() == "a file where the evaluation's folder goes"


def test_checking_an_empty_file_is_an_error(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert f"error: {empty}: no trajectories to check" in _fails(
        ["data", "check", str(empty), "--env", "shop"], capsys, monkeypatch
    )
    assert not (tmp_path / "empty.checked.jsonl").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["expert", "shop", "--policy", "hf", "--model", "m", "--out", "x.jsonl", "--temperature", "-1"],
            "error: --temperature: must be at least 0, got -1.0",
        ),
        (
            ["expert", "shop", "--policy", "hf", "--model", "m", "--out", "x.jsonl", "--rollouts", "0"],
            "Invalid value for '--rollouts'",
        ),
        (["serve", "m", "--port", "70000"], "Invalid value for '--port'"),
        (["serve", "m", "--decode", "fast"], "error: --decode: must be one of auto, eager, compiled, got 'fast'"),
        (
            ["explore", "shop", "--model", "m", "--out", "x.jsonl", "--decode", "fast"],
            "error: --decode: must be one of auto, eager, compiled, got 'fast'",
        ),
        (
            ["explore", "shop", "--model", "m", "--out", "x.jsonl", "--request-timeout", "0"],
            "Invalid value for '--request-timeout'",
        ),
    ],
)
def test_more_options_out_of_range(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert message in _fails(args, capsys, monkeypatch)


def test_an_unknown_dtype_or_device_is_named(tmp_path, capsys, monkeypatch, tiny_model_dir):
    err = _fails(
        ["eval", "shop", "--model", str(tiny_model_dir), "--out", str(tmp_path / "e"), "--dtype", "float8"],
        capsys,
        monkeypatch,
    )
    assert "error: --dtype: must be one of auto, float32, bfloat16, float16, got 'float8'" in err
    err = _fails(
        ["eval", "shop", "--model", str(tiny_model_dir), "--out", str(tmp_path / "e"), "--device", "weird"],
        capsys,
        monkeypatch,
    )
    assert "error: --device: expected auto, cpu, cuda or cuda:N (or mps, xpu, npu, hpu), got 'weird'" in err


def test_a_directory_given_for_a_file_is_named_as_one(tmp_path, capsys, monkeypatch, shop_env):
    folder = tmp_path / "folder"
    folder.mkdir()
    assert f"error: {folder}: a directory, not a file" in _fails(["data", "check", str(folder)], capsys, monkeypatch)
    assert f"error: {folder}: a directory, not a configuration file" in _fails(
        ["config", "show", str(folder)], capsys, monkeypatch
    )
    data = tmp_path / "data.jsonl"
    write_trajectories(data, oracle_trajectories(shop_env, shop_env.task_ids("train")[:1], build_prompt("shop")))
    err = _fails(
        ["data", "export", str(data), "--format", "openai", "--out", str(folder), "--force"], capsys, monkeypatch
    )
    assert err == f"error: {folder}: Is a directory\n"  # the user's path, not the temporary file beside it
    assert list(folder.iterdir()) == []
    kept = data.read_bytes()
    for command in (["data", "export", str(data), "--format", "openai"], ["data", "check", str(data), "--env", "shop"]):
        err = _fails([*command, "--out", str(data), "--force"], capsys, monkeypatch)
        assert err == f"error: {data} is also the input: write the output elsewhere\n" and data.read_bytes() == kept


def test_a_catalog_without_training_or_test_tasks_is_named_before_any_work(tmp_path, capsys, monkeypatch):
    err = _fails(["run", "-s", "env.options.goals=200", "-s", f"run_dir={tmp_path / 'run'}"], capsys, monkeypatch)
    assert "error: expert.split: the environment's 'train' split has no tasks" in err
    assert not (tmp_path / "run" / "base-model").exists()
    # an empty test split is named before the expert stage too, not after SFT-POS has trained
    err = _fails(["run", "-s", "env.options.test=0", "-s", f"run_dir={tmp_path / 'run'}"], capsys, monkeypatch)
    assert "error: eval.split: the environment's 'test' split has no tasks" in err
    assert not (tmp_path / "run").exists()
