"""Noun tokens of product titles, for the type factor of WebShop's reward.

WebShop tags titles with spaCy (``en_core_web_sm`` upstream; ETO and AgentGym use
``en_core_web_lg``) and keeps NOUN/PROPN tokens. spaCy's models are not on PyPI, so eef ships
a table of the 1k products' title nouns computed once with ``en_core_web_sm`` 3.8.0
(``python -m eef.envs.shop.nouns PRODUCTS OUT`` with spaCy and a model installed rebuilds it).
Titles the table lacks are tagged with spaCy when it and a model are installed, and otherwise
with a lexical heuristic whose effect on the reward is measured in docs/shop.md. Each catalog
records which tagger it used.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path

NounTagger = Callable[[Sequence[str]], list[tuple[str, ...]]]
SHIPPED_TABLE = "webshop_1k_title_nouns.json"
NOUN_PREFERENCES = ("auto", "spacy", "heuristic")
_WORD = re.compile(r"\w+")
# spaCy's small English model tags most words of a title-cased product name as PROPN or NOUN;
# what it leaves out are mainly function words and numbers, which the heuristic drops too.
_FUNCTION_WORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "or",
        "of",
        "for",
        "with",
        "without",
        "to",
        "in",
        "on",
        "at",
        "by",
        "from",
        "the",
        "this",
        "that",
        "these",
        "those",
        "is",
        "are",
        "be",
        "it",
        "its",
        "as",
        "into",
        "up",
        "out",
        "over",
        "under",
        "your",
        "you",
        "our",
        "my",
        "their",
        "not",
        "no",
        "nor",
        "but",
        "so",
        "if",
        "all",
        "each",
    )
)


def heuristic_nouns(titles: Sequence[str]) -> list[tuple[str, ...]]:
    """Title words that contain a letter, minus function words (possessive 's dropped)."""
    return [
        tuple(
            w
            for w in _WORD.findall(t.lower().replace("'s ", " "))
            if w not in _FUNCTION_WORDS and any(c.isalpha() for c in w)
        )
        for t in titles
    ]


def spacy_tagger(model: str = "en_core_web_sm") -> NounTagger:
    """A tagger backed by a spaCy model name or path (raises ImportError/OSError if unavailable)."""
    import spacy

    nlp = spacy.load(model, disable=["parser", "ner", "lemmatizer"])

    def tag(titles: Sequence[str]) -> list[tuple[str, ...]]:
        return [
            tuple(t.text.lower() for t in doc if t.pos_ in ("PNOUN", "NOUN", "PROPN"))
            for doc in nlp.pipe(titles, batch_size=256)
        ]

    meta = nlp.meta
    tag.description = f"spacy-{spacy.__version__}:{meta['lang']}_{meta['name']}-{meta['version']}"  # type: ignore[attr-defined]
    return tag


def shipped_table() -> tuple[dict[str, tuple[str, ...]], str]:
    """The noun table shipped for the 1k products: asin -> nouns, and its tagger description."""
    data = json.loads(resources.files(__package__).joinpath("data").joinpath(SHIPPED_TABLE).read_text("utf-8"))
    return {asin: tuple(n) for asin, n in data["nouns"].items()}, data["tagger"]


def fallback_tagger(preference: str = "auto") -> NounTagger:
    """spaCy when ``preference`` is ``auto`` and spaCy with ``en_core_web_sm`` loads, else the heuristic."""
    if preference in ("auto", "spacy"):
        try:
            return spacy_tagger()
        except (ImportError, OSError):
            if preference == "spacy":
                raise
    return heuristic_nouns


def tagger_name(tagger: NounTagger) -> str:
    return getattr(tagger, "description", "heuristic")


def title_nouns(
    asins_titles: Iterable[tuple[str, str]], preference: str = "auto"
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Nouns of each title: from the shipped table, else from a fallback tagger.

    Args:
        asins_titles: (asin, title) pairs.
        preference: ``auto`` (table, then spaCy, then heuristic), ``spacy`` or ``heuristic``
            (for titles the table lacks; ``heuristic`` also ignores the table).

    Returns:
        The noun map and the names of the taggers used (for the run record).
    """
    if preference not in NOUN_PREFERENCES:
        raise ValueError(f"unknown nouns option {preference!r}; known: {', '.join(NOUN_PREFERENCES)}")
    pairs = list(asins_titles)
    table, table_name = shipped_table() if preference != "heuristic" else ({}, "")
    nouns = {a: table[a] for a, _ in pairs if a in table}
    used = [table_name] if nouns else []
    missing = [(a, t) for a, t in pairs if a not in nouns]
    if missing:
        tagger = fallback_tagger(preference)
        nouns.update(zip((a for a, _ in missing), tagger([t for _, t in missing])))
        used.append(tagger_name(tagger))
    return nouns, used


def _build_table(products_path: str, out_path: str, model: str = "en_core_web_sm") -> None:
    opener = gzip.open if products_path.endswith(".gz") else open
    with opener(products_path, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    tag = spacy_tagger(model)
    nouns = tag([r["name"] for r in records])
    table = {"tagger": tagger_name(tag), "nouns": {r["asin"]: list(n) for r, n in zip(records, nouns)}}
    Path(out_path).write_text(json.dumps(table, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    _build_table(*sys.argv[1:])
