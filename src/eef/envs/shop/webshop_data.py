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
from collections.abc import Callable, Iterable, Iterator, Mapping
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
from eef.errors import DataError, EefError
from eef.jsonl import iter_json_array, iter_json_lines

GOAL_SHUFFLE_SEED = 233  # WebShop's random.seed(233) before shuffling its goals
GOAL_KINDS = ("synthetic", "human")
HUMAN_FILE = "items_human_ins.json"
DEFAULT_SPLITS = (("test", 500), ("dev", 1000))  # train = the rest


def _first_existing(data_dir: Path, names: list[str]) -> Path | None:
    return next((data_dir / n for n in names if (data_dir / n).is_file()), None)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        cut = (
            "; the file ends before the JSON does, as if cut short"
            if e.msg.startswith("Unterminated string") or _at_end(e)
            else ""
        )
        raise DataError(path, f"invalid JSON: {e.msg} (column {e.colno}){cut}", line=e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read: {e}") from None


def _at_end(error: json.JSONDecodeError) -> bool:
    """Whether a JSON error is at the end of the text: the file stops before the value is complete."""
    return error.pos >= len(error.doc.rstrip())


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


def _load_original(
    path: Path, attributes: dict, limit: int | None, on_read: Callable[[int], None] | None = None
) -> Iterator[dict]:
    seen: set[str] = set()
    for i, p in iter_json_array(path, on_read=on_read):
        if limit is not None and i >= limit:
            return
        row = original_product(p, i, attributes, path, seen)
        if row is not None:
            yield row


def source_files(data_dir: Path) -> dict[str, Path]:
    """The files of a WebShop data directory: ``products``, ``instructions`` and (when present) ``human``."""
    if not data_dir.is_dir():
        raise DataError(data_dir, "WebShop data directory does not exist")
    ins_path = _first_existing(data_dir, ["items_ins_v2_1000.json", "items_ins_v2.json"])
    if ins_path is None:
        raise DataError(data_dir / "items_ins_v2.json", "missing (needed for attributes and synthetic instructions)")
    products = _first_existing(
        data_dir, ["products.jsonl.gz", "products.jsonl", "items_shuffle_1000.json", "items_shuffle.json"]
    )
    if products is None:
        raise DataError(
            data_dir / "products.jsonl.gz", "missing (nor items_shuffle.json nor items_shuffle_1000.json found)"
        )
    files = {"products": products, "instructions": ins_path}
    if (data_dir / HUMAN_FILE).is_file():
        files["human"] = data_dir / HUMAN_FILE
    return files


def read_instructions(sources: dict[str, Path]) -> dict:
    """``items_ins_v2``: asin -> attributes and synthetic instruction."""
    instructions = _read_json(sources["instructions"])
    if not isinstance(instructions, dict):
        raise DataError(sources["instructions"], "expected a JSON object keyed by ASIN")
    return instructions


def load_product_rows(
    sources: dict[str, Path],
    instructions: dict,
    limit: int | None = None,
    on_read: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """The products as WebShop loads them, in load order (an original list is read piece by
    piece; ``on_read`` hears how many characters so far)."""
    path = sources["products"]
    if path.name.startswith("products.jsonl"):
        yield from (row for row, _ in _load_processed(path))
    else:
        yield from _load_original(path, instructions, limit, on_read)


def original_product(p: Any, i: int, attributes: dict, path: Path, seen: set[str]) -> dict | None:
    """Product ``[i]`` of an original ``items_shuffle`` list as WebShop loads it, or None where WebShop skips it.

    ``seen`` collects the ASINs read so far (a repeated ASIN is skipped, as WebShop does).
    """
    where = f"[{i}]."
    if not isinstance(p, dict):
        raise DataError(path, "expected an object", field=f"[{i}]")
    asin = _field(p, "asin", str, path, None, where)
    if asin == "nan" or len(asin) > 10 or asin in seen:
        return None  # WebShop skips these
    seen.add(asin)
    bullets = p.get("small_description", [])
    pricing_raw = p.get("pricing")
    pricing = _parse_price_string(pricing_raw) if isinstance(pricing_raw, str) and pricing_raw else []
    options = _processed_options(p.get("customization_options"), path, where)
    title, description = (
        _field(p, "name", str, path, None, where),
        _field(p, "full_description", str, path, None, where),
    )
    bullets = bullets if isinstance(bullets, list) else [bullets]
    return {
        "asin": asin,
        "Title": title,
        "Description": description,
        "BulletPoints": bullets,
        "pricing": pricing or [100.0],
        "options": options,
        "Attributes": attributes.get(asin, {}).get("attributes", ["DUMMY_ATTR"]),
        "query": _field(p, "query", str, path, None, where).lower().strip(),
        "category": _field(p, "category", str, path, None, where),
        "product_category": _field(p, "product_category", str, path, None, where),
    }


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

    Instructions that name a product not loaded are skipped, as WebShop skips them, and counted
    by reason in the catalog's ``info`` (``skipped_human_instructions`` or
    ``skipped_synthetic_instructions``).

    Args:
        data_dir: directory with the product files (see the module docstring).
        goals: ``synthetic`` (from ``items_ins_v2``) or ``human`` (from ``items_human_ins.json``).
        seed: seed of the price draws (price ranges, price limits).
        num_products: read only the first N products of an original ``items_shuffle`` file.
        split_files: split name -> JSON file with a list of goal indices (ETO style; an index
            listed twice is kept once, in its first place); replaces the default test [0:500] /
            dev [500:1500] / train (rest) split.
        nouns: title noun tagger preference (see :func:`eef.envs.shop.nouns.title_nouns`).
    """
    if goals not in GOAL_KINDS:
        raise ValueError(f"unknown goal kind {goals!r}; known: {', '.join(GOAL_KINDS)}")
    data_dir = Path(data_dir)
    sources = source_files(data_dir)
    instructions = read_instructions(sources)
    rows = list(load_product_rows(sources, instructions, num_products))

    rng = random.Random(seed)
    prices = draw_prices([r["pricing"] for r in rows], rng)
    noun_map, taggers = title_nouns(((r["asin"], r["Title"]) for r in rows), nouns)
    products = [
        Product(**product_fields(r), price=price, title_nouns=noun_map[r["asin"]]) for r, price in zip(rows, prices)
    ]
    loaded = {p.asin for p in products}
    if goals == "synthetic":
        goal_list = _synthetic_goals(products, instructions, sources["instructions"], rng)
        skipped = skipped_synthetic_instructions(instructions, loaded)
    else:
        goal_list, skipped = _human_goals(products, rows, sources, rng, loaded)
    if not goal_list:
        source = sources["instructions"] if goals == "synthetic" else sources.get("human", sources["products"])
        why = "".join(f"; {count} skipped: {reason}" for reason, count in skipped.items())
        raise DataError(source, f"no {goals} goals for the products of {sources['products'].name}{why}")
    splits = shuffle_and_split(goal_list, split_files)
    info = {
        "source": str(sources["products"]),
        "goals": goals,
        "seed": seed,
        "products": len(products),
        "title_nouns": taggers,
        "goal_shuffle_seed": GOAL_SHUFFLE_SEED,
        f"skipped_{goals}_instructions": skipped,
    }
    return Catalog(products, goal_list, splits, prefix="webshop", info=info)


# A goal before its price limit: (asin, instruction without the price clause, attributes, options).
GoalDraft = tuple[str, str, tuple[str, ...], tuple]


def synthetic_drafts(asin: str, options: dict[str, list[str]], entry: Any, ins_path: Path) -> list[GoalDraft] | None:
    """WebShop's synthetic goals of one product: one per combination of its option values.

    None when ``entry`` (the product's ``items_ins_v2`` record) has no instruction; a product
    with an instruction still draws a price limit even if an empty option group leaves no goal.
    """
    if not isinstance(entry, dict) or entry.get("instruction") is None:
        return None
    text = entry["instruction"]
    attributes = entry.get("instruction_attributes")
    if not isinstance(text, str) or not isinstance(attributes, list) or not attributes:
        raise DataError(
            ins_path, "synthetic instruction needs a non-empty list", field=f"{asin}.instruction_attributes"
        )
    names = sorted(options)
    drafts = []
    for combination in itertools.product(*(options[n] for n in names)):
        pairs = tuple(zip(names, combination))
        option_text = ", and ".join(f"{n}: {v}" for n, v in pairs)
        drafts.append((asin, text + (f" with {option_text}" if option_text else ""), tuple(attributes), pairs))
    return drafts


def human_drafts(asin: str, entries: Any, human_path: Path) -> list[GoalDraft]:
    """WebShop's human goals of one product (instructions without attributes are skipped, as WebShop does)."""
    if not entries:
        return []
    if not isinstance(entries, list):
        raise DataError(human_path, "expected a list of instructions", field=asin)
    drafts = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(human_path, "expected an object", field=f"{asin}[{i}]")
        attributes = entry.get("instruction_attributes")
        if not attributes:
            continue
        text = entry.get("instruction")
        if not isinstance(text, str):
            raise DataError(human_path, "missing", field=f"{asin}[{i}].instruction")
        drafts.append((asin, text.strip("."), tuple(attributes), tuple(entry.get("instruction_options") or ())))
    return drafts


def make_goals(drafts_by_product: Iterable[tuple[float, list[GoalDraft]]], kind: str, rng: random.Random) -> list[Goal]:
    """Goals from drafts given per product (in product order, with the product's price).

    Price limits are drawn from ``rng`` as WebShop draws them: one per product for synthetic
    goals, one per instruction for human goals. Synthetic goals weigh the inverse frequency of
    their attributes; human goals weigh 1.
    """
    priced: list[tuple[GoalDraft, float]] = []
    for price, drafts in drafts_by_product:
        if kind == "synthetic":
            limit = price_limit(price, rng)
            priced.extend((draft, limit) for draft in drafts)
        else:
            priced.extend((draft, price_limit(price, rng)) for draft in drafts)
    counts: dict[str, int] = defaultdict(int)
    if kind == "synthetic":
        for (_, _, attributes, _), _ in priced:
            for attribute in attributes:
                counts[attribute] += 1
    return [
        Goal(
            asin,
            text + price_clause(limit),
            attributes,
            options,
            limit,
            weight=sum(1.0 / counts[a] for a in attributes) / len(attributes) if kind == "synthetic" else 1.0,
        )
        for (asin, text, attributes, options), limit in priced
    ]


def product_fields(r: dict) -> dict[str, Any]:
    """A loaded product row as :class:`Product` fields, all but the drawn price and the title nouns."""
    return {
        "asin": r["asin"],
        "title": r["Title"],
        "price_text": r.get("Price") or _price_text(r["pricing"]),
        "options": r["options"],
        "description": r["Description"],
        "bullets": r["BulletPoints"],
        "attributes": r["Attributes"],
        "query": r["query"],
        "product_category": r["product_category"],
        "category": r["category"],
        "search_text": r.get("contents") or indexed_text(r["Title"], r["Description"], r["BulletPoints"], r["options"]),
    }


def draw_prices(pricings: Iterable[list[float]], rng: random.Random) -> list[float]:
    """Each product's price: WebShop draws one inside each range once, at load, in product order."""
    return [pricing[0] if len(pricing) == 1 else rng.uniform(pricing[0], pricing[1]) for pricing in pricings]


def shuffle_and_split(goal_list: list[Goal], split_files: dict[str, str] | None) -> dict[str, list[int]]:
    """Shuffle the goals in place as WebShop does (goal i = session i); the splits over them."""
    random.Random(GOAL_SHUFFLE_SEED).shuffle(goal_list)
    if split_files:
        return {name: _read_index_file(Path(p), len(goal_list)) for name, p in _split_paths(split_files).items()}
    return split_by_position(len(goal_list), DEFAULT_SPLITS, "train")


def _synthetic_goals(products: list[Product], instructions: dict, ins_path: Path, rng: random.Random) -> list[Goal]:
    drafted = ((p, synthetic_drafts(p.asin, p.options, instructions.get(p.asin), ins_path)) for p in products)
    return make_goals(((p.price, d) for p, d in drafted if d is not None), "synthetic", rng)


def _human_goals(
    products: list[Product], rows: list[dict], sources: dict[str, Path], rng: random.Random, loaded: set[str]
) -> tuple[list[Goal], dict[str, int]]:
    human = human_instructions(sources, rows)
    if human is None:
        raise DataError(sources["products"].parent / HUMAN_FILE, "missing: human goals need items_human_ins.json")
    human_path, by_asin = human
    drafted = ((p.price, human_drafts(p.asin, by_asin[p.asin], human_path)) for p in products if p.asin in by_asin)
    goals = make_goals(drafted, "human", rng)
    named = (a for a, entries in by_asin.items() for _ in (entries if isinstance(entries, list) else [entries]))
    return goals, skipped_instructions(named, loaded)


SKIPPED_ABSENT = "names a product not in the catalog"


def skipped_instructions(asins: Iterable[str], loaded: set[str]) -> dict[str, int]:
    """How many instructions (one ASIN per instruction in ``asins``) were skipped, by reason:
    those naming a product the catalog did not load (absent from the product file, or past
    ``num_products``). Empty when none was."""
    missing = sum(asin not in loaded for asin in asins)
    return {SKIPPED_ABSENT: missing} if missing else {}


def skipped_synthetic_instructions(instructions: Mapping[str, Any], loaded: set[str]) -> dict[str, int]:
    """:func:`skipped_instructions` of the synthetic instructions (``items_ins_v2.json``, by ASIN)."""
    named = (a for a, e in instructions.items() if isinstance(e, dict) and e.get("instruction") is not None)
    return skipped_instructions(named, loaded)


def human_instructions(sources: dict[str, Path], rows: Iterable[dict]) -> tuple[Path, dict] | None:
    """Where the human instructions are and asin -> instructions: ``items_human_ins.json``, else
    the instructions the processed layout carries per product; None when there are none."""
    if "human" in sources:
        by_asin = _read_json(sources["human"])
        if not isinstance(by_asin, dict):
            raise DataError(sources["human"], "expected a JSON object keyed by ASIN")
        return sources["human"], by_asin
    by_asin = {r["asin"]: r["instructions"] for r in rows if r.get("instructions")}
    return (sources["products"].parent / HUMAN_FILE, by_asin) if by_asin else None


def _split_paths(split_files: Any) -> dict[str, str]:
    """The ``split_files`` option checked: split name -> file, both strings."""
    if not isinstance(split_files, dict):
        raise EefError(f"split_files: expected a mapping {{split: file}}, got {split_files!r}")
    for name, path in split_files.items():
        if not isinstance(name, str) or not isinstance(path, (str, Path)):
            hint = " (YAML needs a space after the colon: {train: FILE})" if path is None and ":" in str(name) else ""
            raise EefError(f"split_files: split {name!r} names no file, got {path!r}{hint}")
    return split_files


def _read_index_file(path: Path, n_goals: int) -> list[int]:
    indices = _read_json(path)
    if not isinstance(indices, list):
        raise DataError(path, "expected a JSON list of goal indices")
    for i, value in enumerate(indices):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n_goals:
            raise DataError(path, f"goal index must be an integer in 0..{n_goals - 1}, got {value!r}", field=f"[{i}]")
    return list(dict.fromkeys(indices))  # a repeat keeps its first place (ETO's train list holds 4116 twice)
