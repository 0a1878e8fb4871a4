"""BM25 product search with the settings of WebShop's Lucene index.

WebShop searches with pyserini's ``LuceneSearcher`` (BM25, k1 0.9, b 0.4) over an index of
``contents`` = lowercase(title + description + first bullet + option text). We analyse text as
Lucene's English analyzer does (standard tokens, possessive removal, lowercase, Lucene's 33 stop
words, Porter stemming) and score with Lucene's BM25 formula, each term's weight in a document
precomputed in float32 as ``bm25s``'s Lucene variant computes it (so rankings equal that
library's). Differences from Lucene that remain: Lucene stores document lengths in one byte
(lossy); we use exact lengths, so near-ties can order differently. Ties go to the lower document
number, as in Lucene.

The index is a term-by-document sparse matrix (CSC arrays) built one document at a time, so a
catalog of a million products is indexed without holding its text, and saved as ``.npy`` files
that later processes map into memory instead of rebuilding.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

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
BACKEND = "bm25-lucene(k1=0.9,b=0.4,porter,lucene-stopwords,float32)"
_ARRAYS = ("weights", "docs", "starts")


class Analyzer:
    """Text -> index terms, the same for documents and queries."""

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("porter")
        self._stems: dict[str, str] = {}  # word -> stem: a catalog repeats its words millions of times

    def __call__(self, text: str) -> list[str]:
        lowered = text.lower()
        if "'" in lowered:
            words = []
            for word in _TOKEN.findall(lowered):
                token = (word[:-2] if word.endswith("'s") else word).replace("'", "")
                if token and token not in LUCENE_STOP_WORDS:
                    words.append(token)
        else:  # most text: no possessives or apostrophes to undo
            words = [word for word in _TOKEN.findall(lowered) if word not in LUCENE_STOP_WORDS]
        stems = self._stems
        unknown = set(words).difference(stems)
        if unknown:
            if len(stems) > 2_000_000:  # bound the cache on endless vocabularies
                stems.clear()
                unknown = set(words)
            stems.update(zip(unknown, self._stemmer.stemWords(list(unknown))))
        return [stem for stem in map(stems.__getitem__, words) if stem]  # Porter maps "s" to ""


class IndexBuilder:
    """Adds documents one at a time (in document-number order); :meth:`build` makes the index."""

    def __init__(self, *, k1: float = 0.9, b: float = 0.4) -> None:
        self.k1, self.b = k1, b
        self.analyzer = Analyzer()
        self._vocab: dict[str, int] = {}
        self._terms = array("i")  # term id of each (document, term) pair, document by document
        self._counts = array("i")  # the term's count in that document
        self._distinct = array("i")  # distinct terms per document
        self._lengths = array("q")  # terms per document (repeats included)

    def add(self, text: str) -> None:
        terms = self.analyzer(text)
        counts = Counter(terms)
        vocab = self._vocab
        for term in counts:  # ids in order of first use: the same files from the same data
            if term not in vocab:
                vocab[term] = len(vocab)
        self._terms.extend(map(vocab.__getitem__, counts))
        self._counts.extend(counts.values())
        self._distinct.append(len(counts))
        self._lengths.append(len(terms))

    def __len__(self) -> int:
        return len(self._lengths)

    def build(self) -> SearchIndex:
        n_docs, n_terms = len(self._lengths), len(self._vocab)
        terms = np.asarray(self._terms, dtype=np.int32)
        counts = np.asarray(self._counts, dtype=np.float64)
        lengths = np.asarray(self._lengths, dtype=np.int64)
        distinct = np.asarray(self._distinct, dtype=np.int32)
        doc_of_pair = np.repeat(np.arange(n_docs, dtype=np.int32), distinct)
        doc_freq = np.bincount(terms, minlength=n_terms)
        # idf as Lucene's, ln(1 + (N - df + 0.5) / (df + 0.5)), in double, then kept in float32
        idf = np.array([math.log(1 + (n_docs - df + 0.5) / (df + 0.5)) for df in doc_freq.tolist()], dtype=np.float32)
        mean_length = float(lengths.mean()) if n_docs else 1.0
        # As bm25s computes a weight (equal bits, so equal rankings): tf / (length part + tf) in
        # double, times the float32 idf, rounded to float32 once.
        length_part = self.k1 * ((1 - self.b) + self.b * lengths / mean_length)
        weights = (idf[terms].astype(np.float64) * (counts / (length_part[doc_of_pair] + counts))).astype(np.float32)
        order = np.argsort(terms, kind="stable")  # by term, then document: pairs arrive in document order
        starts = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(doc_freq, out=starts[1:])
        return SearchIndex(dict(self._vocab), weights[order], doc_of_pair[order], starts, n_docs)


class SearchIndex:
    """BM25 index over documents numbered 0..n-1: each term's documents and weights.

    >>> index = SearchIndex.of(["red cotton shirt", "blue cotton shirt", "desk lamp"])
    >>> index.search("cotton shirt")
    [0, 1]
    """

    def __init__(
        self, vocab: dict[str, int], weights: np.ndarray, docs: np.ndarray, starts: np.ndarray, n_docs: int
    ) -> None:
        self.vocab, self.weights, self.docs, self.starts, self.n_docs = vocab, weights, docs, starts, n_docs
        self.analyzer = Analyzer()

    @classmethod
    def of(cls, documents: Iterable[str], *, k1: float = 0.9, b: float = 0.4) -> SearchIndex:
        """The index of ``documents`` (in document-number order)."""
        builder = IndexBuilder(k1=k1, b=b)
        for text in documents:
            builder.add(text)
        return builder.build()

    def save(self, directory: Path) -> None:
        """Write the index as ``search.*`` files in ``directory`` (arrays as ``.npy``)."""
        for name in _ARRAYS:
            np.save(directory / f"search.{name}.npy", getattr(self, name))
        meta = {"backend": BACKEND, "documents": self.n_docs, "vocab": self.vocab}
        (directory / "search.vocab.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> SearchIndex:
        """The index :meth:`save` wrote, its arrays mapped into memory (shared by every process)."""
        meta = json.loads((directory / "search.vocab.json").read_text(encoding="utf-8"))
        weights, docs, starts = (np.load(directory / f"search.{name}.npy", mmap_mode="r") for name in _ARRAYS)
        return cls(meta["vocab"], weights, docs, starts, meta["documents"])

    def search(self, query: str, limit: int = 50) -> list[int]:
        """Document numbers of the top ``limit`` hits (score > 0), best first, ties by number."""
        ids = [self.vocab[t] for t in self.analyzer(query) if t in self.vocab]
        if not ids or self.n_docs == 0:
            return []
        scores = np.zeros(self.n_docs, dtype=np.float32)
        for term in ids:  # a repeated query term counts again, as in bm25s
            start, end = self.starts[term], self.starts[term + 1]
            scores[self.docs[start:end]] += self.weights[start:end]  # a term's documents are distinct
        hits = np.flatnonzero(scores > 0)
        if len(hits) > 4 * limit:
            # Keep every hit that ties with the limit-th best so the tie-break below stays exact.
            cutoff = np.partition(scores[hits], len(hits) - limit)[len(hits) - limit]
            hits = hits[scores[hits] >= cutoff]
        order = np.lexsort((hits, -scores[hits]))
        return hits[order][:limit].tolist()
