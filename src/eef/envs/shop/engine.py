"""The shop engine: WebShop's text-mode pages and actions over a :class:`Catalog`.

Pages: start (search box), results (10 per page of up to 50 hits), item (option groups,
Description / Features / Reviews, Buy Now) and the item's sub-pages. Observations are the
visible strings joined by `` [SEP] ``; actions are ``search[keywords]`` and ``click[label]``.
Deviations from WebShop, all deliberate: the debug keywords ``<r> <a> <c> <q>`` are plain text;
the page after ``Buy Now`` shows only the thank-you line and the score.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

from eef.checks import at_least, check_fields, one_of
from eef.envs.protocol import StepResult, TextEnv
from eef.envs.shop.catalog import Catalog, Product
from eef.envs.shop.reward import REWARD_MODES, purchase_reward
from eef.envs.shop.search import BACKEND

SEP = " [SEP] "
RESULTS_PER_PAGE = 10
MAX_HITS = 50
BUTTONS_RESULTS = ("back to search", "< prev", "next >")
BUTTONS_ITEM = ("back to search", "< prev", "description", "features", "reviews", "buy now")
SUB_PAGES = ("description", "features", "reviews")
# ``webshop``: WebShop's text observations. ``compact``: the same pages and actions in fewer tokens
# (the instruction only on the first page, no result count, an item's title and price in one
# piece, option groups on one line each), for models trained from scratch on a CPU.
VIEWS = ("webshop", "compact")
_ACTION = re.compile(r"(.+)\[(.+)\]", re.DOTALL)  # greedy: the last "[" that has a "]" after it


def parse_action(action: str) -> tuple[str, str] | None:
    """``search[kw]`` / ``click[x]`` -> (verb, lowercased argument); None when it is neither.

    As WebShop: split at the last ``[`` that has a ``]`` after it, ignore text after the final
    ``]``, lowercase the argument; the verb must be exactly ``search`` or ``click``.

    >>> parse_action("click[Buy Now]")
    ('click', 'buy now')
    >>> parse_action("search[red shirt] please")
    ('search', 'red shirt')
    """
    match = _ACTION.match(action) if isinstance(action, str) else None
    if match is None or match.group(1) not in ("search", "click"):
        return None
    return match.group(1), match.group(2).lower()


@dataclass
class _State:
    page: str = "start"  # start | results | item | description | features | reviews | done
    page_number: int = 1
    hits: list[int] = field(default_factory=list)  # product numbers of the current search
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # group name -> chosen value
    steps: int = 0
    reward: float = 0.0


def check_episode_settings(max_steps: int = 10, reward_mode: str = "faithful", view: str = "webshop") -> None:
    """A shop's episode settings in range (the catalog's are :class:`GeneratorConfig`'s).

    Raises:
        FieldErrors: each setting out of range.
    """
    settings = SimpleNamespace(max_steps=max_steps, reward_mode=reward_mode, view=view)
    check_fields(settings, max_steps=at_least(1), reward_mode=one_of(*REWARD_MODES), view=one_of(*VIEWS))


class ShopEnv(TextEnv):
    """A WebShop-semantics environment over a catalog (see the module docstring).

    Args:
        catalog: products, goals and splits.
        name: registry name of this environment.
        max_steps: steps after which an episode is truncated with reward 0.
        reward_mode: ``faithful`` (WebShop's reward with its quirks) or ``fixed``.
    """

    supports_snapshot = True
    process_local = True  # pure Python: forked rollout workers can step copies

    def __init__(
        self,
        catalog: Catalog,
        *,
        name: str = "shop",
        max_steps: int = 10,
        reward_mode: str = "faithful",
        view: str = "webshop",
    ):
        check_episode_settings(max_steps=max_steps, reward_mode=reward_mode, view=view)
        self.view = view
        self.catalog = catalog
        self.name = name
        self.max_steps = max_steps
        self.reward_mode = reward_mode
        self.info = {
            **catalog.info,
            "reward_mode": reward_mode,
            "search": BACKEND,
            "max_steps": max_steps,
            "view": view,
        }
        self._goal_index: int | None = None
        self._state = _State()

    # -- tasks -------------------------------------------------------------------------------
    def splits(self) -> list[str]:
        return list(self.catalog.splits)

    def task_ids(self, split: str) -> list[str]:
        return self.catalog.task_ids(split)

    def task_group(self, task_id: str) -> str | None:
        """The difficulty tier of a generated goal; None for WebShop's goals."""
        return self.catalog.goals[self.catalog.goal_index(task_id)].tier

    @property
    def goal(self):
        if self._goal_index is None:
            raise RuntimeError("call reset(task_id) before stepping the environment")
        return self.catalog.goals[self._goal_index]

    def instruction(self) -> str:
        return self.goal.instruction

    def is_success(self, reward: float) -> bool:
        return reward >= 1.0

    def observations_match(self, expected: str, seen: str) -> bool:
        return expected == seen

    # -- episode -----------------------------------------------------------------------------
    def reset(self, task_id: str) -> str:
        self._goal_index = self.catalog.goal_index(task_id)
        self._state = _State()
        return self._observe()

    def fork(self) -> ShopEnv:
        """A second environment over the same catalog and search index (cheap: nothing is rebuilt)."""
        twin = copy.copy(self)
        twin._goal_index, twin._state = None, _State()
        return twin

    def snapshot(self) -> tuple[int | None, _State]:
        return self._goal_index, copy.deepcopy(self._state)

    def restore(self, snapshot: tuple[int | None, _State]) -> None:
        self._goal_index, state = snapshot
        self._state = copy.deepcopy(state)

    # -- the current page, as an expert that reads the screen sees it --------------------------
    @property
    def page(self) -> str:
        """The page the episode is on: start, results, item, description, features, reviews or done."""
        return self._state.page

    @property
    def page_number(self) -> int:
        """The results page shown (1-based)."""
        return self._state.page_number

    @property
    def item(self) -> Product:
        """The product whose page (or sub-page) is open.

        Raises:
            RuntimeError: no item is open.
        """
        return self.catalog.by_asin[self._open_asin()]

    def available_actions(self) -> list[str]:
        s = self._state
        if s.page == "start":
            return ["search[<keywords>]"]
        return [f"click[{c}]" for c in self._clickables()] + (["search[<keywords>]"] if s.page != "done" else [])

    def step(self, action: str) -> StepResult:
        s = self._state
        if self._goal_index is None:
            raise RuntimeError("call reset(task_id) before stepping the environment")
        if s.page == "done" or s.steps >= self.max_steps:
            raise RuntimeError("the episode is over; call reset(task_id)")
        s.steps += 1
        valid = self._apply(parse_action(action))
        terminated = s.page == "done"
        truncated = not terminated and s.steps >= self.max_steps
        reward = s.reward if terminated else 0.0
        return StepResult(self._observe(), reward, terminated, truncated, {"valid": valid})

    # -- oracle ------------------------------------------------------------------------------
    def oracle_action(self) -> str:
        """The next action of a perfect shopper: search the target's title, page to it, open it,
        choose the goal's options, buy. Used by ``eef env verify`` to check an installation."""
        s, goal = self._state, self.goal
        target = self.catalog.by_asin[goal.asin]
        if s.page == "results":
            if any(p.asin == goal.asin for p in self._page_hits()):
                return f"click[{goal.asin.lower()}]"
            if s.page_number * RESULTS_PER_PAGE < len(s.hits):
                return "click[next >]"
        elif s.page == "item" and s.asin == goal.asin:
            groups = self._option_groups()
            wanted = {groups[v.lower()]: v.lower() for v in goal.option_values() if v.lower() in groups}
            missing = [v for group, v in wanted.items() if s.options.get(group) != v]
            return f"click[{missing[0]}]" if missing else "click[buy now]"
        return f"search[{target.title.replace('[', ' ').replace(']', ' ')}]"  # brackets would end the action

    # -- transitions -------------------------------------------------------------------------
    def _apply(self, parsed: tuple[str, str] | None) -> bool:
        if parsed is None:
            return False
        verb, arg = parsed
        s = self._state
        if verb == "search":
            hits = self.catalog.index.search(arg, MAX_HITS)
            s.page, s.page_number, s.asin, s.options, s.hits = "results", 1, None, {}, hits
            return True
        if arg not in self._clickables():
            return False
        if arg == "back to search":
            self._state = _State(steps=s.steps)
        elif s.page == "results" and arg in ("next >", "< prev"):
            s.page_number += 1 if arg == "next >" else -1
        elif s.page == "results":
            s.page, s.asin, s.options = "item", self._asin_on_page(arg), {}
        elif s.page == "item" and arg == "< prev":
            s.page, s.asin, s.options = "results", None, {}
        elif s.page == "item" and arg in SUB_PAGES:
            s.page = arg
        elif s.page == "item" and arg == "buy now":
            self._buy()
        elif s.page == "item":
            s.options[self._option_groups()[arg]] = arg
        elif arg == "< prev":  # sub-page -> item, options kept
            s.page = "item"
        return True

    def _buy(self) -> None:
        s = self._state
        bought = self.item
        target = self.catalog.by_asin[self.goal.asin]
        details = purchase_reward(self.goal, bought, target, s.options, self.reward_mode)
        s.page, s.reward = "done", details.reward

    def _page_hits(self) -> list[Product]:
        s = self._state
        start = (s.page_number - 1) * RESULTS_PER_PAGE
        return [self.catalog.products[i] for i in s.hits[start : start + RESULTS_PER_PAGE]]

    def _asin_on_page(self, lowered: str) -> str:
        return next(p.asin for p in self._page_hits() if p.asin.lower() == lowered)

    def _option_groups(self) -> dict[str, str]:
        """Option value -> its group on the open item; a value in two groups belongs to the later one (as WebShop)."""
        return {v: name for name, values in self.item.options.items() for v in values}

    def _open_asin(self) -> str:
        if self._state.asin is None:
            raise RuntimeError("no item page is open")
        return self._state.asin

    def _clickables(self) -> list[str]:
        s = self._state
        if s.page == "start":
            return ["search"]
        if s.page == "results":
            buttons = [b for b in BUTTONS_RESULTS if b != "< prev" or s.page_number > 1]
            return buttons + [p.asin.lower() for p in self._page_hits()]
        if s.page == "item":
            return list(BUTTONS_ITEM) + list(self._option_groups())
        if s.page in SUB_PAGES:
            return ["back to search", "< prev"]
        return []

    # -- observations ------------------------------------------------------------------------
    def _observe(self) -> str:
        if self.view == "compact" and self._state.page in ("start", "results", "item"):
            return self._observe_compact()
        s = self._state
        instruction = self.goal.instruction
        if s.page == "start":
            parts = ["WebShop", "Instruction:", instruction, "Search"]
        elif s.page == "done":
            parts = ["Thank you for shopping with us!", "Your score (min 0.0, max 1.0)", str(s.reward)]
        else:
            parts = ["Instruction:", instruction, "Back to Search"]
            if s.page == "results":
                parts.append(f"Page {s.page_number} (Total results: {len(s.hits)})")
                if s.page_number > 1:
                    parts.append("< Prev")
                parts.append("Next >")
                for p in self._page_hits():
                    parts += [p.asin, p.title, p.price_text]
            else:
                parts.append("< Prev")
                parts += self._item_parts(self.item, s.page)
        return SEP.join(x for x in (part.strip() for part in parts) if x)

    def _observe_compact(self) -> str:
        s = self._state
        if s.page == "start":
            parts = ["Instruction:", self.goal.instruction, "Search"]
        elif s.page == "results":
            parts = ["Back to Search", f"Page {s.page_number}"] + (["< Prev"] if s.page_number > 1 else [])
            parts.append("Next >")
            # The id right after the title: a model that has just written the title it wants finds
            # the id by looking up what followed those words (what attention heads learn first).
            parts += [f"{p.title} {p.asin} {p.price_text}" for p in self._page_hits()]
        else:
            # The instruction again, as WebShop shows it: the options to copy are then a few tokens
            # back on every item page, not hundreds after a long navigation (a tiny model trained
            # on short episodes copies badly from distances it has not seen).
            product = self.item
            parts = [
                "Instruction:",
                self.goal.instruction,
                "Back to Search",
                "< Prev",
                f"{product.title} {product.price_text}",
            ]
            parts += [f"{name}: {' '.join(values)}" for name, values in product.options.items()]
            parts.append("Buy Now")
        return SEP.join(parts)

    @staticmethod
    def _item_parts(product: Product, page: str) -> list[str]:
        if page == "description":
            return [product.description]
        if page == "features":
            return list(product.bullets)
        if page == "reviews":
            return []  # WebShop never loads reviews
        parts = []
        for name, values in product.options.items():
            parts += [name, *values]
        return parts + [
            product.title,
            f"Price: {product.price_text}",
            "Rating: N.A.",
            "Description",
            "Features",
            "Reviews",
            "Buy Now",
        ]
