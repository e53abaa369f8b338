"""FAISS recall@10 against exact search on a trained model's real embeddings (issue 20), beside
``bench/search_scale.py``'s random vectors: real clip embeddings are clustered (clips of the same
shape and colour sit together), which is what approximate indexes are built for.

Embeds every clip of ``--manifests`` (all splits: the gallery) and the test captions of the first
manifest (the queries) with ``--checkpoint`` in this process (eval frames, the run's decoder), then
compares IVF-Flat and HNSW32 (``raytrain.search.query.faiss_index``, the options ``raytrain search``
offers) with the exact top 10, and reports exact search's t2v R@1/R@5 over the first manifest's test
clips as a check that the embeddings are the model's.

    .venv/bin/python bench/search_recall_real.py --checkpoint RUN --manifests BENCH.parquet [CORPUS.parquet] \
        [--out bench/results/search_recall_real_cpu.txt]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def embed_clips(model, cfg, rows, batch: int = 32) -> np.ndarray:
    from raytrain.data.decode import make_decoder
    from raytrain.model.clip_video import model_image_size

    decoder, size = make_decoder(cfg.data.decoder), model_image_size(cfg.model.arch)
    out = []
    for i in range(0, len(rows), batch):
        frames = np.stack([decoder.decode(r.path, cfg.data.num_frames, size, False, None, r.start_s, r.end_s)
                           for r in rows[i:i + batch]])
        out.append(model.encode_video(torch.from_numpy(frames)).float().numpy())
    return np.concatenate(out)


@torch.no_grad()
def embed_captions(model, cfg, texts: list[str]) -> np.ndarray:
    from raytrain.eval.retrieval import embed_texts
    from raytrain.model.clip_video import get_tokenizer

    return embed_texts(model, get_tokenizer(cfg.model.arch, cfg.data.max_words), texts, 256, "cpu").numpy()


def main() -> None:
    import faiss

    from raytrain.data.manifest import load_manifest
    from raytrain.data.pipeline import eval_texts
    from raytrain.search.model import load_search_model
    from raytrain.search.query import exact_top_k, faiss_index, faiss_top_k, recall_at

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifests", nargs="+", required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    loaded = load_search_model(args.checkpoint)
    model, cfg = loaded.model, loaded.cfg
    t0 = time.time()
    rows = [r for m in args.manifests for r in load_manifest(m)]
    clips = embed_clips(model, cfg, rows)
    test = [i for i, r in enumerate(rows[:len(load_manifest(args.manifests[0]))]) if r.split == cfg.data.eval_split]
    texts, owner = eval_texts([rows[i] for i in test])
    queries = embed_captions(model, cfg, texts)
    embed_s = time.time() - t0
    _, exact = exact_top_k(queries, clips, 10)
    right = np.asarray(test)[owner]
    r1, r5 = (100 * float(np.mean([right[q] in exact[q][:k] for q in range(len(texts))])) for k in (1, 5))
    lines = [f"# bench/search_recall_real.py on {platform.node()}: checkpoint {loaded.checkpoint}",
             (f"# gallery {len(rows)} clips ({', '.join(args.manifests)}), {len(texts)} test-caption queries, "
             f"dim {clips.shape[1]}, embedded in {embed_s:.0f} s; exact t2v over the whole gallery: "
             f"R@1 {r1:.1f}, R@5 {r5:.1f}"),
             "# kind   nlist/M  nprobe/ef  recall@10 vs exact"]
    for kind in ("ivf", "hnsw"):
        index = faiss_index(clips, kind)
        _, approx = faiss_top_k(index, queries, 10)
        knobs = (f"{index.nlist:>7} {index.nprobe:>10}" if kind == "ivf" else f"{32:>7} {index.hnsw.efSearch:>10}")
        lines.append(f"  {kind:<6} {knobs} {recall_at(approx, exact):>10.3f}")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
