import random

import bm25s
import numpy as np

from eef.envs.shop.search import Analyzer, SearchIndex
from eef.envs.shop.webshop_data import load_webshop


def _bm25s_hits(reference, analyzer, query: str) -> list[int]:
    terms = analyzer(query)
    if not terms:
        return []
    scores = reference.get_scores(terms)
    hits = np.flatnonzero(scores > 0)
    return hits[np.lexsort((hits, -scores[hits]))][:50].tolist()


# bm25s computes a weight in double under numpy 2's promotion rules and in float32 under numpy 1's;
# ours is computed in double on both, so it equals bm25s's bits on numpy 2 and is within float32
# rounding of it on numpy 1.
NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


def test_weights_and_rankings_equal_bm25s_lucene(webshop_1k_dir, shop_env):
    analyzer = Analyzer()
    for texts in (
        [p.search_text for p in load_webshop(webshop_1k_dir).products],
        [p.search_text for p in shop_env.catalog.products],
    ):
        index = SearchIndex.of(texts)
        reference = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
        reference.index([analyzer(t) for t in texts], show_progress=False)
        for term, ours in index.vocab.items():
            theirs = reference.vocab_dict[term]
            a, b = index.starts[ours], index.starts[ours + 1]
            c, d = reference.scores["indptr"][theirs], reference.scores["indptr"][theirs + 1]
            assert index.docs[a:b].tolist() == reference.scores["indices"][c:d].tolist()
            if NUMPY_2:
                assert index.weights[a:b].tobytes() == reference.scores["data"][c:d].tobytes(), term  # the same bits
            else:
                np.testing.assert_allclose(index.weights[a:b], reference.scores["data"][c:d], rtol=5e-7, err_msg=term)
        if not NUMPY_2:
            return  # rankings on near-ties follow the last bit
        words = " ".join(texts).split()
        rng = random.Random(0)
        for _ in range(300):
            query = " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
            assert index.search(query) == _bm25s_hits(reference, analyzer, query)


def test_a_saved_index_loads_mapped_and_searches_alike(tmp_path, shop_env):
    index = shop_env.catalog.index
    index.save(tmp_path)
    loaded = SearchIndex.load(tmp_path)
    assert isinstance(loaded.weights, np.memmap)
    for goal in shop_env.catalog.goals[:200]:
        assert loaded.search(goal.instruction) == index.search(goal.instruction)


def test_an_empty_index_and_unknown_words_find_nothing():
    assert SearchIndex.of([]).search("shirt") == []
    assert SearchIndex.of(["red shirt"]).search("the lamp") == []
