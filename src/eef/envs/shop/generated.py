"""The built-in catalog: a seeded shop small enough for a tiny model, hard where WebShop is hard.

Products are titled ``[variant] brand material kind`` (``nova cotton shirt``,
``junior zolo wool scarf``) from a small vocabulary, with colour and size options, attribute
bullets and a price. Goals read like WebShop's synthetic ones and fall into three tiers,
assigned by measuring the search engine itself, not by intent:

* ``easy``: the instruction names brand, material and kind (and a variant by its phrase:
  ``nova wool wallet for kids`` is ``junior nova wool wallet``); the instruction's words put the
  target on the first results page; at most one option.
* ``medium``: as easy, with two options to set and near-duplicate decoys (same brand
  and kind in another material, or same material and kind from another brand) on that page.
  Easy and medium goals are made only where the measurement agrees.
* ``hard``: the instruction names no brand, only material, kind and the variant's phrase, which
  no product text contains (``for kids`` for ``junior``; easy and medium goals on variant
  products teach it). The target is the only product of its variant, material and kind.
  Searching the instruction's words leaves the target on results page 2 or later behind
  near-duplicates, so the agent must page with ``Next >`` or refine the query with the variant
  word (``junior cotton shirt``); two options to set.

Every goal is reachable with reward 1.0 in ``faithful`` mode (no option value hides a colour
word inside a token), which the tests check by oracle episodes.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace

from eef.checks import FieldErrors, at_least, between, check_fields
from eef.envs.shop.catalog import Catalog, Goal, Product, price_clause, price_limit, split_by_position
from eef.envs.shop.search import SearchIndex
from eef.envs.shop.webshop_data import indexed_text

TIERS = ("easy", "medium", "hard")
BRANDS = ["acme", "zolo", "nova", "kiro", "vela", "orbi", "lumo", "tarn", "pico", "dune", "brio", "sola"]
MATERIALS = ["cotton", "wool", "leather", "canvas", "linen", "bamboo"]
KINDS = {  # kind -> category
    "shirt": "clothing",
    "scarf": "clothing",
    "jacket": "clothing",
    "hat": "clothing",
    "bag": "bags",
    "wallet": "bags",
    "backpack": "bags",
    "pillow": "home",
    "blanket": "home",
}
# Title word -> the instruction's phrase for it; the phrase never appears in product text.
VARIANTS = {
    "junior": "for kids",
    "sport": "for the gym",
    "outdoor": "for camping",
    "deluxe": "of premium quality",
    "classic": "in a vintage style",
    "travel": "for trips",
}
COLORS = ["red", "blue", "green", "black", "white", "grey", "pink", "yellow"]
SIZES = ["small", "medium", "large"]
ATTRIBUTES = (
    "machine washable",
    "water resistant",
    "eco friendly",
    "easy to clean",
    "long lasting",
    "lightweight",
    "hand made",
    "quick drying",
)
OPENERS = ("i need", "i am looking for", "find me", "i want")
Options = tuple[tuple[str, str], ...]  # (group, value) pairs a goal asks


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes and seed of the built-in catalog.

    Attributes:
        seed: everything below is drawn from it.
        groups: (material, kind) groups that get products.
        group_size: (min, max) products per group; large groups push hard targets off page 1.
        goals: goals to make.
        goals_per_target: goals made on each drawn target, differing in their options only (the
            same words before them, the same price limit) where the product has that many option
            sets: demonstrations of one goal with other values cannot be fitted by remembering them.
        tier_mix: share of easy, medium and hard goals.
        test, dev: sizes of the first two splits (in goal order); train is the rest.
    """

    seed: int = 0
    groups: int = 24
    group_size: tuple[int, int] = (4, 26)
    goals: int = 1000
    goals_per_target: int = 1
    tier_mix: tuple[float, float, float] = (0.4, 0.3, 0.3)
    test: int = 100
    dev: int = 100

    def __post_init__(self) -> None:
        check_fields(
            self,
            groups=between(1, len(MATERIALS) * len(KINDS)),
            goals=at_least(1),
            goals_per_target=at_least(1),
            test=at_least(0),
            dev=at_least(0),
        )
        if self.goals < self.test + self.dev:  # equal leaves no training task: a catalog only to evaluate on
            raise FieldErrors([("goals", f"must be at least test + dev ({self.test + self.dev}), got {self.goals}")])


def _make_products(cfg: GeneratorConfig, rng: random.Random) -> list[Product]:
    pairs = [(m, k) for m in MATERIALS for k in KINDS]
    rng.shuffle(pairs)
    products: list[Product] = []
    for material, kind in pairs[: cfg.groups]:
        size = rng.randint(*cfg.group_size)
        # Plain titles first, variants last: ties in BM25 go to the lower product number, so a
        # variant product sits behind its plain near-duplicates. Groups of six or more hold at
        # least two variant products.
        n_plain = min(size if size < 6 else size - 2, len(BRANDS))
        chosen: list[tuple[str | None, str]] = [(None, b) for b in rng.sample(BRANDS, n_plain)]
        chosen += rng.sample([(v, b) for v in VARIANTS for b in BRANDS], size - n_plain)
        for variant, brand in chosen:
            products.append(_make_product(len(products), variant, brand, material, kind, rng))
    return products


def _make_product(
    number: int, variant: str | None, brand: str, material: str, kind: str, rng: random.Random
) -> Product:
    title = " ".join(w for w in (variant, brand, material, kind) if w)
    options = {"color": sorted(rng.sample(COLORS, rng.randint(2, 4)), key=COLORS.index), "size": list(SIZES)}
    attributes = rng.sample(ATTRIBUTES, 2)
    price = round(rng.uniform(8, 120)) - 0.01
    bullets = [f"{material} {kind}", *attributes]
    description = f"a {material} {kind} by {brand}"
    category = KINDS[kind]
    return Product(
        asin=f"B{number:04d}",
        title=title,
        price_text=f"${price}",
        price=price,
        options=options,
        description=description,
        bullets=bullets,
        attributes=attributes,
        query=kind,
        product_category=f"shop › {category} › {kind}",
        category=category,
        search_text=indexed_text(title, description, bullets, options),
        title_nouns=(brand, kind),
    )


def title_parts(title: str) -> tuple[str | None, str, str, str]:
    """(variant or None, brand, material, kind) of a generated title."""
    *variant, brand, material, kind = title.split()
    return (variant[0] if variant else None), brand, material, kind


def described_thing(title: str, tier: str) -> str:
    """The product as an instruction of ``tier`` names it: a variant always by its phrase (so every
    tier teaches what the phrase means), the brand except on hard goals.

    >>> described_thing("junior nova wool wallet", "medium"), described_thing("junior nova wool wallet", "hard")
    ('nova wool wallet for kids', 'wool wallet for kids')
    """
    variant, brand, material, kind = title_parts(title)
    named = f"{material} {kind}" if tier == "hard" else f"{brand} {material} {kind}"
    return f"{named} {VARIANTS[variant]}" if variant else named


def _instruction(
    product: Product, tier: str, attribute: str, options: Options, limit: float, rng: random.Random
) -> str:
    thing = described_thing(product.title, tier)
    article = "an" if thing[0] in "aeiou" else "a"
    return _asking(f"{rng.choice(OPENERS)} {article} {thing} that is {attribute}", options, limit)


def _asking(described: str, options: Options, limit: float) -> str:
    """The instruction that asks ``described`` (its words up to the options) with ``options`` and ``limit``."""
    text = described + (" with " + ", and ".join(f"{n}: {v}" for n, v in options) if options else "")
    return text + price_clause(limit)


def naive_query(instruction: str) -> str:
    """What a literal reader searches: the instruction up to its options and price.

    >>> naive_query("I need a nova wool wallet for kids with color: red, and price lower than 40.00 dollars")
    'I need a nova wool wallet for kids'
    """
    return instruction.split(" with ", maxsplit=1)[0].split(", and price", maxsplit=1)[0]


def generate_catalog(cfg: GeneratorConfig = GeneratorConfig()) -> Catalog:
    """Build the catalog and its goals under ``cfg.seed`` (same config, same catalog)."""
    rng = random.Random(cfg.seed)
    products = _make_products(cfg, rng)
    index = SearchIndex.of(p.search_text for p in products)
    # How many products share each (variant, material, kind): a hard instruction names no brand,
    # so it may only describe a variant product that is the one of its kind.
    same_variant = Counter((v, m, k) for v, _, m, k in (title_parts(p.title) for p in products) if v)
    wanted = {tier: round(share * cfg.goals) for tier, share in zip(TIERS, cfg.tier_mix)}
    wanted["easy"] += cfg.goals - sum(wanted.values())
    goals: list[Goal] = []
    attempts = 0
    while len(goals) < cfg.goals:
        attempts += 1
        if attempts > 200 * cfg.goals:
            missing = {t: n for t, n in wanted.items() if n}
            raise ValueError(f"catalog too small for the tier mix: could not make {missing} goals; raise 'groups'")
        tier = rng.choice([t for t in TIERS if wanted[t]])
        product = rng.choice(products)
        goal = _try_goal(products, product, index, same_variant, tier, rng)
        if goal is None:
            continue
        goals.append(goal)
        wanted[tier] -= 1
        asked = {goal.options}
        # The target's other goals differ from the first in their options only, so nothing but the
        # instruction's option values tells their demonstrations apart: they cannot be memorised.
        for _ in range(4 * cfg.goals_per_target):
            if len(asked) in (cfg.goals_per_target, _option_sets(product, tier)) or not wanted[tier]:
                break
            options = _draw_options(product, tier, rng)
            if options not in asked:
                goals.append(_with_options(goal, options))
                asked.add(options)
                wanted[tier] -= 1
    rng.shuffle(goals)  # tiers are drawn at different rates; every split should mix them alike
    splits = split_by_position(len(goals), (("test", cfg.test), ("dev", cfg.dev)), "train")
    info = {
        "source": "generated",
        "seed": cfg.seed,
        "products": len(products),
        "goals": len(goals),
        "tiers": {t: sum(g.tier == t for g in goals) for t in TIERS},
    }
    return Catalog(products, goals, splits, prefix="shop", info=info, index=index)


def _option_sets(product: Product, tier: str) -> int:
    """How many different option sets a goal of ``tier`` can ask of ``product``."""
    colors, sizes = (len(values) for values in product.options.values())
    return 1 + colors if tier == "easy" else colors * sizes


def _draw_options(product: Product, tier: str, rng: random.Random) -> Options:
    """The options a goal of ``tier`` asks: colour and size, or on easy goals none or colour."""
    asked = rng.choice([0, 1]) if tier == "easy" else len(product.options)
    return tuple((name, rng.choice(product.options[name])) for name in list(product.options)[:asked])


def _with_options(goal: Goal, options: Options) -> Goal:
    """``goal`` asking ``options`` instead: the same words before them and the same price limit."""
    instruction = _asking(naive_query(goal.instruction), options, goal.price_upper)
    return replace(goal, instruction=instruction, options=options)


def _try_goal(
    products: list[Product], product: Product, index: SearchIndex, same_variant: Counter, tier: str, rng: random.Random
) -> Goal | None:
    """A goal of ``tier`` on ``product``, or None when the product cannot make one."""
    variant, _, material, kind = title_parts(product.title)
    if tier == "hard" and (variant is None or same_variant[variant, material, kind] != 1):
        return None
    options = _draw_options(product, tier, rng)
    attribute = rng.choice(product.attributes)
    limit = price_limit(product.price, rng)
    instruction = _instruction(product, tier, attribute, options, limit, rng)
    hits = index.search(naive_query(instruction))
    number = int(product.asin[1:])
    on_first_page = number in hits[:10]
    if tier == "hard":  # off page 1 but within the 50 hits, so paging can reach it
        reachable = number in hits and not on_first_page
        return Goal(product.asin, instruction, (attribute,), options, limit, tier=tier) if reachable else None
    if not on_first_page:
        return None
    if tier == "medium" and not any(_near_duplicate(products[i], product) for i in hits[:10] if i != number):
        return None
    return Goal(product.asin, instruction, (attribute,), options, limit, tier=tier)


def _near_duplicate(a: Product, b: Product) -> bool:
    """Same kind and same brand or material: a decoy that differs from the target in one word."""
    _, brand_a, material_a, kind_a = title_parts(a.title)
    _, brand_b, material_b, kind_b = title_parts(b.title)
    return kind_a == kind_b and (brand_a == brand_b or material_a == material_b)
