"""A checkpoint says how it was trained: its agent card (environment, options, prompt) and the
package versions it needs; the commands run it that way unless told otherwise."""

import json
import shutil

import pytest
import torch

from eef.agent.card import AgentCard, card_of_trajectories, read_agent_card
from eef.agent.prompt import PromptConfig, build_prompt
from eef.cli_options import agent_setup
from eef.errors import EefError
from eef.experts.oracle import oracle_trajectories
from eef.models.loading import load_model_and_tokenizer, pick_device
from eef.models.requirements import check_requirements, checkpoint_requirements
from eef.trajectory import Message

OWN = (Message("system", "Buy what the shopper asks for."),)


def _checkpoint(tmp_path, card):
    (tmp_path / "eef_train.json").write_text(json.dumps({"agent": card.to_dict()}))
    return str(tmp_path)


def test_a_card_survives_its_json_form_and_a_training_set_gives_its_common_prompt(shop_env):
    card = AgentCard("shop", OWN, {"seed": 3})
    assert AgentCard.from_dict(json.loads(json.dumps(card.to_dict())), "x") == card
    tasks = shop_env.task_ids("train")[:3]
    trajectories = oracle_trajectories(shop_env, tasks, OWN) + oracle_trajectories(
        shop_env, tasks[:1], build_prompt("shop")
    )
    assert card_of_trajectories(trajectories) == AgentCard("shop", OWN)


def test_a_malformed_card_names_its_file(tmp_path):
    (tmp_path / "eef_train.json").write_text(json.dumps({"agent": {"env": "shop"}}))
    with pytest.raises(EefError, match=r"eef_train.json: agent: not an agent card"):
        read_agent_card(tmp_path)
    assert read_agent_card(tmp_path / "missing") is None


def test_a_command_runs_a_checkpoint_with_its_card_unless_told_otherwise(tmp_path):
    checkpoint = _checkpoint(tmp_path, AgentCard("shop", OWN, {"seed": 1}))
    warnings = []
    env, options, prompt = agent_setup(None, None, checkpoint, (None, None, None), warnings.append)
    assert (env.name, options, prompt, warnings) == ("shop", {"seed": 1}, OWN, [])

    env, options, prompt = agent_setup("shop", ["seed=2"], checkpoint, (True, None, None), warnings.append)
    assert options == {"seed": 2} and prompt == build_prompt("shop", PromptConfig(one_shot=True), env)
    assert len(warnings) == 2 and "options {'seed': 1}, not {'seed': 2}" in warnings[0]
    assert "another prompt" in warnings[1]


def test_an_option_given_replaces_that_option_of_the_card_only(tmp_path):
    checkpoint = _checkpoint(tmp_path, AgentCard("shop", OWN, {"seed": 1, "max_steps": 7}))
    warnings = []
    _, options, _ = agent_setup(None, ["max_steps=9"], checkpoint, (None, None, None), warnings.append)
    assert options == {"seed": 1, "max_steps": 9} and len(warnings) == 1
    _, options, _ = agent_setup(None, ["max_steps=7"], checkpoint, (None, None, None), warnings.append)
    assert options == {"seed": 1, "max_steps": 7} and len(warnings) == 1  # the card's own value: no warning


def test_without_a_card_the_environment_must_be_named(tmp_path):
    with pytest.raises(EefError, match="ENV: name the environment"):
        agent_setup(None, None, str(tmp_path), (None, None, None), print)
    env, _, prompt = agent_setup("shop", None, "org/some-model", (None, None, None), print)
    assert prompt == build_prompt("shop", PromptConfig(), env)


def test_a_checkpoint_needing_other_package_versions_is_refused_by_name(tiny_model_dir, tmp_path):
    requires = checkpoint_requirements()
    assert any(r.startswith("transformers>=") for r in requires) and not any(r.startswith("numpy") for r in requires)
    assert not any("<" in r for r in requires)  # a newer release reads what an older one wrote
    check_requirements(requires, tmp_path / "eef_train.json")  # this environment meets eef's own ranges
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, checkpoint)
    (checkpoint / "eef_train.json").write_text(json.dumps({"requires": ["transformers>=99"]}))
    with pytest.raises(EefError, match=r"eef_train.json: requires: this checkpoint needs transformers>=99; "):
        load_model_and_tokenizer(checkpoint, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_asking_for_cuda_without_it_is_one_clear_error():
    with pytest.raises(EefError, match="device 'cuda': this torch sees no CUDA device"):
        pick_device("cuda")
