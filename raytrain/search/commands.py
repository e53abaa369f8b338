"""The search commands of the CLI (index, search, embed-text, serve): their parsers and handlers, kept
apart from raytrain/cli.py so that module stays one screen of commands. docs/search.md."""
from __future__ import annotations

import json
from pathlib import Path


def _cmd_index(args) -> None:
    from raytrain.search.build import build_index

    res = build_index(args.checkpoint, args.overrides, args.manifest, args.split, args.out, args.shard_size)
    print(f"index '{res['out']}': {res['clips']} clips, {res['embedded']} embedded now")


def _print_results(texts, results, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"query": t, "results": r} for t, r in zip(texts, results)], indent=2))
        return
    for text, hits in zip(texts, results):
        print(f"query: {text}")
        for hit in hits:
            seg = "" if hit["start_s"] is None else f" [{hit['start_s']}-{hit['end_s']} s]"
            print(f"  {hit['rank']:>3}  {hit['score']:.4f}  {hit['video_id']}{seg}  {hit['path']}")


def _query_texts(args) -> list[str]:
    texts = list(args.query or [])
    if args.queries:
        texts += [line.strip() for line in Path(args.queries).read_text().splitlines() if line.strip()]
    if not texts:
        raise ValueError("give a query, or --queries FILE (one query a line)")
    return texts


def _cmd_search(args) -> None:
    from raytrain.search.query import search

    texts = _query_texts(args)
    _print_results(texts, search(args.index, texts, args.top_k, args.faiss, args.checkpoint), args.json)


def _cmd_embed_text(args) -> None:
    from raytrain.search.query import write_text_embeddings

    print(f"wrote {write_text_embeddings(args.file, args.checkpoint, args.out, args.overrides)}")


def _cmd_serve(args) -> None:
    from raytrain.search.serve import serve

    serve(args.index, args.host, args.port, args.checkpoint)



def add_search_parsers(sub) -> None:
    """The four search subcommands on the CLI's subparsers."""
    p = sub.add_parser("index", help="embed a manifest's clips with Ray Data into a search index (resumable)")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder, or an open_clip weights file")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True, help="index folder (index.json + shard-*.parquet)")
    p.add_argument("--split", default="all", help="a manifest split, or all (default)")
    p.add_argument("--shard-size", type=int, default=1024, help="clips per Parquet shard")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.arch=ViT-B-32 for a weights file")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("search", help="text-to-video search of an index")
    p.add_argument("--index", required=True)
    p.add_argument("query", nargs="*")
    p.add_argument("--queries", default=None, help="a file of queries, one a line")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.add_argument("--faiss", default=None, choices=("hnsw", "ivf"), help="approximate search (faiss-cpu)")
    p.add_argument("--checkpoint", default=None, help="default: the one the index records")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("embed-text", help="embed a file of captions (one a line) into Parquet")
    p.add_argument("file")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="Parquet file: text, embedding")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=_cmd_embed_text)

    p = sub.add_parser("serve", help="a search web page over an index (127.0.0.1 unless --host)")
    p.add_argument("--index", required=True)
    p.add_argument("--host", default="127.0.0.1", help="e.g. 0.0.0.0 to open it to the network, deliberately")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--checkpoint", default=None, help="default: the one the index records")
    p.set_defaults(func=_cmd_serve)
