"""A user's own iterative method runs in the pipeline beside the built-in ones."""

import json

import pytest

from eef.config import ConfigError, load_config
from eef.methods.registry import RejectionSampling, method_names, register_method, unregister_method
from eef.pipeline import run
from eef.rollout.plan import Start
from test_pipeline import TINY


class TwoTriesPerTask(RejectionSampling):
    """RFT with two rollouts of every task: a user's variation."""

    def starts(self, tasks, experts, settings):
        return [Start(t, index=i) for t in tasks for i in range(2)]


@pytest.fixture
def registered():
    register_method("two_tries", TwoTriesPerTask())
    yield "two_tries"
    unregister_method("two_tries")


def test_a_registered_method_runs_and_is_reported(registered, tmp_path):
    assert registered in method_names()
    config = load_config(None, [*TINY, f"run_dir={tmp_path}", f"methods.run=[sft_pos, {registered}]"])
    summary = run(config, log=lambda line: None)
    assert set(summary) == {"sft_pos", registered}
    explored = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (record,) = [r for r in explored if r["stage"] == "explore"]
    assert record["method"] == registered and record["episodes"] == 2 * 12 and record["from_states"] == 0


def test_an_unknown_method_lists_the_registered_ones_and_sft_pos_stays(registered):
    with pytest.raises(
        ConfigError, match=r"methods.run\[1\]: 'nope' is not one of sft_pos, rft, rft_k, eef, nat, eto, two_tries"
    ):
        load_config(None, ["methods.run=[sft_pos, nope]"])
    with pytest.raises(ValueError, match="sft_pos is every method's start"):
        register_method("sft_pos", TwoTriesPerTask())
