"""A synthetic WebShop release of any size, written in the original files' format.

WebShop's full release (1.18M products; ``items_shuffle.json`` is 5.2 GB) is only on Google
Drive, so what loads and serves it is measured on a stand-in: :func:`write_synthetic_release`
writes ``items_shuffle.json``, ``items_ins_v2.json`` and ``items_human_ins.json`` with the
original's fields, sizes per product (about 4.4 kB) and skewed word frequencies (stop words and a
Zipf-distributed vocabulary, so common terms have long posting lists as in real product text),
the same under the same seed. The text is gibberish built from syllables; only its shape is real.
What is assumed where the original's numbers are unknown here is in docs/data.md.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eef.envs.shop.search import LUCENE_STOP_WORDS

_SYLLABLES = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"] + ["ch", "sh", "th", "qu", "ly", "er", "on", "an"]
_CATEGORIES = ("beauty", "electronics", "fashion", "food", "garden")
_WORDS_PER_PRODUCT = 640  # title, description, bullets, options and attributes are cut from these
_OPTION_NAMES = ("color", "size", "style", "pattern name", "flavor name", "item package quantity")


@dataclass(frozen=True)
class ReleaseShape:
    """Sizes of a synthetic release.

    Attributes:
        products: products in ``items_shuffle.json`` (the full release has about 1.18M).
        vocabulary: distinct words besides the stop words.
        instructed_share: share of products with a synthetic instruction in ``items_ins_v2.json``.
        human_products: products with human instructions (1 to 3 each; the release has 12,087 in all).
        seed: every draw depends on it alone.
    """

    products: int = 1_180_000
    vocabulary: int = 300_000
    instructed_share: float = 0.01
    human_products: int = 7_000
    seed: int = 0


def write_synthetic_release(
    out_dir: str | Path, shape: ReleaseShape = ReleaseShape(), on_product: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Write the release's three files into ``out_dir``; returns their sizes in bytes and the counts.

    ``on_product`` hears how many products have been written (every 10,000).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(shape.seed)
    draws = np.random.default_rng(shape.seed)
    words = _vocabulary(shape.vocabulary, rng)
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    cumulative = np.cumsum(1.0 / (ranks + 2.7) ** 1.05)  # Zipf-Mandelbrot: a few very common words
    cumulative /= cumulative[-1]
    queries = [" ".join(rng.choice(words[50:5000]) for _ in range(rng.randint(1, 3))) for _ in range(2000)]
    breadcrumbs = [
        " › ".join(rng.choice(words[20:3000]).title() for _ in range(rng.randint(2, 5))) for _ in range(3000)
    ]
    asins = _asins(shape.products, rng)
    human = set(rng.sample(range(shape.products), min(shape.human_products, shape.products)))
    instructions: dict[str, dict] = {}
    human_instructions: dict[str, list[dict]] = {}
    batch = 10_000
    with open(out / "items_shuffle.json", "w", encoding="utf-8") as f:
        f.write("[")
        for first in range(0, shape.products, batch):
            count = min(batch, shape.products - first)
            ids = np.searchsorted(cumulative, draws.random(count * _WORDS_PER_PRODUCT)).tolist()
            for k in range(count):
                number = first + k
                text = [words[i] for i in ids[k * _WORDS_PER_PRODUCT : (k + 1) * _WORDS_PER_PRODUCT]]
                product = _product(asins[number], text, rng, queries, breadcrumbs)
                f.write(("" if number == 0 else ", ") + json.dumps(product, ensure_ascii=False))
                attributes = [
                    " ".join(text[j : j + rng.randint(1, 3)]) for j in range(600, 600 + 8 * rng.randint(1, 4), 8)
                ]
                entry: dict = {"attributes": attributes}
                if rng.random() < shape.instructed_share:
                    entry["instruction"] = _instruction(text, rng)
                    entry["instruction_attributes"] = attributes[:2]
                instructions[product["asin"]] = entry
                if number in human:
                    human_instructions[product["asin"]] = [
                        _human_instruction(product, text, attributes, rng) for _ in range(rng.choice((1, 1, 2, 2, 3)))
                    ]
            if on_product is not None:
                on_product(first + count)
        f.write("]")
    (out / "items_ins_v2.json").write_text(json.dumps(instructions), encoding="utf-8")
    (out / "items_human_ins.json").write_text(json.dumps(human_instructions), encoding="utf-8")
    sizes = {
        name: (out / name).stat().st_size
        for name in ("items_shuffle.json", "items_ins_v2.json", "items_human_ins.json")
    }
    return {
        **sizes,
        "products": shape.products,
        "instructed": sum("instruction" in e for e in instructions.values()),
        "human_instructions": sum(len(v) for v in human_instructions.values()),
    }


def _vocabulary(size: int, rng: random.Random) -> list[str]:
    words = sorted(LUCENE_STOP_WORDS)
    rng.shuffle(words)
    seen = set(words)
    while len(words) < size + len(LUCENE_STOP_WORDS):
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _asins(n: int, rng: random.Random) -> list[str]:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    numbers = rng.sample(range(36**8), n)
    asins = []
    for value in numbers:
        digits = []
        for _ in range(8):
            value, digit = divmod(value, 36)
            digits.append(alphabet[digit])
        asins.append("B0" + "".join(digits))
    return asins


def _product(asin: str, text: list[str], rng: random.Random, queries: list[str], breadcrumbs: list[str]) -> dict:
    title = " ".join(text[: rng.randint(8, 22)]).title()
    description = " ".join(text[22 : 22 + rng.randint(0, 200)]).capitalize()
    bullets = [" ".join(text[430 + 20 * j : 450 + 20 * j]).capitalize() for j in range(rng.randint(0, 6))]
    low = round(rng.lognormvariate(3.3, 1.1), 2)
    pricing = f"${low:.2f}" if rng.random() < 0.9 else f"${low:.2f} - ${low * rng.uniform(1.1, 3):.2f}"
    options = {}
    for name in rng.sample(_OPTION_NAMES, rng.choice((0, 0, 0, 1, 1, 2, 3))):
        values = dict.fromkeys(" ".join(text[560 + rng.randint(0, 40) :][:2]) for _ in range(rng.randint(2, 8)))
        options[name] = [{"value": v, "image": _image(rng)} for v in values]
    return {
        "asin": asin,
        "name": title,
        "full_description": description,
        "small_description": bullets,
        "pricing": pricing,
        "images": [_image(rng) for _ in range(rng.randint(15, 45))],
        "product_category": rng.choice(breadcrumbs),
        "average_rating": f"{rng.uniform(3, 5):.1f} out of 5 stars",
        "model": text[5],
        "customization_options": options or "",
        "category": rng.choice(_CATEGORIES),
        "query": rng.choice(queries),
        "page": rng.randint(1, 10),
        "product_information": {"Manufacturer": text[3].title(), "ASIN": asin, "Item model number": text[7]},
    }


def _image(rng: random.Random) -> str:
    return f"https://m.media-amazon.com/images/I/{rng.getrandbits(64):016x}._AC_SR38,50_.jpg"


def _instruction(text: list[str], rng: random.Random) -> str:
    return f"i want {' '.join(text[: rng.randint(2, 5)])}"


def _human_instruction(product: dict, text: list[str], attributes: list[str], rng: random.Random) -> dict:
    values = [o["value"] for group in (product["customization_options"] or {}).values() for o in group[:1]]
    wanted = " ".join(text[rng.randint(0, 4) : rng.randint(5, 9)])
    return {
        "asin": product["asin"],
        "instruction": f"i'm looking for {wanted} that is {attributes[0]}" + (f", {values[0]}" if values else "") + ".",
        "instruction_attributes": attributes[:2],
        "instruction_options": values[:2],
    }
