"""Products, goals and splits: the data a shop environment serves, whatever its source."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eef.envs.shop.search import SearchIndex
from eef.errors import UnknownNameError

# WebShop draws price thresholds from these multiples of 10 (10 .. 990).
PRICE_STEPS = [10.0 * i for i in range(1, 100)]
NO_PRICE_LIMIT = 1_000_000.0


@dataclass(frozen=True)
class Product:
    """One product as the shop shows it and the reward reads it.

    Attributes:
        asin: product id, shown uppercase on results pages, clicked lowercase.
        title: product name.
        price_text: the displayed price (``$12.5`` or ``$10.0 to $15.99``).
        price: the price the reward compares with a goal's limit (a range is drawn once at load).
        options: option group name -> values, in display order.
        description: the Description page text (may be empty).
        bullets: the Features page, one segment per bullet point.
        attributes: attribute phrases the reward matches goal attributes against.
        query: the scrape query (the type reward compares it).
        product_category: breadcrumb levels joined by `` › ``.
        category: coarse category.
        search_text: the lowercased text the search index holds.
        title_nouns: noun tokens of the title for the type reward, or None to tag at load.
    """

    asin: str
    title: str
    price_text: str
    price: float
    options: dict[str, list[str]]
    description: str
    bullets: list[str]
    attributes: list[str]
    query: str
    product_category: str
    category: str
    search_text: str
    title_nouns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Goal:
    """One shopping task.

    Attributes:
        asin: the product the goal was made from (any product meeting it scores 1.0).
        instruction: the instruction text the agent reads.
        attributes: goal attribute phrases.
        options: synthetic goals: (name, value) pairs; human goals: values only.
        price_upper: the price limit (``NO_PRICE_LIMIT`` when the text names none).
        weight: WebShop's sampling weight (mean inverse frequency of the attributes).
        tier: difficulty tier of a generated goal, None for WebShop data.
    """

    asin: str
    instruction: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...] | tuple[str, ...]
    price_upper: float
    weight: float = 1.0
    tier: str | None = None

    @property
    def options_are_pairs(self) -> bool:
        """Synthetic goals carry (name, value) pairs; human goals carry bare values."""
        return bool(self.options) and isinstance(self.options[0], tuple)

    def option_values(self) -> list[str]:
        """The goal's option values, without names."""
        return [o[1] if isinstance(o, tuple) else o for o in self.options]


class Catalog:
    """Products and goals with their splits, ready for :class:`eef.envs.shop.engine.ShopEnv`.

    ``splits`` maps a split name to goal indices; task ids are ``f"{prefix}_{index}"``.
    ``info`` records how the catalog was made (source, seed, goal kind, tagger) for run records.
    ``products`` may be a list or a lazy sequence over prepared files; ``by_asin`` and the search
    ``index`` are built from the products unless given (a prepared catalog gives both).
    """

    def __init__(
        self,
        products: Sequence[Product],
        goals: list[Goal],
        splits: dict[str, list[int]],
        prefix: str,
        info: dict[str, object] | None = None,
        *,
        by_asin: Mapping[str, Product] | None = None,
        index: SearchIndex | None = None,
    ) -> None:
        self.products, self.goals, self.splits, self.prefix = products, goals, splits, prefix
        self.info: dict[str, object] = info if info is not None else {}
        self.by_asin: Mapping[str, Product] = by_asin if by_asin is not None else {p.asin: p for p in products}
        self.index = index if index is not None else SearchIndex.of(p.search_text for p in products)

    def task_id(self, goal_index: int) -> str:
        return f"{self.prefix}_{goal_index}"

    def goal_index(self, task_id: str) -> int:
        head, _, tail = task_id.rpartition("_")
        if head != self.prefix or not re.fullmatch(r"0|[1-9][0-9]*", tail) or int(tail) >= len(self.goals):
            raise UnknownNameError("task id", task_id, [f"{self.prefix}_0 .. {self.prefix}_{len(self.goals) - 1}"])
        return int(tail)

    def task_ids(self, split: str) -> list[str]:
        if split not in self.splits:
            raise UnknownNameError("split", split, sorted(self.splits))
        return [self.task_id(i) for i in self.splits[split]]


def price_limit(price: float, rng: random.Random) -> float:
    """WebShop's goal price limit for a product priced ``price``.

    Two of the first four multiples of 10 above the price are drawn and the larger is the
    limit; a product at 980 or more gets no limit.
    """
    above = [p for p in PRICE_STEPS if p > price][:4]
    if len(above) < 2:
        return NO_PRICE_LIMIT
    return max(rng.sample(above, 2))


def price_clause(limit: float) -> str:
    """The instruction suffix that states a price limit (empty when there is none)."""
    return "" if limit >= NO_PRICE_LIMIT else f", and price lower than {limit:.2f} dollars"


def split_by_position(n_goals: int, sizes: Sequence[tuple[str, int]], rest: str) -> dict[str, list[int]]:
    """Consecutive splits of the goal list: e.g. test = [0:500], dev = [500:1500], train = rest."""
    splits: dict[str, list[int]] = {}
    start = 0
    for name, size in sizes:
        splits[name] = list(range(start, min(start + size, n_goals)))
        start += size
    splits[rest] = list(range(min(start, n_goals), n_goals))
    return splits
