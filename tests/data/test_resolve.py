import pytest

from eef.data.resolve import (
    TaskHints,
    TaskResolver,
    instruction_in,
    parse_eto_scienceworld_id,
    scienceworld_task_id,
    scienceworld_task_name,
    without_price,
)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("task-1-boil", "boil"),
        ("task-2a-test-conductivity-of-unknown-substances", "test-conductivity-of-unknown-substances"),
        ("task-5-chemistry-mix-paint-(secondary-color)", "chemistry-mix-paint-secondary-color"),
        ("task-9-mendellian-genetics-(unknown-plant)", "mendelian-genetics-unknown-plant"),
        ("use-thermometer", "use-thermometer"),
        (6, "use-thermometer"),
        (29, "mendelian-genetics-unknown-plant"),
        (5, None),
        ("task-99-juggling", None),
    ],
)
def test_scienceworld_names_in_every_spelling(name, expected):
    assert scienceworld_task_name(name) == expected


def test_scienceworld_ids():
    assert scienceworld_task_id(0, 12) == "boil/12"
    assert scienceworld_task_id("task-10-use-thermometer", 3) == "use-thermometer/3"
    assert parse_eto_scienceworld_id("18_7") == (18, 7)
    assert parse_eto_scienceworld_id("1500") is None


def test_instruction_and_price_clause():
    page = "WebShop [SEP] Instruction: [SEP] Find me a Red  Scarf, and price lower than 40.00 dollars [SEP] Search"
    assert instruction_in(page) == "find me a red scarf, and price lower than 40.00 dollars"
    assert without_price(instruction_in(page)) == "find me a red scarf"
    assert instruction_in("You are in the kitchen.") is None


@pytest.fixture(scope="module")
def resolver(shop_env):
    return TaskResolver(shop_env)


def _page(env, task_id):
    return env.reset(task_id)


def test_session_index_resolves_when_the_instruction_agrees(resolver, shop_env):
    task = shop_env.task_ids("train")[3]
    index = int(task.split("_")[1])
    assert resolver.resolve(TaskHints(session=index), _page(shop_env, task)).task_id == task
    assert resolver.resolve(TaskHints(session=index), "no page").how == "session"


def test_session_index_resolves_when_only_the_price_differs(resolver, shop_env):
    task = shop_env.task_ids("train")[4]
    page = _page(shop_env, task).replace("price lower than ", "price lower than 1")
    assert page != _page(shop_env, task)
    resolution = resolver.resolve(TaskHints(session=int(task.split("_")[1])), page)
    assert (resolution.task_id, resolution.how) == (task, "session")


def test_instruction_wins_over_a_session_index_that_disagrees(resolver, shop_env):
    task, other = shop_env.task_ids("dev")[:2]
    resolution = resolver.resolve(TaskHints(session=int(other.split("_")[1])), _page(shop_env, task))
    assert (resolution.task_id, resolution.how) == (task, "instruction")


def test_instruction_without_price(resolver, shop_env):
    task = shop_env.task_ids("test")[5]
    page = _page(shop_env, task).replace("price lower than ", "price lower than 1")
    resolution = resolver.resolve(TaskHints(), page)
    assert resolution.task_id is not None and resolution.how.startswith("instruction without price")
    shop_env.reset(resolution.task_id)
    assert without_price(shop_env.instruction().lower()) == without_price(instruction_in(page))


@pytest.mark.parametrize(
    "hints, page, reason",
    [
        (TaskHints(env="alfworld"), "x", "environment 'alfworld'"),
        (TaskHints(task_id="shop_99999"), "x", "no task 'shop_99999'"),
        (TaskHints(session=99999), "no page", "no task 'shop_99999'"),
        (
            TaskHints(),
            "WebShop [SEP] Instruction: [SEP] buy a unicorn [SEP] Search",
            "no shop task has the instruction",
        ),
        (TaskHints(), "nothing", "no session index and no instruction"),
        (TaskHints(scienceworld=("boil", 3)), "x", "no task 'boil/3'"),
        (TaskHints(unresolvable="because"), "x", "because"),
    ],
)
def test_unresolved_records_say_why(resolver, hints, page, reason):
    resolution = resolver.resolve(hints, page)
    assert resolution.task_id is None and reason in resolution.reason
