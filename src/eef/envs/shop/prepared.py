"""WebShop's data prepared once into files that every later process opens in seconds.

WebShop's full release (1.18M products in a 5 GB JSON list) takes minutes to parse and index,
too long to repeat in every process that steps the environment. :func:`prepare_webshop` reads
the release once, product by product, and writes beside it (``<data_dir>/eef-prepared`` unless
told otherwise):

* ``products.jsonl`` (one product per line, in load order) and ``products.offsets.npy`` (where
  each line starts): a product is read when a page or the reward needs it;
* ``prices.npy``: each product's price, or the low and high end of its range (drawn at open,
  under the run's seed, as WebShop draws them at load);
* ``asins.npy`` and ``asins.order.npy``: the sorted ASINs and their product numbers;
* ``search.*``: the BM25 index (:mod:`eef.envs.shop.search`);
* ``goals.synthetic.jsonl`` and ``goals.human.jsonl``: each product's goals before their price limits;
* ``manifest.json``: the format, counts, and the size and modification time of each source
  file, so a preparation older than its data is refused rather than read.

The arrays are mapped into memory, so forked rollout workers share one copy. The preparation is
written to a temporary directory and renamed into place when complete, under a lock, so a crash
or a second process never leaves or reads a half-written one. :func:`open_prepared` gives the
same products, goals, search results and rewards as :func:`eef.envs.shop.webshop_data.load_webshop`
on the same data and seed.
"""

from __future__ import annotations

import fcntl
import json
import math
import mmap
import os
import random
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, overload

import numpy as np

from eef.envs.shop.catalog import Catalog, Product
from eef.envs.shop.nouns import fallback_tagger, shipped_table, tagger_name
from eef.envs.shop.search import IndexBuilder, SearchIndex
from eef.envs.shop.webshop_data import (
    GOAL_KINDS,
    GOAL_SHUFFLE_SEED,
    HUMAN_FILE,
    SKIPPED_ABSENT,
    GoalDraft,
    draw_prices,
    human_drafts,
    human_instructions,
    load_product_rows,
    make_goals,
    product_fields,
    read_instructions,
    shuffle_and_split,
    skipped_synthetic_instructions,
    source_files,
    synthetic_drafts,
)
from eef.errors import DataError
from eef.jsonl import json_line
from eef.progress import progress_bar

PREPARED_FORMAT = 1
DEFAULT_DIRNAME = "eef-prepared"
_PRODUCT_CACHE = 4096  # products kept decoded: a page shows 10, an episode opens a few


def default_prepared_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / DEFAULT_DIRNAME


def prepare_webshop(
    data_dir: str | Path, out: str | Path | None = None, *, force: bool = False, progress: bool = True
) -> Path:
    """Prepare ``data_dir`` into ``out`` (default ``<data_dir>/eef-prepared``); returns ``out``.

    An existing preparation of the same files is kept (returned as is) unless ``force``; one of
    older files is replaced. Two processes preparing at once: the second waits and uses the first's.

    Raises:
        DataError: a missing, cut or malformed source file (file, line and field named), or an
            output directory that cannot be written.
    """
    data_dir = Path(data_dir)
    out = Path(out) if out is not None else default_prepared_dir(data_dir)
    sources = source_files(data_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = open(out.parent / f".{out.name}.lock", "a+b")  # noqa: SIM115 (closed by the with below)
    except OSError as e:
        raise DataError(
            out,
            f"cannot write the preparation here ({e.strerror}); name another directory "
            "(eef env prepare --out DIR, then the env option prepared_dir=DIR)",
        ) from None
    with lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the first's preparation
        if not force and stale_source(out, sources) is None:
            return out
        temporary = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        try:
            temporary.mkdir()
            _write_preparation(sources, temporary, progress)
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                out.rename(old)
                temporary.rename(out)
                shutil.rmtree(old)
            else:
                temporary.rename(out)
        except OSError as e:
            raise DataError(out, f"cannot write the preparation ({e.strerror})") from None
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return out


def _write_preparation(sources: dict[str, Path], out: Path, progress: bool) -> None:
    started = time.monotonic()
    instructions, ins_path = read_instructions(sources), sources["instructions"]
    builder = IndexBuilder()
    offsets, prices, asins = [0], [], []
    synthetic_lines, human_rows = [], []
    products_path = sources["products"]
    bar = progress_bar(max(1, products_path.stat().st_size >> 20), f"preparing {products_path.name}", "MB", progress)
    with open(out / "products.jsonl", "wb") as products_file, bar:

        def show_read(chars: int) -> None:
            bar.update((chars >> 20) - bar.n)

        rows = load_product_rows(sources, instructions, on_read=show_read)
        for number, row in enumerate(rows):
            fields = product_fields(row)
            line = json_line(fields, products_file.name, number + 1).encode("utf-8")
            products_file.write(line)
            offsets.append(offsets[-1] + len(line))
            pricing = row["pricing"]
            prices.append((pricing[0], pricing[1] if len(pricing) == 2 else math.nan))
            asins.append(row["asin"])
            builder.add(fields["search_text"])
            drafts = synthetic_drafts(row["asin"], row["options"], instructions.get(row["asin"]), ins_path)
            if drafts is not None:
                synthetic_lines.append(_drafts_line(number, drafts))
            if row.get("instructions"):
                human_rows.append(row)
    if not asins:
        raise DataError(products_path, "holds no products")
    human_lines, skipped = _human_lines(sources, asins, human_rows)
    np.save(out / "products.offsets.npy", np.array(offsets, dtype=np.int64))
    np.save(out / "prices.npy", np.array(prices, dtype=np.float64))
    order = np.argsort(np.array(asins), kind="stable")
    np.save(out / "asins.npy", np.array(asins)[order])
    np.save(out / "asins.order.npy", order.astype(np.int64))
    builder.build().save(out)
    (out / "goals.synthetic.jsonl").write_text("".join(synthetic_lines), encoding="utf-8")
    (out / "goals.human.jsonl").write_text("".join(human_lines or ()), encoding="utf-8")
    manifest = {
        "format": PREPARED_FORMAT,
        "sources": {name: _stat(path) for name, path in sources.items()},
        "products": len(asins),
        "goal_products": {
            "synthetic": len(synthetic_lines),
            "human": None if human_lines is None else len(human_lines),
        },
        "skipped_human_instructions": skipped,
        "skipped_synthetic_instructions": skipped_synthetic_instructions(instructions, set(asins)),
        "prepare_seconds": round(time.monotonic() - started, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _drafts_line(number: int, drafts: list[GoalDraft]) -> str:
    return json.dumps({"product": number, "drafts": [list(d) for d in drafts]}, ensure_ascii=False) + "\n"


def _human_lines(
    sources: dict[str, Path], asins: list[str], rows: list[dict]
) -> tuple[list[str] | None, dict[str, int]]:
    """Human goal drafts per product in product order (None without human instructions), and
    the instructions skipped because they name no loaded product."""
    human = human_instructions(sources, rows)
    if human is None:
        return None, {}
    human_path, by_asin = human
    lines = []
    for number, asin in enumerate(asins):
        if asin in by_asin:
            drafts = human_drafts(asin, by_asin[asin], human_path)
            if drafts:
                lines.append(_drafts_line(number, drafts))
    loaded = set(asins)
    missing = sum(len(v) if isinstance(v, list) else 1 for a, v in by_asin.items() if a not in loaded)
    return lines, ({SKIPPED_ABSENT: missing} if missing else {})


def _stat(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def stale_source(prepared: Path, sources: dict[str, Path]) -> str | None:
    """Why ``prepared`` does not hold a preparation of ``sources`` now (None when it does)."""
    manifest_path = prepared / "manifest.json"
    if not manifest_path.is_file():
        return "not prepared"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"its manifest cannot be read ({e})"
    if not isinstance(manifest, dict) or manifest.get("format") != PREPARED_FORMAT:
        return f"prepared in another format (eef's is {PREPARED_FORMAT})"
    recorded = manifest.get("sources", {})
    for name, path in sources.items():
        if recorded.get(name) != _stat(path):
            return f"{path} changed since it was prepared (size or modification time differ)"
    if set(recorded) - set(sources):
        return f"{', '.join(sorted(set(recorded) - set(sources)))} no longer in the data directory"
    return None


def open_prepared(
    prepared: str | Path,
    data_dir: str | Path,
    *,
    goals: str = "synthetic",
    seed: int = 0,
    split_files: dict[str, str] | None = None,
    nouns: str = "auto",
) -> Catalog:
    """The catalog of a preparation of ``data_dir`` (arguments as :func:`load_webshop`'s).

    Raises:
        DataError: the preparation is missing, damaged or older than the data (prepare again).
    """
    if goals not in GOAL_KINDS:
        raise ValueError(f"unknown goal kind {goals!r}; known: {', '.join(GOAL_KINDS)}")
    prepared, data_dir = Path(prepared), Path(data_dir)
    why = stale_source(prepared, source_files(data_dir))
    if why is not None:
        raise DataError(
            prepared,
            f"cannot be used: {why}; prepare it again: eef env prepare webshop -o data_dir={data_dir} --force",
        )
    manifest = json.loads((prepared / "manifest.json").read_text(encoding="utf-8"))
    if goals == "human" and manifest["goal_products"]["human"] is None:
        raise DataError(data_dir / HUMAN_FILE, "missing: human goals need items_human_ins.json")
    try:
        ranges = np.load(prepared / "prices.npy")
        rng = random.Random(seed)
        pricings = [[low] if math.isnan(high) else [low, high] for low, high in ranges.tolist()]
        products = PreparedProducts(prepared, draw_prices(pricings, rng), nouns)
        by_asin = PreparedAsins(prepared, products)
        index = SearchIndex.load(prepared)
        drafts = [
            (products.price(d["product"]), [_draft(x) for x in d["drafts"]]) for d in _read_lines(prepared, goals)
        ]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(prepared, f"damaged preparation ({e}); prepare it again with --force") from None
    goal_list = make_goals(drafts, goals, rng)
    splits = shuffle_and_split(goal_list, split_files)
    info = {
        "source": str(data_dir / manifest["sources"]["products"]["path"]),
        "prepared": str(prepared),
        "goals": goals,
        "seed": seed,
        "products": len(products),
        "title_nouns": products.taggers,
        "goal_shuffle_seed": GOAL_SHUFFLE_SEED,
    }
    skipped = manifest.get(f"skipped_{goals}_instructions")  # preparations before it counted human ones only
    if skipped is not None:
        info[f"skipped_{goals}_instructions"] = skipped
    return Catalog(products, goal_list, splits, prefix="webshop", info=info, by_asin=by_asin, index=index)


def _read_lines(prepared: Path, goals: str) -> Iterator[dict]:
    with open(prepared / f"goals.{goals}.jsonl", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _draft(stored: list) -> GoalDraft:
    asin, text, attributes, options = stored
    return asin, text, tuple(attributes), tuple(tuple(o) if isinstance(o, list) else o for o in options)


class PreparedProducts(Sequence[Product]):
    """The products of a preparation, each read from its line when asked for (a few kept decoded)."""

    def __init__(self, prepared: Path, prices: list[float], nouns: str) -> None:
        self._offsets = np.load(prepared / "products.offsets.npy", mmap_mode="r")
        with open(prepared / "products.jsonl", "rb") as f:
            self._lines = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._prices = prices
        table, table_name = shipped_table() if nouns != "heuristic" else ({}, "")
        tagger = fallback_tagger(nouns)
        self._table, self._tagger = table, tagger
        self.taggers = [name for name in (table_name, tagger_name(tagger)) if name]
        self._product = lru_cache(maxsize=_PRODUCT_CACHE)(self._read)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, number: int) -> Product: ...

    @overload
    def __getitem__(self, number: slice) -> Sequence[Product]: ...

    def __getitem__(self, number: int | slice) -> Product | Sequence[Product]:
        if isinstance(number, slice):
            return [self[i] for i in range(*number.indices(len(self)))]
        if not -len(self) <= number < len(self):
            raise IndexError(f"product {number} of {len(self)}")
        return self._product(number % len(self))

    def price(self, number: int) -> float:
        return self._prices[number]

    def _read(self, number: int) -> Product:
        fields = json.loads(self._lines[self._offsets[number] : self._offsets[number + 1]])
        asin = fields["asin"]
        nouns = self._table.get(asin)
        if nouns is None:
            nouns = self._tagger([fields["title"]])[0]
        return Product(**fields, price=self.price(number), title_nouns=nouns)


class PreparedAsins(Mapping[str, Product]):
    """ASIN -> product over a preparation's sorted ASINs (a binary search, nothing built at start)."""

    def __init__(self, prepared: Path, products: PreparedProducts) -> None:
        self._sorted = np.load(prepared / "asins.npy", mmap_mode="r")
        self._order = np.load(prepared / "asins.order.npy", mmap_mode="r")
        self._products = products

    def __getitem__(self, asin: str) -> Product:
        at = int(np.searchsorted(self._sorted, asin))
        if at == len(self._sorted) or self._sorted[at] != asin:
            raise KeyError(asin)
        return self._products[int(self._order[at])]

    def __iter__(self) -> Iterator[str]:
        return (str(a) for a in self._sorted)

    def __len__(self) -> int:
        return len(self._sorted)
