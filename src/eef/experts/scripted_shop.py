"""A scripted expert for the built-in shop that fails the way GPT-4 fails on WebShop.

A competent but fallible shopper that reads the hidden goal: it searches the instruction's key
words, opens the item it wants, sets the options and buys. Its mistakes come from a per-task
random stream (reproducible from ``(seed, task_id)``): a near-duplicate decoy, a wrong or skipped
option, not seeing that ``for kids`` means ``junior``, paging back and forth. On hard goals it
often takes the key action (``Next >``, or a search with the variant word) and then fails, so its
failures hold the navigation and recovery segments that EEF exploits.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

from eef.envs.protocol import TextEnv
from eef.envs.shop.catalog import Product
from eef.envs.shop.engine import ShopEnv
from eef.envs.shop.generated import TIERS, VARIANTS, described_thing, naive_query, title_parts
from eef.errors import EefError
from eef.experts.episode import play_episode
from eef.trajectory import Message, Provenance, Trajectory

MODEL = "scripted-shop-v1"
_ASIN = re.compile(r"\bB\d{4}\b")
KEY_CLICKS = ("click[Next >]", "click[< Prev]", "click[Back to Search]")


@dataclass(frozen=True)
class ScriptedExpertConfig:
    """Mistake rates of the scripted expert; per-tier rates are (easy, medium, hard).

    Attributes:
        decoy: when the target is on the results page, open the most plausible other item instead
            (on hard pages: the expert misses that the variant word matches the instruction).
        wrong_option: per option, choose another value of the option group. The hard rate makes
            the expert solve almost no hard goals, as GPT-4 solves few of WebShop's hardest:
            hard-goal navigation (paging, refined queries) is then only in its failures, which
            only EEF trains on (a few more hard successes already teach it to RFT too).
        skip_option: per option, leave it unset.
        naive_query: search the instruction's words first, as GPT-4 often does (else brand,
            material and kind; on hard goals material and kind with a wrong variant word). Easy
            and medium goals are made so that this query finds them on the first page.
        overlook: the target is on the first results page: miss it, click ``Next >`` and come back
            with ``< Prev`` (successes then hold paging too, as the failures of hard goals do).
        next_page: the target is not on the results page: click ``Next >``.
        refine: the target is not on the results page: search again with the variant word.
        prev_page: on a later results page without the target: click ``< Prev`` (dithering).
        notice_decoy: on a decoy's item page: notice and go back (``< Prev`` or ``Back to Search``).
        refine_after_back: after ``Back to Search``: search with the variant word (else repeat the
            first query).
    """

    decoy: tuple[float, float, float] = (0.25, 0.6, 0.75)
    wrong_option: tuple[float, float, float] = (0.2, 0.22, 0.7)
    skip_option: float = 0.04
    naive_query: tuple[float, float, float] = (0.0, 0.0, 0.7)
    overlook: tuple[float, float, float] = (0.0, 0.0, 0.0)
    next_page: float = 0.55
    refine: float = 0.2
    prev_page: float = 0.15
    notice_decoy: float = 0.3
    refine_after_back: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            per_tier = isinstance(f.default, tuple)  # the field's default says its shape
            if per_tier and (not isinstance(value, tuple) or len(value) != len(TIERS)):
                raise ValueError(f"{f.name}: expected one rate per tier ({', '.join(TIERS)}), got {value!r}")
            rates = value if per_tier else (value,)
            if not all(0.0 <= r <= 1.0 for r in rates):
                raise ValueError(f"{f.name}: rates must lie in [0, 1], got {value}")


class ScriptedShopper:
    """One episode's decisions: reads the page, the hidden goal and its own random stream."""

    def __init__(self, env: ShopEnv, config: ScriptedExpertConfig, rng: random.Random):
        self.env, self.config, self.rng = env, config, rng
        self.goal = env.goal
        self.tier = TIERS.index(self.goal.tier)
        self.target = env.catalog.by_asin[self.goal.asin]
        variant, self.brand, self.material, self.kind = title_parts(self.target.title)
        self.variant = variant or ""
        # The words the instruction gives away, and the thing as the expert would name it.
        self.wanted = set(self.target.title.split()) - ({self.brand} if self.goal.tier == "hard" else set())
        self.thing = described_thing(self.target.title, self.goal.tier)
        self.first_query: str | None = None
        self.knows_variant = False  # set once the expert has searched with the variant word
        self.visited: set[str] = set()
        self.overlooked = False  # the expert has missed the target on a first page (once per episode)
        self.returning = False  # ... and pages back to it next
        self.plan: list[tuple[str, str]] | None = None  # option clicks left on the current item page

    def act(self, observation: str) -> tuple[str, str]:
        """The next (thought, action) for the page ``observation`` shows."""
        page = self.env.page
        if page != "item":
            self.plan = None  # the expert left the item page: a later visit decides afresh
        if page == "results":
            return self._on_results(observation, self.env.page_number)
        if page == "item":
            return self._on_item(self.env.item)
        return self._search()

    def _search(self) -> tuple[str, str]:
        if self.first_query is None:
            if self._draws(self.config.naive_query[self.tier]):
                self.first_query = naive_query(self.goal.instruction)
            elif self.goal.tier != "hard":
                self.first_query = f"{self.brand} {self.material} {self.kind}"
            else:
                wrong = self.rng.choice(sorted(set(VARIANTS) - {self.variant}))
                self.first_query = f"{wrong} {self.material} {self.kind}"
                guess = f"'{VARIANTS[self.variant]}' may mean {wrong}, so I search for {self._a(self.first_query)}"
                return f"I need {self._a(self.thing)}; {guess}.", f"search[{self.first_query}]"
            return f"I need {self._a(self.thing)}; I search for it.", f"search[{self.first_query}]"
        if self.goal.tier == "hard" and self.rng.random() < self.config.refine_after_back:
            return self._refine()
        return "I try my search again.", f"search[{self.first_query}]"

    def _refine(self) -> tuple[str, str]:
        phrase, self.knows_variant = VARIANTS[self.variant], True
        query = f"{self.variant} {self.material} {self.kind}"
        return f"'{phrase}' probably means {self.variant}; I search for {self._a(query)}.", f"search[{query}]"

    def _on_results(self, observation: str, page_number: int) -> tuple[str, str]:
        products = [self.env.catalog.by_asin[a] for a in _ASIN.findall(observation)]
        on_page = self.target in products
        if on_page and page_number == 1 and not self.overlooked and self._draws(self.config.overlook[self.tier]):
            self.overlooked = self.returning = True
            return self._next_page()
        if self.returning and page_number > 1:
            self.returning = False
            return self._previous_page()
        decoy = self._decoy(products, strict=on_page and self.knows_variant)
        if on_page:
            if decoy is not None and self.rng.random() < self.config.decoy[self.tier]:
                return self._open(decoy)
            return self._open(self.target)
        draw, c = self.rng.random(), self.config
        if page_number > 1:  # one draw decides between < Prev, Next >, a refined search and a decoy
            if draw < c.prev_page:
                return self._previous_page()
            draw -= c.prev_page
        if draw < c.next_page or (decoy is None and products):
            return self._next_page()
        if draw < c.next_page + c.refine and self.goal.tier == "hard":
            return self._refine()
        if decoy is None:
            return "Nothing here fits; I start a new search.", "click[Back to Search]"
        return self._open(decoy)

    def _next_page(self) -> tuple[str, str]:
        return f"The results do not show {self._a(self.thing)}; I check the next page.", "click[Next >]"

    @staticmethod
    def _previous_page() -> tuple[str, str]:
        return "I go back to the previous page to compare the items again.", "click[< Prev]"

    def _decoy(self, products: Sequence[Product], strict: bool = False) -> Product | None:
        """The first unvisited non-target item of the right kind on the page that shares most words
        with the wanted ones (all of them when ``strict``), or None."""

        def shared(p: Product) -> int:
            return len(self.wanted & set(p.title.split()))

        others = [p for p in products if p != self.target and p.asin not in self.visited]
        best = max(others, key=shared, default=None)
        if best is None or self.kind not in best.title.split() or (strict and shared(best) < len(self.wanted)):
            return None
        return best

    def _open(self, product: Product) -> tuple[str, str]:
        self.visited.add(product.asin)
        # The title before the id: the id is then looked up, not guessed before the item is named.
        return f"The {product.title} {product.asin} fits the instruction.", f"click[{product.asin}]"

    def _on_item(self, product: Product) -> tuple[str, str]:
        if self.plan is None:
            if product != self.target and self.rng.random() < self.config.notice_decoy:
                back = self.rng.choice(KEY_CLICKS[1:])
                what = "go back to the results" if back == KEY_CLICKS[1] else "start a new search"
                return f"This {product.title} is not {self._a(self.thing)}; I {what}.", back
            self.plan = self._option_plan(product)
        if self.plan:
            name, value = self.plan.pop(0)
            return f"The instruction asks for {name} {value}.", f"click[{value}]"
        return "The item and its options match the instruction, so I buy it.", "click[Buy Now]"

    def _option_plan(self, product: Product) -> list[tuple[str, str]]:
        plan = []
        for name, wanted in self.goal.options:
            values = product.options.get(name, [])
            draw = self.rng.random()
            if not values or draw < self.config.skip_option:
                continue
            others = [v for v in values if v != wanted]
            if wanted not in values or (
                others and draw < self.config.skip_option + self.config.wrong_option[self.tier]
            ):
                plan.append((name, self.rng.choice(others)))
            else:
                plan.append((name, wanted))
        return plan

    def _draws(self, rate: float) -> bool:
        """True with probability ``rate``; no draw at rate 0, so the later choices keep their stream."""
        return rate > 0 and self.rng.random() < rate

    @staticmethod
    def _a(words: str) -> str:
        return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _goal_tier(env: ShopEnv, task_id: str) -> str:
    """The tier of a task's goal.

    Raises:
        EefError: the goal has none (the shop is not the generated one).
    """
    tier = env.catalog.goals[env.catalog.goal_index(task_id)].tier
    if tier not in TIERS:
        raise EefError(f"the scripted expert needs tiered (generated) goals; {task_id} has none")
    return tier


def scripted_trajectory(
    env: TextEnv,
    task_id: str,
    prompt: tuple[Message, ...],
    config: ScriptedExpertConfig = ScriptedExpertConfig(),
    seed: int = 0,
) -> Trajectory:
    """One scripted episode of ``task_id`` from reset, every turn trainable; ``meta["tier"]`` is
    the goal's tier.

    Args:
        env: the built-in shop (``make("shop")``); the expert reads its hidden goal.
        task_id: the task to play.
        prompt: the context stored with the trajectory (system instruction, one-shot example).
        config: mistake rates, recorded with ``seed`` as the provenance's ``sampling``.
        seed: with the task id, seeds the episode's random stream.

    Raises:
        EefError: the environment is not the built-in shop (its goals carry no tier).
    """
    if not isinstance(env, ShopEnv):
        raise EefError(f"the scripted expert needs the built-in shop, not {env.name!r}")
    tier = _goal_tier(env, task_id)
    env.reset(task_id)
    shopper = ScriptedShopper(env, config, random.Random(f"{seed}/{task_id}"))
    trajectory = play_episode(
        env,
        task_id,
        prompt,
        shopper.act,
        Provenance(source="scripted", model=MODEL, sampling={"seed": seed, **asdict(config)}),
    )
    return replace(trajectory, meta={**trajectory.meta, "tier": tier})


def scripted_trajectories(
    env: TextEnv,
    task_ids: Sequence[str],
    prompt: tuple[Message, ...],
    config: ScriptedExpertConfig = ScriptedExpertConfig(),
    seed: int = 0,
) -> list[Trajectory]:
    """:func:`scripted_trajectory` for each task."""
    return [scripted_trajectory(env, t, prompt, config, seed) for t in task_ids]
