"""Run configurations: every problem reported at once, with key paths, before any work."""

import re

import pytest
import yaml

from eef.config import DEFAULT_RUN_CONFIG, ConfigError, RunConfig, load_config
from eef.errors import EefError


def _write(tmp_path, data):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_default_is_valid_and_names_every_method():
    config = load_config(DEFAULT_RUN_CONFIG)
    assert config.methods.run == ("sft_pos", "rft", "rft_k", "eef")
    assert config.methods.eef.m == 3 and config.methods.rft_k is None and config.model.tiny.kv_heads == 1
    assert config.as_dict()["methods"]["run"] == ["sft_pos", "rft", "rft_k", "eef"]


def test_all_problems_are_reported_with_their_key_paths(tmp_path):
    path = _write(
        tmp_path,
        {
            "extra": 1,
            "methods": {"eef": {"m": "five", "bogus": 1}, "selection": "best"},
            "train": {"epochs": "x"},
            "expert": {"sources": [{"kind": "file", "path": "no.jsonl"}]},
        },
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    problems = error.value.problems
    assert any(p.startswith("extra: unknown key") for p in problems)
    assert "methods.eef.m: expected an integer, got 'five'" in problems
    assert any(p.startswith("methods.eef.bogus: unknown key") for p in problems)
    assert any(p.startswith("methods.selection: 'best' is not one of") for p in problems)
    assert "train.epochs: expected a number, got 'x'" in problems
    assert str(path) in str(error.value)


def test_cross_checks_name_missing_files_and_unknown_methods(tmp_path):
    path = _write(
        tmp_path, {"methods": {"run": ["rft", "ppo"]}, "expert": {"sources": [{"kind": "file", "path": "no.jsonl"}]}}
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "methods.run[1]: 'ppo' is not one of sft_pos, rft, rft_k, eef, nat, eto" in error.value.problems
    assert any(p.startswith("expert.sources[0].path: 'no.jsonl' is not a file (") for p in error.value.problems)


def test_overrides_are_typed_and_validated_too():
    config = load_config(None, ["methods.iterations=1", "train.learning_rate=1e-3", "env.options={goals: 300}"])
    assert config.methods.iterations == 1 and config.train.learning_rate == 1e-3
    assert config.env.options == {"goals": 300}
    with pytest.raises(ConfigError, match="rollout.num_envs: must be at least 1"):
        load_config(None, ["rollout.num_envs=0"])
    with pytest.raises(ConfigError, match=r"train.decay_ratio: must be a number in \[0, 1\]"):
        load_config(None, ["train.decay_ratio=1.5"])
    with pytest.raises(ConfigError, match=r"methods.eto.beta: \[1\] must be a finite number above 0, got 0.0"):
        load_config(None, ["methods.eto.beta=[0.1, 0]"])
    assert load_config(None, ["methods.eto.beta=[0.2]"]).methods.eto.for_iteration(3) == (0.2, 5e-7)
    with pytest.raises(ConfigError, match=r"model.tiny.kv_heads: must divide heads \(4\), got 3"):
        load_config(None, ["model.tiny.kv_heads=3"])
    assert load_config(None, ["model.tiny.kv_heads=2"]).model.tiny.kv_heads == 2
    with pytest.raises(EefError, match="not KEY.PATH=VALUE"):
        load_config(None, ["methods.iterations"])


def test_the_training_precision_is_checked():
    with pytest.raises(ConfigError, match="train.mixed_precision: must be one of auto, bf16, fp16, no, got 'bfloat16'"):
        load_config(None, ["train.mixed_precision=bfloat16"])


def test_rollout_workers_need_the_hf_backend_and_an_environment_each():
    assert load_config(None, ["rollout.workers=2"]).rollout.workers == 2
    with pytest.raises(ConfigError, match="rollout.workers: must be at least 1, got 0"):
        load_config(None, ["rollout.workers=0"])
    with pytest.raises(ConfigError, match="rollout.workers: 2 worker processes need model.backend hf"):
        load_config(None, ["rollout.workers=2", "model.backend=vllm"])
    with pytest.raises(
        ConfigError, match=r"rollout.workers: 4 workers need at least as many environments \(rollout.num_envs is 2\)"
    ):
        load_config(None, ["rollout.workers=4", "rollout.num_envs=2"])


def test_a_missing_or_broken_file_is_a_clear_error(tmp_path):
    with pytest.raises(EefError, match="no such configuration file"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [unclosed")
    with pytest.raises(EefError, match="not valid YAML"):
        load_config(bad)


def test_defaults_live_in_the_schema():
    assert load_config(None) == RunConfig()


def test_expert_files_are_read_from_the_working_directory_like_every_path_of_a_configuration(tmp_path, monkeypatch):
    # a shipped config in configs/ names experts/... as it names its data: both from where the run starts
    (tmp_path / "experts").mkdir()
    (tmp_path / "experts" / "gpt4.jsonl").write_text("")
    sources = {"expert": {"sources": [{"name": "gpt-4", "kind": "file", "path": "experts/gpt4.jsonl"}]}}
    (tmp_path / "configs").mkdir()
    path = _write(tmp_path / "configs", sources)
    monkeypatch.chdir(tmp_path)
    (source,) = load_config(path).expert.sources
    assert source.path == str(tmp_path / "experts" / "gpt4.jsonl")  # saved absolute: a resume finds it from anywhere
    monkeypatch.chdir(tmp_path / "configs")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"'experts/gpt4.jsonl' is not a file ({tmp_path / 'configs' / 'experts' / 'gpt4.jsonl'})" in str(info.value)


def test_the_scripted_experts_mistake_rates_are_configurable_and_checked():
    config = load_config(
        None, ["expert.sources=[{kind: scripted, seed: 2, scripted: {wrong_option: [0.1, 0.1, 0.3]}}]"]
    )
    assert config.expert.sources[0].scripted.wrong_option == (0.1, 0.1, 0.3)
    with pytest.raises(
        ConfigError,
        match=r"expert.sources\[0\].scripted.decoy: expected one rate per tier "
        r"\(easy, medium, hard\), got \(0.1, 2.0\)",
    ):
        load_config(None, ["expert.sources=[{kind: scripted, scripted: {decoy: [0.1, 2]}}]"])
    with pytest.raises(ConfigError, match=r"expert.sources\[0\].scripted.refine: rates must lie in \[0, 1\]"):
        load_config(None, ["expert.sources=[{kind: scripted, scripted: {refine: 1.5}}]"])
    with pytest.raises(ConfigError) as error:  # a wrong type is reported once, not again by the class's own check
        load_config(None, ["expert.sources=[{kind: scripted, scripted: {decoy: 0.5}}]"])
    assert error.value.problems == ["expert.sources[0].scripted.decoy: expected a list, got float"]
    with pytest.raises(ConfigError) as error:
        load_config(None, ["expert.sources=[{kind: oracle, scripted: {refine: 0.1}}]"])
    assert error.value.problems == ["expert.sources[0].scripted: only for kind scripted, not 'oracle'"]
    with pytest.raises(ConfigError) as error:  # the source's seed is the expert's only seed, whatever the value
        load_config(None, ["expert.sources=[{kind: scripted, seed: 0, scripted: {seed: 0}}]"])
    assert error.value.problems[0].startswith("expert.sources[0].scripted.seed: unknown key; known: decoy, ")


@pytest.mark.parametrize(
    "override, problem",
    [
        ("rollout.temperature=-1", "rollout.temperature: must be at least 0, got -1.0"),
        ("rollout.top_p=7", r"rollout.top_p: must be a number in (0, 1], got 7.0"),
        ("rollout.worker_timeout_s=0", "rollout.worker_timeout_s: must be at least 1, got 0.0"),
        ("model.max_batch_size=0", "model.max_batch_size: must be at least 1, got 0"),
        ("model.tiny.heads=0", "model.tiny.heads: must be at least 1, got 0"),
        ("model.tiny.vocab_size=1", "model.tiny.vocab_size: must be at least 300, got 1"),
        ("expert.limit=0", "expert.limit: must be at least 1, got 0"),
        ("expert.limit=-1", "expert.limit: must be at least 1, got -1"),
        ("expert.sources=[]", "expert.sources: must not be empty"),
        ("eval.max_new_tokens=0", "eval.max_new_tokens: must be at least 1, got 0"),
        ("train.micro_batch_rows=0", "train.micro_batch_rows: must be at least 1, got 0"),
        ("train.epochs=-1", "train.epochs: must be a finite number above 0, got -1.0"),
        ("train.epochs=nan", "train.epochs: must be a finite number above 0, got nan"),
        ("train.learning_rate=-1", "train.learning_rate: must be a finite number above 0, got -1.0"),
        ("train.learning_rate=.inf", "train.learning_rate: must be a finite number above 0, got inf"),
        ("train.max_length=0", "train.max_length: must be at least 2, got 0"),
        ("train.warmup_ratio=5", "train.warmup_ratio: must be a number in [0, 1), got 5.0"),
        ("methods.rft_k=0", "methods.rft_k: must be at least 1, got 0"),
        ("methods.iteration_epochs=0", "methods.iteration_epochs: must be at least 1, got 0"),
        ("methods.run=[]", "methods.run: must not be empty"),
        ("run_dir=''", "run_dir: must not be empty"),
        ("seed=-1", "seed: must be a number in [0, 2147483647], got -1"),
        ("train.seed=4294967296", "train.seed: must be a number in [0, 4294967295], got 4294967296"),
    ],
)
def test_values_out_of_range_are_refused_before_any_work(override, problem):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert error.value.problems == [problem]
    assert f"{problem} (set by -s {override})" in str(error.value)  # the override, not the file, holds it


def test_every_out_of_range_field_of_a_section_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.epochs=0", "train.max_length=1", "rollout.num_envs=0"])
    assert sorted(p.split(":")[0] for p in error.value.problems) == [
        "rollout.num_envs",
        "train.epochs",
        "train.max_length",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "train:\n  epochs: 1\n  epochs: 2\n",
            r"run.yaml:3: not valid YAML: key 'epochs' given twice \(first on line 2\)",
        ),
        ("seed: !!python/object:os.system {}\n", "run.yaml:1: not valid YAML: could not determine a constructor"),
        ("seed: " + "[" * 2000 + "]" * 2000 + "\n", "run.yaml: not valid YAML: nested too deeply"),
        ("seed: " + "9" * 5000 + "\n", "run.yaml: not valid YAML: Exceeds the limit"),
    ],
)
def test_bad_yaml_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(EefError, match=message):
        load_config(path)


def test_a_configuration_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(EefError, match=r"run.yaml: not UTF-8 text \(byte 9\)"):
        load_config(path)


@pytest.mark.parametrize("override", ["train.epochs=[1,", "methods.run=[sft_pos", "seed=!!python/name:os.system"])
def test_bad_yaml_in_an_override_names_the_override(override):
    with pytest.raises(EefError, match=re.escape(f"override {override!r}:1: not valid YAML")):
        load_config(None, [override])


def test_merge_keys_are_yaml_not_duplicates(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("defaults: &rollout {temperature: 0.5, top_p: 0.9}\nrollout: {<<: *rollout, top_p: 0.8}\n")
    with pytest.raises(ConfigError, match="defaults: unknown key"):  # merged fine; the anchor's key is not ours
        load_config(path)
    path.write_text("rollout: &r {temperature: 0.5}\neval: {<<: *r, temperature: 0.0}\n")
    config = load_config(path)
    assert config.rollout.temperature == 0.5 and config.eval.temperature == 0.0


@pytest.mark.parametrize(
    "value, message",
    [("&a [*a]", "an alias refers to the value that holds it"), ("&a {x: *a}", "found unconstructable recursive node")],
)
def test_an_alias_that_holds_itself_is_refused(value, message):
    with pytest.raises(EefError, match=message):
        load_config(None, [f"env.options.view={value}"])


def test_aliases_that_expand_without_end_are_refused():
    # each list holds the one before four times: 4**12 values from a line of text
    bomb = (
        "{"
        + ", ".join(
            f"k{i}: " + ("&l0 [x]" if i == 0 else f"&l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]")
            for i in range(12)
        )
        + "}"
    )
    with pytest.raises(EefError, match="aliases expand to over 100,000 values"):
        load_config(None, [f"env.options={bomb}"])


def test_a_saved_configuration_of_an_older_eef_still_reads(tmp_path):
    """Keys added to the schema since a run began take their defaults, so `--resume` still matches."""
    from eef.config import saved_config

    old = RunConfig().as_dict()
    del old["model"]["request_timeout_s"], old["rollout"]["worker_timeout_s"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    assert saved_config(path).as_dict() == RunConfig().as_dict()


def test_environment_options_are_checked_by_name_type_and_range(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(None, ["env.options.goals=-5", "env.options.view=wide"])
    assert str(error.value).splitlines()[1:] == [
        "  env.options.goals: must be at least 1, got -5 (set by -s env.options.goals=-5)",
        "  env.options.view: must be one of webshop, compact, got 'wide' (set by -s env.options.view=wide)",
    ]
    with pytest.raises(ConfigError, match=r"env.options.seed: expected an integer, got 'abc'"):
        load_config(None, ["env.options.seed=abc"])
    # beside problems elsewhere, all at once; an unknown section is blamed on the override that named it
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.epochs=nan", "env.options.goals=-5", "bogus.key=1"])
    assert error.value.problems[0].startswith("bogus: unknown key") and "(set by -s bogus.key=1)" in str(error.value)
    assert error.value.problems[1:] == [
        "train.epochs: must be a finite number above 0, got nan",
        "env.options.goals: must be at least 1, got -5",
    ]
    with pytest.raises(ConfigError) as error:
        load_config(None, ["env=3"])
    assert error.value.problems == ["env: expected a mapping, got int"]
    with pytest.raises(ConfigError, match=r"env.options.colour: no such option; options: seed, goals"):
        load_config(None, ["env.options={colour: red}"])
    with pytest.raises(ConfigError, match=r"env.name: unknown environment 'nope'; known: .*shop"):
        load_config(None, ["env.name=nope"])
    path = tmp_path / "mine.yaml"
    path.write_text("env: {name: shop, options: {groups: 0}}\n")
    with pytest.raises(ConfigError) as error:  # a value from the file is reported against the file alone
        load_config(path)
    assert (
        str(error.value) == f"{path}: invalid configuration:\n  env.options.groups: must be a number in [1, 54], got 0"
    )


def test_the_device_and_dtype_are_checked_before_any_work():
    assert load_config(None, ["model.device=cuda:1", "model.dtype=bfloat16"]).model.device == "cuda:1"
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.device=weird", "model.dtype=fp8"])
    assert [p.split(":")[0] for p in error.value.problems] == ["model.device", "model.dtype"]
