"""The terminal play loop of `eef env play`, fed typed lines and read back line by line."""

import pytest

from eef.envs import make
from eef.envs.play import INTERRUPTED, play_episode
from eef.errors import EefError


@pytest.fixture
def shop():
    return make("shop", view="compact")


def typed(*lines, then=EOFError):
    """An ``input`` that returns ``lines`` one by one, then raises ``then``; and the prompts it showed."""
    prompts, queue = [], list(lines)

    def read(prompt):
        prompts.append(prompt)
        if not queue:
            raise then
        return queue.pop(0)

    return read, prompts


def test_each_prompt_counts_steps_against_the_limit(shop):
    read, prompts = typed("search[jacket]", "click[next >]")
    written = []
    assert play_episode(shop, "shop_0", written.append, read) == 0
    assert prompts == ["Action (step 1/10): ", "Action (step 2/10): ", "Action (step 3/10): "]
    assert written[-1] == "Input ended after 2 of 10 steps; the episode did not end"


def test_an_invalid_action_is_named_and_its_unchanged_page_not_drawn_again(shop):
    read, prompts = typed("search[jacket]", "buy it")
    written = []
    play_episode(shop, "shop_0", written.append, read)
    assert written[2].startswith("Observation: Back to Search") and written[3].startswith("Valid: ")
    assert written[4] == "Invalid action 'buy it': not one of the valid actions (the step counts all the same)"
    assert written[5] == written[3]  # the same valid actions, the results page not drawn again
    assert prompts[-1] == "Action (step 3/10): "  # the invalid action used step 2


def test_a_blank_line_takes_no_step(shop):
    read, prompts = typed("", "  ", "search[jacket]")
    play_episode(shop, "shop_0", [].append, read)
    assert prompts == ["Action (step 1/10): "] * 3 + ["Action (step 2/10): "]


@pytest.mark.parametrize(
    ("key", "status", "summary"), [(EOFError, 0, "Input ended"), (KeyboardInterrupt, INTERRUPTED, "Stopped (Ctrl-C)")]
)
def test_ctrl_d_and_ctrl_c_end_with_a_newline_and_a_summary(shop, key, status, summary):
    read, _ = typed("search[jacket]", then=key)
    written = []
    assert play_episode(shop, "shop_0", written.append, read) == status
    assert written[-2:] == ["", f"{summary} after 1 of 10 steps; the episode did not end"]


def test_the_oracle_plays_to_the_end_and_the_steps_are_counted(shop):
    written = []
    assert play_episode(shop, "shop_0", written.append) == 0
    actions = [line for line in written if line.startswith("Action (step ")]
    assert actions[0].startswith("Action (step 1/10): search[")
    assert written[-1] == f"Reward: 1.0 (success) in {len(actions)} of 10 steps"
    assert not any(line.startswith("Valid: ") for line in written)  # no one to read them


def test_running_out_of_steps_says_so():
    shop = make("shop", view="compact", max_steps=2)
    read, _ = typed("search[jacket]", "search[shirt]")
    written = []
    assert play_episode(shop, "shop_0", written.append, read) == 0
    assert written[-1] == "Reward: 0.0 (failure, out of steps) in 2 of 2 steps"


def test_an_environment_without_an_oracle_is_refused():
    class NoOracle:
        name = "plain"

    with pytest.raises(EefError, match="'plain' has no oracle"):
        play_episode(NoOracle(), "t", [].append)
