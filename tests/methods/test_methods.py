"""EEF's labels, solutions and masks on hand-built success patterns."""

import pytest

from eef.methods import (
    BENEFICIAL,
    HARMFUL,
    NEUTRAL,
    PositiveRepository,
    analyse,
    analyse_all,
    eef_solutions,
    expert_demonstrations,
    select,
    self_solutions,
    simulation_states,
    state_positions,
)
from eef.trajectory import Message, Provenance, Trajectory, Turn

M = 3


def _trajectory(id, task, actions, success, start=0, parent=None, source="self", iteration=0):
    turns = tuple(
        Turn(f"Action: {a}", a, f"obs after {a}", 1.0 if success and i == len(actions) - 1 else 0.0, i >= start)
        for i, a in enumerate(actions)
    )
    return Trajectory(
        id,
        "shop",
        task,
        (Message("system", "sys"),),
        "obs0",
        turns,
        1.0 if success else 0.0,
        success,
        True,
        Provenance(source, iteration, start, parent),
    )


def _expert(n=8, task="shop_1"):
    return _trajectory(f"expert/{task}", task, [f"e{i}" for i in range(n)], False, source="gpt-4")


def _simulations(expert, outcomes, agent_len=3):
    """One agent rollout per state of the expert: expert prefix, then agent actions."""
    sims = []
    for position, ok in zip(state_positions(expert, M), outcomes):
        actions = [t.action for t in expert.turns[:position]] + [f"a{position}.{i}" for i in range(agent_len)]
        sims.append(
            _trajectory(
                f"sim@{position}", expert.task_id, actions, ok, start=position, parent=expert.id if position else None
            )
        )
    return sims


def test_states_follow_l_equals_t_over_m_plus_one():
    assert simulation_states(8, 3) == [2, 4, 6]
    assert simulation_states(9, 3) == [2, 4, 6]
    assert simulation_states(3, 3) == [1, 2]  # T < M + 1: fewer states
    assert simulation_states(1, 3) == []


def test_the_specs_figure_fail_success_fail_success():
    expert = _expert()
    sims = _simulations(expert, [False, True, False, True])
    analysis = analyse(expert, sims, M)
    assert analysis.positions == (0, 2, 4, 6)
    assert analysis.labels == (BENEFICIAL, HARMFUL, BENEFICIAL)
    assert analysis.recovery == (4,)
    chosen = select(eef_solutions(analysis, sims, iteration=1))
    assert set(chosen) == {"shop_1@s0", "expert/shop_1@4"}
    s0 = chosen["shop_1@s0"]  # expert segment A_0 (beneficial) then the agent from s_2: 2 + 3 actions
    assert s0.actions == 5 and s0.kind == "expert+self"
    assert [t.trainable for t in s0.trajectory.turns] == [True, True, True, True, True]
    recovery = chosen["expert/shop_1@4"]  # from s_4: A_2 (beneficial) then the agent from s_6
    assert [t.trainable for t in recovery.trajectory.turns] == [False] * 4 + [True] * 2 + [True] * 3
    assert [t.action for t in recovery.trajectory.turns][:6] == [f"e{i}" for i in range(6)]


def test_all_fail_gives_nothing_to_train():
    expert = _expert()
    analysis = analyse(expert, _simulations(expert, [False] * 4), M)
    assert analysis.labels == (NEUTRAL,) * 3 and analysis.recovery == ()
    assert eef_solutions(analysis, _simulations(expert, [False] * 4), 1) == []


def test_all_succeed_keeps_the_agents_own_success_from_s0():
    expert = _expert()
    sims = _simulations(expert, [True] * 4)
    analysis = analyse(expert, sims, M)
    assert analysis.labels == (NEUTRAL,) * 3 and analysis.recovery == ()
    chosen = select(eef_solutions(analysis, sims, 1))
    assert list(chosen) == ["shop_1@s0"] and chosen["shop_1@s0"].kind == "self"
    assert all(t.trainable for t in chosen["shop_1@s0"].trajectory.turns)


def test_a_success_followed_by_failures_makes_a_recovery_state_without_solution():
    expert = _expert()
    sims = _simulations(expert, [True, False, False, False])
    analysis = analyse(expert, sims, M)
    assert analysis.labels == (HARMFUL, NEUTRAL, NEUTRAL) and analysis.recovery == (2,)
    chosen = select(eef_solutions(analysis, sims, 1))
    assert list(chosen) == ["shop_1@s0"]  # nothing succeeds after s_2


def test_neutral_segments_train_only_when_asked():
    expert = _expert()
    sims = _simulations(expert, [False, False, True, True])  # A_0 neutral, A_1 beneficial
    analysis = analyse(expert, sims, M)
    masked = select(eef_solutions(analysis, sims, 1))["shop_1@s0"]
    trained = select(eef_solutions(analysis, sims, 1, neutral="train"))["shop_1@s0"]
    assert [t.trainable for t in masked.trajectory.turns] == [False, False, True, True, True, True, True]
    assert all(t.trainable for t in trained.trajectory.turns)


def test_a_short_trajectory_simulates_from_fewer_states():
    expert = _expert(n=3)
    sims = _simulations(expert, [False, True, True])
    analysis = analyse(expert, sims, M)
    assert analysis.positions == (0, 1, 2) and analysis.labels == (BENEFICIAL, NEUTRAL)
    with pytest.raises(ValueError, match="simulations for"):
        analyse(expert, sims[:2], M)


def test_an_expert_whose_replay_diverged_is_skipped_and_never_trained_on():
    good, bad = _expert(task="shop_1"), _expert(task="shop_2")
    from_s0 = {"shop_1": _simulations(good, [False])[0], "shop_2": _simulations(bad, [False])[0]}
    simulations = {(good.id, p): s for p, s in zip([2, 4, 6], _simulations(good, [False, True, True, True])[1:])}
    simulations.update({(bad.id, p): s for p, s in zip([2, 6], _simulations(bad, [False, True, True, True])[1::2])})
    analysed, skipped = analyse_all([good, bad], simulations, from_s0, M)
    assert skipped == [bad.id] and [a.expert_id for a, _ in analysed] == [good.id]


def test_selection_prefers_fewest_actions_then_the_newest_iteration():
    long_self = self_solutions([_trajectory("r1", "shop_1", ["x"] * 6, True)], iteration=1)
    short_self = self_solutions([_trajectory("r2", "shop_1", ["x"] * 4, True)], iteration=2)
    tie_old = self_solutions([_trajectory("r3", "shop_1", ["y"] * 4, True)], iteration=1)
    chosen = select(long_self + tie_old + short_self)["shop_1@s0"]
    assert chosen.actions == 4 and chosen.iteration == 2
    newest = select(
        long_self + short_self + self_solutions([_trajectory("r4", "shop_1", ["z"] * 7, True)], 3), rule="newest"
    )["shop_1@s0"]
    assert newest.iteration == 3
    assert select([], "fewest") == {}
    with pytest.raises(ValueError, match="unknown selection rule"):
        select(long_self, rule="best")


def test_the_repository_accumulates_one_solution_per_state_over_iterations():
    repository = PositiveRepository()
    assert (
        repository.add(
            self_solutions(
                [_trajectory("a", "shop_1", ["x"] * 5, True), _trajectory("b", "shop_2", ["x"] * 3, False)], 1
            )
        )
        == 1
    )
    assert repository.add(self_solutions([_trajectory("c", "shop_1", ["x"] * 6, True)], 2)) == 0  # longer: kept old
    assert repository.add(self_solutions([_trajectory("d", "shop_1", ["x"] * 3, True)], 3)) == 1
    (only,) = repository.trajectories()
    assert only.task_id == "shop_1" and len(only.turns) == 3
    assert len({t.id for t in repository.trajectories()}) == len(repository.trajectories())


def test_sft_pos_clones_only_successful_expert_trajectories():
    win = _trajectory("w", "shop_1", ["a", "b"], True, source="gpt-4")
    lose = _trajectory("l", "shop_2", ["a"], False, source="gpt-4")
    assert [t.id for t in expert_demonstrations([win, lose])] == ["w"]
