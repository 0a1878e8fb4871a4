from collections import defaultdict
from dataclasses import replace

from eef.envs.shop.engine import ShopEnv
from eef.envs.shop.generated import VARIANTS, GeneratorConfig, generate_catalog, naive_query
from eef.envs.verify import verify


def test_same_seed_same_catalog_other_seed_other_catalog():
    small = GeneratorConfig(goals=200, groups=16, test=50, dev=50)
    a, b = generate_catalog(small), generate_catalog(small)
    assert a.products == b.products and a.goals == b.goals
    c = generate_catalog(replace(small, seed=1))
    assert [g.instruction for g in c.goals] != [g.instruction for g in a.goals]


def test_tiers_hold_as_measured_on_the_search_engine(shop_env):
    catalog = shop_env.catalog
    assert catalog.info["tiers"] == {"easy": 400, "medium": 300, "hard": 300}
    for goal in catalog.goals:
        number = int(goal.asin[1:])
        first_page = shop_env.catalog.index.search(naive_query(goal.instruction))[:10]
        if goal.tier == "hard":
            assert number not in first_page, goal.instruction
            title = catalog.by_asin[goal.asin].title
            # refining the query with the title's variant word brings it to the top
            assert shop_env.catalog.index.search(title)[0] == number
            assert title.split()[0] not in goal.instruction
        else:
            assert number in first_page, goal.instruction
        assert len(goal.options) == (2 if goal.tier != "easy" else len(goal.options))
    hard_share = sum(g.tier == "hard" for g in catalog.goals[:100]) / 100
    assert 0.15 < hard_share < 0.45  # the test split mixes tiers


def test_every_tier_names_a_variant_by_its_phrase_and_hard_goals_describe_one_product(shop_env):
    catalog = shop_env.catalog
    titles = [p.title.split() for p in catalog.products]
    taught = set()  # variants of easy and medium training goals: where the phrases are learnt
    for task in shop_env.task_ids("train"):
        goal = catalog.goals[catalog.goal_index(task)]
        *variant, brand, material, kind = catalog.by_asin[goal.asin].title.split()
        variant = variant[0] if variant else None
        if variant:
            assert f"{material} {kind} {VARIANTS[variant]}" in goal.instruction
            if goal.tier != "hard":
                taught.add(variant)
        if goal.tier == "hard":
            assert brand not in goal.instruction.split()
            assert sum(t[0] == variant and t[-2:] == [material, kind] for t in titles) == 1
        else:
            assert f"{brand} {material} {kind}" in goal.instruction
    assert taught == set(VARIANTS)


def test_every_generated_goal_is_solvable_within_the_step_limit(shop_env):
    report = verify(shop_env, [shop_env.catalog.task_id(i) for i in range(len(shop_env.catalog.goals))])
    assert report.successes == report.episodes == 1000
    fixed = ShopEnv(shop_env.catalog, reward_mode="fixed")
    assert verify(fixed, shop_env.task_ids("test")).success_rate == 1.0


def test_vocabulary_stays_small(shop_env):
    words = set()
    for p in shop_env.catalog.products:
        words.update(p.search_text.replace(",", " ").replace(":", " ").split())
    for g in shop_env.catalog.goals:
        words.update(g.instruction.replace(",", " ").replace(":", " ").split())
    assert len(words) < 150


def test_the_compact_view_shows_the_same_pages_in_fewer_characters():
    from eef.envs import make
    from eef.envs.conformance import check_env
    from eef.envs.verify import verify

    webshop, compact = make("shop", goals=60, test=10, dev=10), make("shop", goals=60, test=10, dev=10, view="compact")
    check_env(compact)
    report = verify(compact, compact.task_ids("train"))
    assert report.success_rate == 1.0
    task = compact.task_ids("train")[0]
    for env in (webshop, compact):
        env.reset(task)
        env.step(env.oracle_action())
    assert compact.available_actions() == webshop.available_actions()
    results = compact.step("click[next >]").observation
    assert "Page 2" in results and "Instruction" not in results
    # each hit is one segment "title ASIN price": the id follows the title it belongs to
    for product in compact._page_hits():
        assert f"{product.title} {product.asin} {product.price_text}" in results.split(" [SEP] ")
    assert len(results) < 0.8 * len(webshop.step("click[next >]").observation)
    # item pages repeat the instruction, as WebShop's do: the options to copy are never far back
    item = compact.step(f"click[{compact._page_hits()[0].asin}]").observation
    assert item.startswith(f"Instruction: [SEP] {compact.goal.instruction} [SEP] ")


def test_a_targets_goals_differ_in_their_options_only_so_only_copying_them_fits_the_demonstrations():
    catalog = generate_catalog(GeneratorConfig(goals_per_target=4))
    asked = defaultdict(list)  # the words before the options and the price limit -> options asked
    for goal in catalog.goals:
        asked[goal.asin, goal.tier, naive_query(goal.instruction), goal.price_upper].append(goal.options)
    in_groups = sum(len(options) for options in asked.values() if len(set(options)) >= 3)
    assert in_groups > 0.9 * len(catalog.goals)
    assert catalog.info["tiers"] == {"easy": 400, "medium": 300, "hard": 300}
    single = generate_catalog(GeneratorConfig(goals_per_target=1))
    assert len({g.asin for g in single.goals}) > 1.5 * len({g.asin for g in catalog.goals})
