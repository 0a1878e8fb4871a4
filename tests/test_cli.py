import json
import subprocess
import sys

from typer.testing import CliRunner

from eef.cli import app


def eef(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from eef.cli import main; main()", *args], capture_output=True, text=True, timeout=120
    )


def test_env_list_shows_the_built_in_environments():
    out = eef("env", "list")
    assert out.returncode == 0
    assert "\nshop " in "\n" + out.stdout and "\nwebshop " in out.stdout and "\nscienceworld " in "\n" + out.stdout


def test_env_verify_json_last_line(webshop_1k_dir):
    out = eef("env", "verify", "webshop", "--limit", "200", "--json", "-o", f"data_dir={webshop_1k_dir}")
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["episodes"] == 200
    assert figures["successes"] + figures["capped_by_quirk"] == 200
    assert {"success_rate", "mean_reward", "capped_by_quirk"} <= set(figures)


def test_play_with_the_oracle_buys_and_wins():
    out = eef("env", "play", "shop", "shop_0", "--oracle")
    assert out.returncode == 0 and "Reward: 1.0 (success)" in out.stdout


def test_user_errors_exit_2_with_a_message(tmp_path):
    out = eef("env", "verify", "nope")
    assert out.returncode == 2 and "unknown environment 'nope'" in out.stderr
    out = eef("env", "verify", "webshop", "-o", f"data_dir={tmp_path}")
    assert out.returncode == 2 and "items_ins_v2.json: missing" in out.stderr
    out = eef("env", "verify", "shop", "-o", "colour=red")
    assert out.returncode == 2 and "option colour: no such option" in out.stderr
    out = eef("env", "verify", "shop", "-o", "groups=0")
    assert out.returncode == 2 and "option groups: must be a number in [1, 54], got 0" in out.stderr
    out = eef("env", "verify", "shop", "--split", "nope")
    assert out.returncode == 2 and "unknown split 'nope'; known: dev, test, train" in out.stderr


def test_version_and_the_resolved_configuration(tmp_path):
    from importlib import metadata

    from eef.config import DEFAULT_RUN_CONFIG, load_config

    assert eef("--version").stdout.strip() == f"eef {metadata.version('eef')}"
    # `python -m eef` is the same command (what `accelerate launch -m eef` runs)
    as_module = subprocess.run([sys.executable, "-m", "eef", "--version"], capture_output=True, text=True, timeout=120)
    assert as_module.returncode == 0 and as_module.stdout.strip() == f"eef {metadata.version('eef')}"
    shown = eef("config", "show", "-s", "train.epochs=2", "-s", "methods.run=[sft_pos, eef]")
    assert shown.returncode == 0, shown.stderr
    (tmp_path / "shown.yaml").write_text(shown.stdout)  # what is shown runs as it is
    # without a file: the built-in default `eef run` runs (its learning rate, not the schema's)
    wanted = load_config(DEFAULT_RUN_CONFIG, ["train.epochs=2", "methods.run=[sft_pos, eef]"])
    assert load_config(tmp_path / "shown.yaml") == wanted and wanted.train.learning_rate == 3e-3
    refused = eef("config", "show", "-s", "train.epochs=-1")
    assert refused.returncode == 2 and "train.epochs: must be a finite number above 0" in refused.stderr


def test_play_shows_the_view_runs_use_and_plays_another_on_request():
    runner = CliRunner()
    played = runner.invoke(app, ["env", "play", "shop", "shop_0"], input="")  # at once Ctrl-D
    assert played.exit_code == 0, played.output
    lines = played.output.splitlines()
    assert lines[0] == "View: compact (as in eef run's default config; --view picks another)"
    assert lines[1].startswith("Observation: Instruction: [SEP]")  # the compact start page
    assert lines[-1] == "Input ended after 0 of 10 steps; the episode did not end"
    played = runner.invoke(app, ["env", "play", "shop", "shop_0", "--view", "webshop"], input="")
    lines = played.output.splitlines()
    assert lines[0] == "View: webshop (eef run's default config: compact; --view picks another)"
    assert lines[1].startswith("Observation: WebShop [SEP] Instruction: [SEP]")
    refused = runner.invoke(app, ["env", "play", "shop", "shop_0", "--view", "webshop", "-o", "view=compact"])
    assert "--view webshop and -o view=compact disagree" in str(refused.exception)
