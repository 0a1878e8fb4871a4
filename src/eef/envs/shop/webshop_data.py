"""Load the real WebShop product data and make WebShop's goals from it.

Two layouts of a data directory are read:

* processed: ``products.jsonl(.gz)``, one product per line as WebShop's ``load_products`` leaves it,
  with ``lucene_docno`` (load order) and ``contents`` (the indexed text); this is the layout of
  the rebuilt 1k set (``shared/data/webshop-1k``);
* original: ``items_shuffle_1000.json`` or ``items_shuffle.json`` (the scraped products, a JSON list).

Beside them ``items_ins_v2_1000.json`` / ``items_ins_v2.json`` (attributes and synthetic
instructions) and, for human goals, ``items_human_ins.json``.

Goals follow WebShop: synthetic goals (one per combination of a product's option values) or
human goals, a price limit drawn per product (synthetic) or per instruction (human), then the
list shuffled under seed 233 so that goal *i* is WebShop's session *i*. Upstream draws prices
without a seed, so goal texts differ between its processes; we draw them from ``seed``.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from eef.envs.shop.catalog import (
    Catalog,
    Goal,
    Product,
    price_clause,
    price_limit,
    split_by_position,
)
from eef.envs.shop.nouns import title_nouns
from eef.errors import DataError
from eef.jsonl import iter_json_lines

GOAL_SHUFFLE_SEED = 233  # WebShop's random.seed(233) before shuffling its goals
GOAL_KINDS = ("synthetic", "human")
DEFAULT_SPLITS = (("test", 500), ("dev", 1000))  # train = the rest


def _first_existing(data_dir: Path, names: list[str]) -> Path | None:
    return next((data_dir / n for n in names if (data_dir / n).is_file()), None)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read: {e}") from None


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for number, record in iter_json_lines(path):
        if not isinstance(record, dict):
            raise DataError(path, "expected a JSON object", line=number)
        yield number, record


def _field(record: dict, name: str, kind: type | tuple[type, ...], path: Path, line: int | None, where: str = ""):
    if name not in record:
        raise DataError(path, "missing", line=line, field=where + name)
    value = record[name]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(path, f"expected {expected}, got {type(value).__name__}", line=line, field=where + name)
    return value


def indexed_text(title: str, description: str, bullets: list[str], options: dict[str, list[str]]) -> str:
    """WebShop's ``contents``: lowercase title, description, first bullet and option text."""
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in options.items())
    first_bullet = bullets[0] if bullets else ""
    return f"{title} {description} {first_bullet} {option_text}".lower()


def _parse_price_string(text: str) -> list[float]:
    """``"$12.99"`` -> [12.99]; ``"$10.00 - $15.99"`` -> [10.0, 15.99] (WebShop's parsing)."""
    prices = [re.sub(r"[^\d.]", "", part) for part in text.split("$")[1:]]
    return [float(p) for p in prices if p and p != "."][:2]


def _price_text(pricing: list[float]) -> str:
    return f"${pricing[0]}" if len(pricing) == 1 else f"${pricing[0]} to ${pricing[1]}"


def _processed_options(raw: Any, path: Path, where: str) -> dict[str, list[str]]:
    """Options from scraped ``customization_options`` as WebShop's ``load_products`` builds them."""
    options: dict[str, list[str]] = {}
    if not raw:
        return options
    if not isinstance(raw, dict):
        raise DataError(path, "expected an object or empty string", field=where + "customization_options")
    for name, contents in raw.items():
        if contents is None:
            continue
        values = []
        for i, entry in enumerate(contents):
            if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
                raise DataError(path, "missing option value", field=f"{where}customization_options.{name}[{i}].value")
            values.append(entry["value"].strip().replace("/", " | ").lower())
        options[name.lower()] = values
    return options


def _load_processed(path: Path) -> list[tuple[dict, int]]:
    rows = []
    for line, r in _read_jsonl(path):
        for name, kind in (
            ("asin", str),
            ("Title", str),
            ("Description", str),
            ("BulletPoints", list),
            ("pricing", list),
            ("options", dict),
            ("Attributes", list),
            ("query", str),
            ("category", str),
            ("product_category", str),
            ("lucene_docno", int),
        ):
            _field(r, name, kind, path, line)
        if not r["pricing"] or not all(isinstance(p, (int, float)) for p in r["pricing"]):
            raise DataError(path, "expected 1 or 2 numbers", line=line, field="pricing")
        for name in ("BulletPoints", "Attributes"):
            for i, item in enumerate(r[name]):
                if not isinstance(item, str):
                    raise DataError(path, f"expected str, got {type(item).__name__}", line=line, field=f"{name}[{i}]")
        for group, values in r["options"].items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise DataError(path, "expected a list of strings", line=line, field=f"options.{group}")
        rows.append((r, line))
    rows.sort(key=lambda row: row[0]["lucene_docno"])
    return rows


def _load_original(path: Path, attributes: dict, limit: int | None) -> list[tuple[dict, None]]:
    raw = _read_json(path)
    if not isinstance(raw, list):
        raise DataError(path, "expected a JSON list of products")
    if limit is not None:
        raw = raw[:limit]
    rows, seen = [], set()
    for i, p in enumerate(raw):
        where = f"[{i}]."
        if not isinstance(p, dict):
            raise DataError(path, "expected an object", field=f"[{i}]")
        asin = _field(p, "asin", str, path, None, where)
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue  # WebShop skips these
        seen.add(asin)
        bullets = p.get("small_description", [])
        pricing_raw = p.get("pricing")
        pricing = _parse_price_string(pricing_raw) if isinstance(pricing_raw, str) and pricing_raw else []
        rows.append(
            (
                {
                    "asin": asin,
                    "Title": _field(p, "name", str, path, None, where),
                    "Description": _field(p, "full_description", str, path, None, where),
                    "BulletPoints": bullets if isinstance(bullets, list) else [bullets],
                    "pricing": pricing or [100.0],
                    "options": _processed_options(p.get("customization_options"), path, where),
                    "Attributes": attributes.get(asin, {}).get("attributes", ["DUMMY_ATTR"]),
                    "query": _field(p, "query", str, path, None, where).lower().strip(),
                    "category": _field(p, "category", str, path, None, where),
                    "product_category": _field(p, "product_category", str, path, None, where),
                },
                None,
            )
        )
    return rows


def load_webshop(
    data_dir: str | Path,
    *,
    goals: str = "synthetic",
    seed: int = 0,
    num_products: int | None = None,
    split_files: dict[str, str] | None = None,
    nouns: str = "auto",
) -> Catalog:
    """Read a WebShop data directory into a :class:`Catalog` with WebShop's goals.

    Args:
        data_dir: directory with the product files (see the module docstring).
        goals: ``synthetic`` (from ``items_ins_v2``) or ``human`` (from ``items_human_ins.json``).
        seed: seed of the price draws (price ranges, price limits).
        num_products: read only the first N products of an original ``items_shuffle`` file.
        split_files: split name -> JSON file with a list of goal indices (ETO style); replaces
            the default test [0:500] / dev [500:1500] / train (rest) split.
        nouns: title noun tagger preference (see :func:`eef.envs.shop.nouns.title_nouns`).
    """
    if goals not in GOAL_KINDS:
        raise ValueError(f"unknown goal kind {goals!r}; known: {', '.join(GOAL_KINDS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "WebShop data directory does not exist")
    ins_path = _first_existing(data_dir, ["items_ins_v2_1000.json", "items_ins_v2.json"])
    if ins_path is None:
        raise DataError(data_dir / "items_ins_v2.json", "missing (needed for attributes and synthetic instructions)")
    instructions = _read_json(ins_path)
    if not isinstance(instructions, dict):
        raise DataError(ins_path, "expected a JSON object keyed by ASIN")

    processed = _first_existing(data_dir, ["products.jsonl.gz", "products.jsonl"])
    original = _first_existing(data_dir, ["items_shuffle_1000.json", "items_shuffle.json"])
    rows: Sequence[tuple[dict, int | None]]  # the line of each product in a JSON-lines file
    if processed is not None:
        rows, source = _load_processed(processed), processed
    elif original is not None:
        rows, source = _load_original(original, instructions, num_products), original
    else:
        raise DataError(
            data_dir / "products.jsonl.gz", "missing (nor items_shuffle.json nor items_shuffle_1000.json found)"
        )

    rng = random.Random(seed)
    prices = []
    for r, _ in rows:  # WebShop draws a price inside each range once, at load, in product order
        pricing = r["pricing"]
        prices.append(pricing[0] if len(pricing) == 1 else rng.uniform(pricing[0], pricing[1]))

    noun_map, taggers = title_nouns(((r["asin"], r["Title"]) for r, _ in rows), nouns)
    products = [
        Product(
            asin=r["asin"],
            title=r["Title"],
            price_text=r.get("Price") or _price_text(r["pricing"]),
            price=price,
            options=r["options"],
            description=r["Description"],
            bullets=r["BulletPoints"],
            attributes=r["Attributes"],
            query=r["query"],
            product_category=r["product_category"],
            category=r["category"],
            search_text=r.get("contents")
            or indexed_text(r["Title"], r["Description"], r["BulletPoints"], r["options"]),
            title_nouns=noun_map[r["asin"]],
        )
        for (r, _), price in zip(rows, prices)
    ]

    if goals == "synthetic":
        goal_list = _synthetic_goals(products, instructions, ins_path, rng)
    else:
        goal_list = _human_goals(products, rows, data_dir, rng)
    random.Random(GOAL_SHUFFLE_SEED).shuffle(goal_list)

    if split_files:
        splits = {name: _read_index_file(Path(p), len(goal_list)) for name, p in split_files.items()}
    else:
        splits = split_by_position(len(goal_list), DEFAULT_SPLITS, "train")
    info = {
        "source": str(source),
        "goals": goals,
        "seed": seed,
        "products": len(products),
        "title_nouns": taggers,
        "goal_shuffle_seed": GOAL_SHUFFLE_SEED,
    }
    return Catalog(products, goal_list, splits, prefix="webshop", info=info)


def _synthetic_goals(products: list[Product], instructions: dict, ins_path: Path, rng: random.Random) -> list[Goal]:
    drafts = []
    for product in products:
        entry = instructions.get(product.asin)
        if not isinstance(entry, dict) or entry.get("instruction") is None:
            continue
        text = entry["instruction"]
        attributes = entry.get("instruction_attributes")
        if not isinstance(text, str) or not isinstance(attributes, list) or not attributes:
            raise DataError(
                ins_path, "synthetic instruction needs a non-empty list", field=f"{product.asin}.instruction_attributes"
            )
        limit = price_limit(product.price, rng)
        names = sorted(product.options)
        for combination in itertools.product(*(product.options[n] for n in names)):
            pairs = tuple(zip(names, combination))
            option_text = ", and ".join(f"{n}: {v}" for n, v in pairs)
            instruction = text + (f" with {option_text}" if option_text else "") + price_clause(limit)
            drafts.append((product.asin, instruction, tuple(attributes), pairs, limit))
    counts: dict[str, int] = defaultdict(int)
    for draft in drafts:
        for attribute in draft[2]:
            counts[attribute] += 1
    return [
        Goal(
            asin,
            instruction,
            attributes,
            pairs,
            limit,
            weight=sum(1.0 / counts[a] for a in attributes) / len(attributes),
        )
        for asin, instruction, attributes, pairs, limit in drafts
    ]


def _human_goals(
    products: list[Product], rows: Sequence[tuple[dict, int | None]], data_dir: Path, rng: random.Random
) -> list[Goal]:
    human_path = data_dir / "items_human_ins.json"
    if human_path.is_file():
        by_asin = _read_json(human_path)
        if not isinstance(by_asin, dict):
            raise DataError(human_path, "expected a JSON object keyed by ASIN")
    else:  # the processed layout carries them per product
        by_asin = {r["asin"]: r["instructions"] for r, _ in rows if r.get("instructions")}
        if not by_asin:
            raise DataError(human_path, "missing: human goals need items_human_ins.json")
    goal_list = []
    for product in products:
        for i, entry in enumerate(by_asin.get(product.asin) or []):
            attributes = entry.get("instruction_attributes")
            if not attributes:
                continue  # WebShop skips instructions without attributes
            text = entry.get("instruction")
            if not isinstance(text, str):
                raise DataError(human_path, "missing", field=f"{product.asin}[{i}].instruction")
            limit = price_limit(product.price, rng)
            goal_list.append(
                Goal(
                    product.asin,
                    text.strip(".") + price_clause(limit),
                    tuple(attributes),
                    tuple(entry.get("instruction_options") or ()),
                    limit,
                )
            )
    return goal_list


def _read_index_file(path: Path, n_goals: int) -> list[int]:
    indices = _read_json(path)
    if not isinstance(indices, list):
        raise DataError(path, "expected a JSON list of goal indices")
    for i, value in enumerate(indices):
        if not isinstance(value, int) or not 0 <= value < n_goals:
            raise DataError(path, f"goal index must be an integer in 0..{n_goals - 1}, got {value!r}", field=f"[{i}]")
    return indices
