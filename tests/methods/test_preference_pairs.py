"""ETO's preference pairs: who is preferred, the cut of long failures, what is counted, the file round trip."""

import pytest

from eef.errors import DataError
from eef.methods.preference import cut, expert_agent_pairs, pair_records, pairs_of_records
from eef.trajectory import Message, Provenance, Trajectory, Turn


def _episode(id, task, turns, reward, source="self", parent=None):
    return Trajectory(
        id,
        "shop",
        task,
        (Message("system", "sys"),),
        "obs0",
        tuple(Turn(f"Action: a{i}", f"a{i}", f"o{i}") for i in range(turns)),
        reward,
        reward == 1.0,
        True,
        Provenance(source, 0 if source != "self" else 1, 0, parent),
    )


def test_the_higher_reward_is_preferred_and_ties_pair_nothing():
    experts = [
        _episode("e1", "t1", 3, 1.0, "gpt-4"),
        _episode("e2", "t2", 3, 0.8, "gpt-4"),
        _episode("e3", "t3", 2, 1.0, "gpt-4"),
    ]
    rollouts = [_episode("r1", "t1", 4, 0.5), _episode("r2", "t2", 2, 1.0), _episode("r3", "t3", 2, 1.0)]
    pairs, counts = expert_agent_pairs(rollouts, experts, extra_turns=5)
    assert [(c.id, r.id) for c, r in pairs] == [("e1", "r1"), ("r2", "e2")]
    assert counts == {"pairs": 2, "agent_worse": 1, "agent_better": 1, "ties": 1, "no_expert": 0}


def test_a_long_failure_is_cut_to_the_experts_length_plus_the_extra_turns():
    expert = _episode("e1", "t1", 3, 1.0, "gpt-4")
    failure = _episode("r1", "t1", 15, 0.0)
    ((chosen, rejected),) = expert_agent_pairs([failure], [expert], extra_turns=5)[0]
    assert chosen is expert and len(rejected.turns) == 8 and rejected.turns == failure.turns[:8]
    assert rejected.reward == 0.0 and not rejected.success  # still the failed episode
    assert cut(failure, 20) is failure


def test_tasks_without_an_expert_success_and_restored_episodes_are_not_paired():
    expert = _episode("e1", "t1", 3, 1.0, "gpt-4")
    rollouts = [_episode("r1", "t9", 3, 0.0), _episode("r2", "t1", 3, 0.0, parent="e1")]
    pairs, counts = expert_agent_pairs(rollouts, [expert], extra_turns=5)
    assert pairs == [] and counts["no_expert"] == 1 and counts["pairs"] == 0


def test_the_best_demonstration_of_a_task_is_the_one_compared():
    weaker, better = _episode("e1", "t1", 3, 0.6, "gpt-3.5"), _episode("e2", "t1", 3, 1.0, "gpt-4")
    pairs, _ = expert_agent_pairs([_episode("r1", "t1", 3, 0.8)], [weaker, better], extra_turns=5)
    assert [(c.id, r.id) for c, r in pairs] == [("e2", "r1")]


def test_pairs_survive_a_file_and_broken_pairs_are_named():
    pairs = [(_episode("e1", "t1", 2, 1.0, "gpt-4"), _episode("r1", "t1", 3, 0.0))] * 2  # one expert in two pairs
    records = pair_records(pairs)
    assert len({r.id for r in records}) == 4 and records[0].meta["from_id"] == "e1"
    back = pairs_of_records(records, "train.jsonl")
    assert [(c.meta["from_id"], r.meta["from_id"]) for c, r in back] == [("e1", "r1"), ("e1", "r1")]
    assert [t.turns for pair in back for t in pair] == [t.turns for pair in pairs for t in pair]
    with pytest.raises(DataError, match=r"train.jsonl: field 'meta.pair': pair 1 has no rejected side"):
        pairs_of_records(records[:3], "train.jsonl")
    with pytest.raises(DataError, match=r"train.jsonl:2: field 'meta': no pair marks"):
        pairs_of_records([records[0], pairs[0][1]], "train.jsonl")
