from eef.envs import replay

ACTIONS = ["search[cotton shirt]", "click[next >]", "click[< prev]", "click[back to search]"]


def _record(env, task_id):
    env.reset(task_id)
    return [env.step(a).observation for a in ACTIONS]


def test_replay_reproduces_recorded_observations(shop_env):
    recorded = _record(shop_env, "shop_3")
    result = replay(shop_env, "shop_3", ACTIONS, recorded)
    assert result.ok and result.steps == 4 and result.observation == recorded[-1]


def test_replay_reports_the_first_divergence(shop_env):
    recorded = _record(shop_env, "shop_3")
    recorded[1] = "a page that never was"
    result = replay(shop_env, "shop_3", ACTIONS, recorded)
    assert not result.ok
    assert result.divergence.step == 1
    assert result.divergence.expected == "a page that never was"
    assert result.divergence.seen.startswith("Instruction:")
    assert result.steps == 2  # stopped at the divergence


def test_replay_of_another_task_diverges_at_once(shop_env):
    recorded = _record(shop_env, "shop_3")
    assert replay(shop_env, "shop_4", ACTIONS, recorded).divergence.step == 0


def test_snapshot_and_replay_give_identical_states(shop_env):
    shop_env.reset("shop_7")
    for action in ACTIONS[:2]:
        shop_env.step(action)
    snap = shop_env.snapshot()
    via_snapshot = [shop_env.step(a).observation for a in ["click[< prev]", "search[wool hat]"]]
    shop_env.restore(snap)
    via_restore = [shop_env.step(a).observation for a in ["click[< prev]", "search[wool hat]"]]
    replay(shop_env, "shop_7", ACTIONS[:2])
    via_replay = [shop_env.step(a).observation for a in ["click[< prev]", "search[wool hat]"]]
    assert via_snapshot == via_restore == via_replay
