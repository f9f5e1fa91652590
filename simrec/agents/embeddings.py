"""Item embeddings for memory relevance, all offline.

* ``tfidf``: TF-IDF of each item's genre tokens and text (titles, descriptions).
* ``items``: the statistical brain's latent item vectors (what the same users chose).
* ``default``: both, each L2-normalised and weighted 1/sqrt(2), so a cosine is the mean of
  the two cosines.
* ``sentence:MODEL``: a sentence-embedding model (the ``sentence-transformers`` package and a
  model already on disk: a path, or a name in the local Hugging Face cache; nothing is
  downloaded).

Relevance of a remembered item to a page is its highest cosine similarity with the page's
items, clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from simrec.data.dataset import Catalog
from simrec.errors import ConfigError

KINDS = ("default", "tfidf", "items")


class ItemEmbedding:
    """vectors: (n_items, d) CSR float32 with L2-normalised rows (zero rows for items with
    nothing to embed)."""

    def __init__(self, vectors: sp.csr_matrix, name: str) -> None:
        self.vectors = vectors.astype(np.float32).tocsr()
        self.name = name

    def relevance(self, remembered: np.ndarray, page: np.ndarray) -> np.ndarray:
        """remembered: (e,) item indices (-1: no item); page: (k,) item indices (-1: empty
        slot) -> (e,) float64 in [0, 1], the best cosine with any item on the page."""
        out = np.zeros(remembered.size)
        page = page[page >= 0]
        have = remembered >= 0
        if page.size == 0 or not have.any():
            return out
        sims = (self.vectors[remembered[have]] @ self.vectors[page].T).toarray()
        out[have] = np.clip(sims.max(axis=1), 0.0, 1.0)
        return out


def _normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    from sklearn.preprocessing import normalize

    return normalize(m.astype(np.float32).tocsr())


def tfidf_vectors(catalog: Catalog) -> sp.csr_matrix:
    """(n_items, vocabulary) L2-normalised TF-IDF of genre tokens and item text."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = catalog.documents()
    if not any(d.strip() for d in docs):
        return sp.csr_matrix((catalog.n_items, 1), dtype=np.float32)
    vec = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", sublinear_tf=True, dtype=np.float32)
    return _normalise(vec.fit_transform(docs))


def sentence_vectors(catalog: Catalog, model_name: str) -> sp.csr_matrix:
    """(n_items, d) embeddings of "title. genres. text" by a locally installed model."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ConfigError(
            f"memory.embedding: 'sentence:{model_name}' needs the sentence-transformers "
            "package (pip install sentence-transformers), which is not installed"
        ) from err
    try:
        model = SentenceTransformer(model_name, device="cpu", local_files_only=True)
    except Exception as err:  # noqa: BLE001 - any load failure is a configuration problem
        raise ConfigError(
            f"memory.embedding: cannot load sentence model {model_name!r} from disk "
            f"(nothing is downloaded): {err}"
        ) from err
    genres = catalog.genre_lists()
    texts = [
        ". ".join(p for p in (str(t), ", ".join(g), str(x)) if p)
        for t, g, x in zip(catalog.titles, genres, catalog.text, strict=True)
    ]
    dense = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return _normalise(sp.csr_matrix(np.asarray(dense, np.float32)))


def make_embedding(
    spec: str, catalog: Catalog, item_factors: np.ndarray | None = None
) -> ItemEmbedding:
    """The embedding named by ``spec`` (see the module docstring). item_factors: (n_items, d)
    latent vectors for ``items`` and ``default``."""
    if spec.startswith("sentence:"):
        name = spec.split(":", 1)[1]
        if not name:
            raise ConfigError("memory.embedding: expected sentence:MODEL, got 'sentence:'")
        return ItemEmbedding(sentence_vectors(catalog, name), spec)
    if spec not in KINDS:
        raise ConfigError(
            f"memory.embedding: expected one of {', '.join(KINDS)} or sentence:MODEL, got {spec!r}"
        )
    parts = []
    if spec in ("default", "tfidf"):
        parts.append(tfidf_vectors(catalog))
    if spec in ("default", "items"):
        if item_factors is None:
            raise ConfigError(f"memory.embedding: {spec!r} needs the brain's item vectors")
        parts.append(_normalise(sp.csr_matrix(np.asarray(item_factors, np.float32))))
    if len(parts) == 1:
        return ItemEmbedding(parts[0], spec)
    return ItemEmbedding(sp.hstack([p * np.float32(2**-0.5) for p in parts]).tocsr(), spec)
