"""``check_env``: does an environment keep the protocol? Run it on your own environment too."""

from __future__ import annotations

from eef.envs.protocol import StepResult, TextEnv
from eef.envs.replay import replay

NOT_AN_ACTION = "this is not an action ]["


def check_env(env: TextEnv, actions: list[str] | None = None) -> None:
    """Raise AssertionError naming the first broken rule of the protocol.

    Args:
        env: the environment to check.
        actions: a few actions for the first task of the first split (default: the first
            available action at each step, for ``env.max_steps`` steps).
    """
    assert isinstance(env, TextEnv), "the environment misses methods of eef.envs.TextEnv"
    assert isinstance(env.max_steps, int) and env.max_steps > 0, "max_steps must be a positive int"
    splits = env.splits()
    assert splits, "an environment needs at least one split"
    for split in splits:
        ids = env.task_ids(split)
        assert all(isinstance(t, str) for t in ids), f"task ids of {split!r} must be strings"
        assert len(set(ids)) == len(ids), f"task ids of {split!r} repeat"
    task_id = next(t for s in splits for t in env.task_ids(s))

    first = env.reset(task_id)
    assert isinstance(first, str) and first, "reset must return the first observation"
    assert isinstance(env.instruction(), str)
    bad = env.step(NOT_AN_ACTION)
    assert isinstance(bad, StepResult), "step must return a StepResult"
    assert bad.info.get("valid") is False, "an invalid action must be answered with info['valid'] False"

    observations, taken = [bad.observation], [NOT_AN_ACTION]
    plan = list(actions or [])
    result = bad
    while not result.done and len(taken) < env.max_steps:
        action = plan.pop(0) if plan else env.available_actions()[0]
        result = env.step(action)
        taken.append(action)
        observations.append(result.observation)
    assert result.done or len(taken) < env.max_steps or result.truncated, "max_steps must truncate"

    replayed = replay(env, task_id, taken, observations)
    assert replayed.ok, f"replaying the same actions diverged: {replayed.divergence}"
    assert replayed.last == result, "replay must end in the same step result"

    if env.supports_snapshot:
        env.reset(task_id)
        env.step(taken[1] if len(taken) > 1 else NOT_AN_ACTION)
        snap = env.snapshot()
        after = [env.step(a).observation for a in taken[2:3]]
        env.restore(snap)
        again = [env.step(a).observation for a in taken[2:3]]
        assert after == again, "restore must return to the snapshot's state"
