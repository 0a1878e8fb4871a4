"""WebShop's purchase reward, with its known quirks kept in the default ``faithful`` mode.

R = r_type * (attribute matches + option matches + r_price) / (#goal attributes + #goal options + 1)

Quirks kept in ``faithful`` mode (all documented in docs/shop.md):

* Synthetic goals pass their options as (name, value) pairs. Colour normalisation then tests
  whether a colour word *equals* an element of the pair, and the fuzzy matcher reads the pair
  as ``"name value"``, while the bought options are normalised by substring. A correct value
  with a colour word inside a token (``rectangular`` -> ``tan``) can never match: 458 of the
  6,910 synthetic goals of the 1k set cannot reach 1.0.
* Colour normalisation maps any string containing a colour word to the first such word in
  alphabetical order, so ``light blue`` and ``navy blue`` match each other as ``blue``.
* One bought option may match several goal options.
* The type factor is 0 when the bought title shares no noun with the goal title, even when the
  scrape query matches.

``fixed`` mode matches option values only (no pairs), which makes every goal reachable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from thefuzz import fuzz

from eef.envs.shop.catalog import NO_PRICE_LIMIT, Goal, Product

REWARD_MODES = ("faithful", "fixed")

# WebShop's colour and pattern words, in its (alphabetical) order: the first contained one wins.
COLOR_WORDS = [
    "alabaster",
    "apricot",
    "aqua",
    "ash",
    "asphalt",
    "azure",
    "banana",
    "beige",
    "black",
    "blue",
    "blush",
    "bordeaux",
    "bronze",
    "brown",
    "burgundy",
    "camel",
    "camo",
    "caramel",
    "champagne",
    "charcoal",
    "cheetah",
    "chestnut",
    "chocolate",
    "christmas",
    "coffee",
    "cognac",
    "copper",
    "coral",
    "cranberry",
    "cream",
    "crystal",
    "dark",
    "denim",
    "eggplant",
    "elephant",
    "espresso",
    "fuchsia",
    "gold",
    "granite",
    "grape",
    "graphite",
    "grass",
    "gray",
    "green",
    "grey",
    "heather",
    "indigo",
    "ivory",
    "ivy",
    "khaki",
    "lavender",
    "lemon",
    "leopard",
    "light",
    "lilac",
    "lime",
    "magenta",
    "maroon",
    "mauve",
    "merlot",
    "midnight",
    "mint",
    "mocha",
    "multicolor",
    "mushroom",
    "mustard",
    "natural",
    "navy",
    "nude",
    "olive",
    "orange",
    "peach",
    "pewter",
    "pink",
    "plum",
    "purple",
    "rainbow",
    "red",
    "rose",
    "royal",
    "rust",
    "sand",
    "sapphire",
    "seashell",
    "silver",
    "skull",
    "slate",
    "steel",
    "stone",
    "stonewash",
    "sunflower",
    "tan",
    "taupe",
    "teal",
    "tiger",
    "turquoise",
    "violet",
    "walnut",
    "wheat",
    "white",
    "wine",
    "yellow",
]
FUZZY_THRESHOLD = 85


@dataclass(frozen=True)
class RewardDetails:
    """The parts of one purchase reward (for debugging and reports)."""

    reward: float
    r_type: float
    attribute_matches: int
    option_matches: int
    price_ok: bool


def normalize_color(option: str | tuple[str, ...]) -> str | tuple[str, ...]:
    """First colour word contained in ``option``; for a pair, a colour word equal to an element."""
    for color in COLOR_WORDS:
        if color in option:
            return color
    return option


def _as_text(option: str | tuple[str, ...]) -> str:
    return option if isinstance(option, str) else " ".join(option)


def count_option_matches(bought: Sequence[str], goal: Sequence[str | tuple[str, str]]) -> int:
    """Goal options (strings or pairs) matched by some bought option value."""
    bought_norm = [_as_text(normalize_color(o)) for o in bought]
    matches = 0
    for goal_option in goal:
        wanted = _as_text(normalize_color(goal_option))
        if any(fuzz.token_set_ratio(b, wanted) > FUZZY_THRESHOLD for b in bought_norm):
            matches += 1
    return matches


def count_attribute_matches(product: Product, attributes: Sequence[str]) -> int:
    """Goal attributes found in the product's attributes (fuzzy) or, failing that, in its text."""
    text_fields = (product.title.lower(), " ".join(product.bullets).lower(), product.description.lower())
    matches = 0
    for attribute in attributes:
        if any(fuzz.token_set_ratio(a, attribute) > FUZZY_THRESHOLD for a in product.attributes) or any(
            attribute in text for text in text_fields
        ):
            matches += 1
    return matches


def type_factor(bought: Product, target: Product, bought_nouns: Sequence[str], target_nouns: Sequence[str]) -> float:
    """WebShop's r_type: 1, 0.5, 0.1 or 0 by query, category and shared title nouns."""
    query_match = bought.query == target.query
    bought_levels = {x.strip() for x in bought.product_category.split("›")}
    target_levels = {x.strip() for x in target.product_category.split("›")}
    category_match = len(bought_levels & target_levels) >= 2
    if target_nouns:
        title_score = len(set(bought_nouns) & set(target_nouns)) / len(target_nouns)
    else:
        title_score = 0.2
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type


def purchase_reward(
    goal: Goal,
    bought: Product,
    target: Product,
    chosen_options: dict[str, str],
    mode: str = "faithful",
) -> RewardDetails:
    """Reward for buying ``bought`` with ``chosen_options`` when ``goal`` (made from ``target``) was asked."""
    if mode not in REWARD_MODES:
        raise ValueError(f"unknown reward mode {mode!r}; known: {', '.join(REWARD_MODES)}")
    r_type = type_factor(bought, target, bought.title_nouns or (), target.title_nouns or ())
    price_ok = goal.price_upper >= NO_PRICE_LIMIT or bought.price <= goal.price_upper
    n_attr = count_attribute_matches(bought, goal.attributes)
    goal_options = goal.options if mode == "faithful" else goal.option_values()
    n_opt = count_option_matches(list(chosen_options.values()), goal_options)
    total = (n_attr + n_opt + float(price_ok)) / (len(goal.attributes) + len(goal.options) + 1)
    return RewardDetails(total * r_type, r_type, n_attr, n_opt, price_ok)
