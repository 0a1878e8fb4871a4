"""Pages, actions and transitions of the shop engine on a hand-built catalog."""

import pytest

from eef.envs.shop.catalog import Catalog, Goal, Product
from eef.envs.shop.engine import ShopEnv, parse_action
from eef.envs.shop.webshop_data import indexed_text


def _product(n: int, title: str, options: dict, price: float = 20.0) -> Product:
    return Product(
        asin=f"B{n:04d}",
        title=title,
        price_text=f"${price}",
        price=price,
        options=options,
        description=f"about {title}",
        bullets=["first bullet", "  ", "second"],
        attributes=["soft"],
        query="shirt",
        product_category="a › b › c",
        category="c",
        search_text=indexed_text(title, "", [], options),
        title_nouns=("shirt",),
    )


@pytest.fixture
def env() -> ShopEnv:
    products = [_product(i, f"red shirt number{i}", {}) for i in range(23)]
    # "blue" appears in two groups: WebShop assigns the click to the later group.
    products.append(_product(23, "red shirt special", {"color": ["blue", "green"], "trim": ["blue", "gold"]}, 15.0))
    goals = [Goal("B0023", "i want a red shirt special with color: green", ("soft",), (("color", "green"),), 30.0)]
    return ShopEnv(Catalog(products, goals, {"test": [0]}, prefix="t"), max_steps=12)


def test_start_page(env):
    assert (
        env.reset("t_0") == "WebShop [SEP] Instruction: [SEP] i want a red shirt special with color: green [SEP] Search"
    )
    assert env.available_actions() == ["search[<keywords>]"]


def test_results_pages_hold_ten_hits_and_page_buttons(env):
    env.reset("t_0")
    page1 = env.step("search[Red Shirt]").observation.split(" [SEP] ")
    assert page1[2:5] == ["Back to Search", "Page 1 (Total results: 24)", "Next >"]
    assert len(page1[5:]) == 30  # ten hits: ASIN, title, price
    page2 = env.step("click[Next >]").observation.split(" [SEP] ")
    assert page2[3:6] == ["Page 2 (Total results: 24)", "< Prev", "Next >"]
    page3 = env.step("click[next >]").observation.split(" [SEP] ")
    assert len(page3[6:]) == 12
    empty = env.step("click[next >]").observation.split(" [SEP] ")  # Next > is shown past the end
    assert empty[3:] == ["Page 4 (Total results: 24)", "< Prev", "Next >"]
    assert env.step("click[< prev]").observation.split(" [SEP] ")[6:] == page3[6:]


def test_item_page_options_subpages_and_prev(env):
    env.reset("t_0")
    results = env.step("search[special]").observation
    assert "B0023" in results
    item = env.step("click[b0023]").observation
    assert item.endswith(
        "color [SEP] blue [SEP] green [SEP] trim [SEP] blue [SEP] gold [SEP] red shirt special "
        "[SEP] Price: $15.0 [SEP] Rating: N.A. [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now"
    )
    assert env.step("click[green]").observation == item  # text mode does not mark the choice
    assert env.step("click[features]").observation.endswith("< Prev [SEP] first bullet [SEP] second")
    assert env.step("click[< prev]").observation == item  # options kept
    assert env.step("click[< prev]").observation == results
    assert env.step("click[back to search]").observation.startswith("WebShop")


def test_repeated_option_value_belongs_to_the_later_group(env):
    env.reset("t_0")
    env.step("search[special]")
    env.step("click[b0023]")
    env.step("click[blue]")
    assert env._state.options == {"trim": "blue"}


def test_buying_ends_with_the_reward(env):
    env.reset("t_0")
    for action in ["search[special]", "click[b0023]", "click[green]"]:
        assert env.step(action).reward == 0.0
    bought = env.step("click[buy now]")
    assert bought.terminated and not bought.truncated and bought.reward == 1.0
    assert bought.observation == "Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] 1.0"
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("click[buy now]")


def test_wrong_option_lowers_the_reward(env):
    env.reset("t_0")
    for action in ["search[special]", "click[b0023]"]:
        env.step(action)
    assert env.step("click[buy now]").reward == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "action",
    [
        "click[buy now]",
        "click[nothing]",
        "search[]",
        "buy it",
        "",
        "click[search]x",
        "click[ b0023 ]",
        None,
        123,
        "search[ s ]",
    ],
)
def test_invalid_actions_keep_the_page(env, action):
    env.reset("t_0")
    before = env.step("search[special]").observation
    result = env.step(action)
    if action == "search[ s ]":  # valid, but "s" stems to nothing: no hits, no crash
        assert result.info["valid"] and "(Total results: 0)" in result.observation
        return
    assert result.observation == before and result.reward == 0 and not result.done
    assert result.info == {"valid": False}


def test_search_works_from_any_page(env):
    env.reset("t_0")
    env.step("search[special]")
    env.step("click[b0023]")
    assert "Page 1 (Total results" in env.step("search[number1]").observation


def test_max_steps_truncates(env):
    env.reset("t_0")
    results = [env.step("click[nothing]") for _ in range(12)]
    assert not any(r.done for r in results[:-1])
    assert results[-1].truncated and not results[-1].terminated and results[-1].reward == 0
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("search[shirt]")


def test_parse_action_lowercases_the_argument_and_ignores_trailing_text():
    assert parse_action("search[Red Shirt]") == ("search", "red shirt")
    assert parse_action("Search[red shirt]") is None  # the verb is case-sensitive, as in WebShop
    assert parse_action("click[a [b] c] thanks") is None  # split at the last "[": verb "click[a "
    assert parse_action("click[ buy now ]") == ("click", " buy now ")  # not stripped: no such button
    assert parse_action("think[hmm]") is None
