"""How often the choice of title-noun tagger changes WebShop's reward on the 1k set.

    python benchmarks/noun_tagger_effect.py [--data DIR] [--json]

For every synthetic goal, buys each of the top 10 search results of its instruction (no
options chosen) and computes the reward twice: with the shipped spaCy noun table and with the
lexical fallback tagger. Prints the share of purchases whose reward (and win) differs.
"""

from __future__ import annotations

import argparse

from _common import DEFAULT_WEBSHOP_DATA, print_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_WEBSHOP_DATA)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from dataclasses import replace

    from eef.envs.shop.nouns import heuristic_nouns
    from eef.envs.shop.reward import purchase_reward
    from eef.envs.shop.webshop_data import load_webshop

    catalog = load_webshop(args.data)
    heuristic = dict(zip((p.asin for p in catalog.products), heuristic_nouns([p.title for p in catalog.products])))
    index = catalog.index
    purchases = reward_changed = win_changed = target_bought = 0
    for goal in catalog.goals:
        target = catalog.by_asin[goal.asin]
        for number in index.search(goal.instruction, 10):
            bought = catalog.products[number]
            with_table = purchase_reward(goal, bought, target, {}).reward
            with_heuristic = purchase_reward(
                goal,
                replace(bought, title_nouns=heuristic[bought.asin]),
                replace(target, title_nouns=heuristic[target.asin]),
                {},
            ).reward
            purchases += 1
            target_bought += bought.asin == goal.asin
            reward_changed += abs(with_table - with_heuristic) > 1e-9
            win_changed += (with_table >= 1.0) != (with_heuristic >= 1.0)
    figures = {
        "purchases": purchases,
        "reward_changed": reward_changed,
        "reward_changed_share": round(reward_changed / purchases, 4),
        "win_changed": win_changed,
        "table_tagger": catalog.info["title_nouns"],
    }
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
