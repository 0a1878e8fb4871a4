"""BM25 product search with the settings of WebShop's Lucene index.

WebShop searches with pyserini's ``LuceneSearcher`` (BM25, k1 0.9, b 0.4) over an index of
``contents`` = lowercase(title + description + first bullet + option text). We analyse text as
Lucene's English analyzer does (standard tokens, possessive removal, lowercase, Lucene's 33 stop
words, Porter stemming) and score with ``bm25s``'s Lucene variant. Differences that remain:
Lucene stores document lengths in one byte (lossy); we use exact lengths, so near-ties can order
differently. Ties go to the lower document number, as in Lucene.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import bm25s
import numpy as np
import Stemmer

# Lucene's EnglishAnalyzer stop set.
LUCENE_STOP_WORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    )
)
# Words, numbers with inner dots or commas (4.25, 1,000) and inner apostrophes, like Lucene's
# standard tokenizer for the text WebShop holds.
_TOKEN = re.compile(r"\w+(?:[.,']\w+)*")
BACKEND = "bm25s-lucene(k1=0.9,b=0.4,porter,lucene-stopwords)"


class Analyzer:
    """Text -> index terms, the same for documents and queries."""

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("porter")

    def __call__(self, text: str) -> list[str]:
        tokens = []
        for word in _TOKEN.findall(text.lower()):
            token = (word[:-2] if word.endswith("'s") else word).replace("'", "")
            if token and token not in LUCENE_STOP_WORDS:
                tokens.append(token)
        return [stem for stem in self._stemmer.stemWords(tokens) if stem]  # Porter maps "s" to ""


class SearchIndex:
    """BM25 index over documents given in document-number order.

    >>> index = SearchIndex(["red cotton shirt", "blue cotton shirt", "desk lamp"])
    >>> index.search("cotton shirt")
    [0, 1]
    """

    def __init__(self, documents: Sequence[str], *, k1: float = 0.9, b: float = 0.4):
        self.analyzer = Analyzer()
        self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        self._bm25.index([self.analyzer(d) for d in documents], show_progress=False)
        self._n_docs = len(documents)

    def search(self, query: str, limit: int = 50) -> list[int]:
        """Document numbers of the top ``limit`` hits (score > 0), best first, ties by number."""
        terms = self.analyzer(query)
        if not terms or self._n_docs == 0:
            return []
        scores = self._bm25.get_scores(terms)
        hits = np.flatnonzero(scores > 0)
        if len(hits) > 4 * limit:
            # Keep every hit that ties with the limit-th best so the tie-break below stays exact.
            cutoff = np.partition(scores[hits], len(hits) - limit)[len(hits) - limit]
            hits = hits[scores[hits] >= cutoff]
        order = np.lexsort((hits, -scores[hits]))
        return hits[order][:limit].tolist()
