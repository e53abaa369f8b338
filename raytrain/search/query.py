"""``raytrain search`` / ``embed-text``: text queries against an index.

Exact search scores blocks of queries against every clip with the sharded evaluation's block loop
(``raytrain.eval.sharded._blocks``: memory ``block x clips``) and keeps each block's top k; FAISS
(``--faiss``, the ``[search]`` extra) is the approximate option for large corpora."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from raytrain.search import index_files as files


def embed_queries(loaded, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Normalised text embeddings ``(len(texts), D)`` float32, as evaluation embeds captions."""
    from raytrain.eval.retrieval import embed_texts
    from raytrain.model.clip_video import get_tokenizer

    tokenizer = get_tokenizer(loaded.cfg.model.arch, loaded.cfg.data.max_words)
    return embed_texts(loaded.model.eval(), tokenizer, list(texts), batch_size, torch.device("cpu")).numpy()


def exact_top_k(queries: np.ndarray, clips: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, indices)`` of the ``k`` best clips per query, best first (dot product, exact)."""
    from raytrain.eval.sharded import _blocks

    q = torch.tensor(np.asarray(queries), dtype=torch.float32)
    c = torch.tensor(np.asarray(clips), dtype=torch.float32)
    k = min(k, c.shape[0])
    scores, indices = [], []
    for _, s in _blocks(lambda a, b: q[a:b] @ c.T, q.shape[0], block):
        top = torch.topk(torch.from_numpy(s), k, dim=1)  # ties: the lower clip index first is not promised
        scores.append(top.values.numpy())
        indices.append(top.indices.numpy())
    if not scores:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(scores), np.concatenate(indices)


def faiss_index(clips: np.ndarray, kind: str = "hnsw", nlist: int | None = None):
    """An approximate inner-product FAISS index over ``clips``: ``hnsw`` (HNSW32) or ``ivf`` (IVF-Flat)."""
    try:
        import faiss
    except ImportError as exc:
        raise ValueError("FAISS search needs faiss-cpu: pip install 'raytrain[search]'") from exc
    clips = np.ascontiguousarray(clips, dtype=np.float32)
    dim = clips.shape[1]
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 64
    elif kind == "ivf":
        nlist = nlist or max(1, int(np.sqrt(len(clips))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).permutation(len(clips))[:64 * nlist]  # k-means on a sample
        index.train(clips[np.sort(sample)])
        index.nprobe = max(1, nlist // 20)
    else:
        raise ValueError(f"unknown FAISS index kind '{kind}' (hnsw or ivf)")
    index.add(clips)
    return index


def faiss_top_k(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, indices


def recall_at(approx: np.ndarray, exact: np.ndarray) -> float:
    """The share of the exact top-k that the approximate top-k also returns (recall@k vs exact)."""
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact))
    return hits / max(1, exact.size)


def search(index_dir: str, texts: Sequence[str], k: int = 10, use_faiss: str | None = None,
           checkpoint: str | None = None) -> list[list[dict]]:
    """Each query's top ``k`` clips as dicts (rank, score, video_id, path, segment, captions)."""
    from raytrain.search.model import load_index_model

    loaded = load_index_model(files.read_identity(index_dir), checkpoint)
    table = files.read_index(index_dir, ["key", "video_id", "path", "start_s", "end_s", "captions", "embedding"])
    clips = files.embedding_matrix(table)
    queries = embed_queries(loaded, texts)
    if use_faiss:
        scores, indices = faiss_top_k(faiss_index(clips, use_faiss), queries, min(k, len(clips)))
    else:
        scores, indices = exact_top_k(queries, clips, k)
    meta = table.drop(["embedding"]).to_pylist()
    return [[{"rank": r + 1, "score": float(s), **meta[int(i)]} for r, (s, i) in enumerate(zip(srow, irow)) if i >= 0]
            for srow, irow in zip(scores, indices)]


def write_text_embeddings(file: str, checkpoint: str, out: str, overrides: Sequence[str] = ()) -> str:
    """``raytrain embed-text``: each non-empty line of ``file`` → a Parquet row (text, embedding)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raytrain.search.model import load_search_model

    texts = [line.strip() for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip()]
    loaded = load_search_model(checkpoint, list(overrides))
    emb = embed_queries(loaded, texts)
    table = pa.table({"text": texts, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), emb.shape[1])})
    table = table.replace_schema_metadata({"raytrain": f'{{"checkpoint": "{loaded.checkpoint}", '
                                                      f'"weights_sha256": "{loaded.weights_hash}"}}'})
    pq.write_table(table, out)
    return out
