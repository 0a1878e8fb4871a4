"""``webshop``'s ``price_limits`` option: listed goals take the recorded limit (instruction and
reward alike), in memory and prepared; bad files are named with the task id."""

import json

import pytest

from eef.envs import make
from eef.envs.shop.catalog import NO_PRICE_LIMIT
from eef.envs.shop.prepared import prepare_webshop
from eef.errors import DataError, EefError


def _limits(tmp_path, limits, name="limits.json"):
    path = tmp_path / name
    path.write_text(json.dumps(limits))
    return str(path)


def _oracle_reward(env, task_id):
    env.reset(task_id)
    while True:
        result = env.step(env.oracle_action())
        if result.done:
            return result.reward


def test_listed_goals_take_the_recorded_limit_in_text_and_reward(webshop_1k_dir, webshop_env, tmp_path):
    first, second, third = webshop_env.task_ids("test")[:3]
    base = {t: webshop_env.catalog.goals[webshop_env.catalog.goal_index(t)] for t in (first, second, third)}
    target_price = webshop_env.catalog.by_asin[base[first].asin].price
    assert _oracle_reward(webshop_env, first) == 1.0 and base[first].price_upper > target_price
    below = 10.0 * (int(target_price) // 10) or 0.5  # under the target's price: the price check fails
    file = _limits(tmp_path, {first: below, second: None})
    env = make("webshop", data_dir=str(webshop_1k_dir), price_limits=file)

    goal = env.catalog.goals[env.catalog.goal_index(first)]
    assert goal.price_upper == below
    assert goal.instruction.endswith(f", and price lower than {below:.2f} dollars")
    assert (
        goal.instruction.rsplit(", and price lower than", 1)[0]
        == base[first].instruction.rsplit(", and price lower than", 1)[0]
    )
    assert f"[SEP] {goal.instruction} [SEP]" in env.reset(first)  # the page shows it
    assert _oracle_reward(env, first) < 1.0  # the reward's price check follows the file

    no_limit = env.catalog.goals[env.catalog.goal_index(second)]
    assert no_limit.price_upper == NO_PRICE_LIMIT and "price lower than" not in no_limit.instruction
    assert env.catalog.goals[env.catalog.goal_index(third)] == base[third]  # unlisted: the seeded draw
    assert env.info["price_limits"] == {"files": [file], "tasks": 2, "changed": 2, "conflicts": 0}


def test_the_prepared_path_takes_the_same_limits(webshop_1k_dir, tmp_path):
    tasks = make("webshop", data_dir=str(webshop_1k_dir)).task_ids("train")[:5]
    file = _limits(tmp_path, {t: 100.0 + 10 * i for i, t in enumerate(tasks)})
    prepared = prepare_webshop(webshop_1k_dir, tmp_path / "prepared", progress=False)
    fast = make("webshop", data_dir=str(webshop_1k_dir), prepared=True, prepared_dir=str(prepared), price_limits=file)
    memory = make("webshop", data_dir=str(webshop_1k_dir), prepared=False, price_limits=file)
    assert fast.catalog.goals == memory.catalog.goals
    assert [fast.catalog.goals[fast.catalog.goal_index(t)].price_upper for t in tasks] == [
        100.0,
        110.0,
        120.0,
        130.0,
        140.0,
    ]


def test_several_files_keep_the_first_limit_and_count_conflicts(webshop_1k_dir, webshop_env, tmp_path):
    a, b = webshop_env.task_ids("test")[:2]
    first = _limits(tmp_path, {a: 50.0, b: 60.0}, "first.json")
    second = _limits(tmp_path, {a: 70.0, b: 60.0}, "second.json")
    env = make("webshop", data_dir=str(webshop_1k_dir), price_limits=[first, second])
    assert env.catalog.goals[env.catalog.goal_index(a)].price_upper == 50.0
    assert env.info["price_limits"]["conflicts"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"webshop_0": "40"}', r"limits.json: field 'webshop_0': expected a positive number or null, got '40'"),
        ('{"webshop_0": -5}', r"limits.json: field 'webshop_0': expected a positive number or null, got -5"),
        ('{"webshop_0": true}', r"limits.json: field 'webshop_0': expected a positive number or null, got True"),
        ('{"webshop_999999": 40}', r"limits.json: field 'webshop_999999': no such task in this environment"),
        ('{"shop_1": 40}', r"limits.json: field 'shop_1': no such task in this environment \(webshop_0 \.\. "),
        ('[["webshop_0", 40]]', r"limits.json: expected a JSON object \{task id: price limit\}, got list"),
        ('{"webshop_0": 4', r"limits.json:1: invalid JSON"),
    ],
)
def test_bad_files_are_named_with_the_task(webshop_1k_dir, tmp_path, content, message):
    path = tmp_path / "limits.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        make("webshop", data_dir=str(webshop_1k_dir), price_limits=str(path))


def test_a_missing_file_or_a_bad_option_is_named(webshop_1k_dir, tmp_path):
    with pytest.raises(DataError, match=r"nowhere.json: missing \(option price_limits"):
        make("webshop", data_dir=str(webshop_1k_dir), price_limits=str(tmp_path / "nowhere.json"))
    with pytest.raises(EefError, match=r"option price_limits: expected a string or a list or null, got 3"):
        make("webshop", data_dir=str(webshop_1k_dir), price_limits=3)
