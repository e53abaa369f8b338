"""``raytrain index``: Ray Data batch inference over a manifest's clips into a search index.

Clips are decoded by the data path's decode actors (CPU, exactly as evaluation decodes them:
``bank_dataset``, segment centres, no frame cache), then embedded by a pool of :class:`EmbedClips`
actors holding the video tower: one per GPU when the cluster has GPUs, else one CPU actor. The
driver only gathers finished rows and writes them as Parquet shards (``index_files``)."""

from __future__ import annotations

import time

import numpy as np

from raytrain.search import index_files as files


class EmbedClips:
    """Ray Data UDF: decoded clips → ``video_index``, normalised ``embedding`` and a thumbnail strip."""

    def __init__(self, checkpoint: str, overrides: tuple[str, ...]):
        import torch

        from raytrain.search.model import load_search_model
        from raytrain.train.step import autocast_dtype

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        loaded = load_search_model(checkpoint, overrides)
        self.model = loaded.model.to(self.device)
        self.autocast = autocast_dtype(loaded.cfg, self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from raytrain.eval.retrieval import embed_videos

        index = np.asarray(batch["video_index"])
        local = {"frames": torch.as_tensor(batch["frames"]), "video_index": torch.arange(len(index))}
        if "frame_mask" in batch:
            local["frame_mask"] = torch.as_tensor(batch["frame_mask"])
        emb = embed_videos(self.model, [local], len(index), self.device, self.autocast).numpy().astype(np.float32)
        thumbs = np.array([files.thumbnail_strip(f) for f in batch["frames"]], dtype=object)
        return {"video_index": index, "embedding": emb, "thumbnail": thumbs}


def _embed_pool() -> dict:
    """One actor per GPU of the cluster with ``num_gpus=1``, else one CPU actor."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus > 0:
        return {"compute": ray.data.ActorPoolStrategy(size=gpus), "num_gpus": 1}
    return {"compute": ray.data.ActorPoolStrategy(size=1), "num_cpus": 1}


def build_index(checkpoint: str, overrides: list[str], manifest: str, split: str, out: str,
                shard_size: int = 1024) -> dict:
    """Embed every clip of ``manifest`` (``split``, or ``all``) that ``out`` does not hold yet."""
    from raytrain.config import apply_overrides
    from raytrain.data.manifest import load_manifest
    from raytrain.data.pipeline import bank_dataset
    from raytrain.model.clip_video import model_image_size
    from raytrain.ray_env import ensure_ray
    from raytrain.search.model import load_search_model

    loaded = load_search_model(checkpoint, overrides)  # on the driver: a bad checkpoint fails before Ray
    cfg = apply_overrides(loaded.cfg, [f"data.manifest={manifest}"])
    with __import__("torch").no_grad():
        dim = int(loaded.model.encode_text(_probe_tokens(cfg)).shape[-1])
    identity = files.index_identity(loaded.checkpoint, loaded.weights_hash, cfg.model.arch, cfg.data.num_frames, dim)
    files.open_index(out, identity)
    rows = load_manifest(manifest, split=None if split == "all" else split)
    todo = files.missing_rows(rows, files.indexed_keys(out))
    print(f"[raytrain] index: {len(rows)} clips in '{manifest}' ({split}), {len(rows) - len(todo)} already in "
          f"'{out}', {len(todo)} to embed", flush=True)
    if not todo:
        return {"clips": len(rows), "embedded": 0, "out": out}
    ensure_ray(cfg)
    ds = bank_dataset(cfg, todo, model_image_size(cfg.model.arch)).map_batches(
        EmbedClips, fn_constructor_args=(loaded.checkpoint, tuple(overrides)), batch_size=cfg.eval.batch_size,
        batch_format="numpy", **_embed_pool())
    done, t0 = 0, time.time()
    for batch in ds.iter_batches(batch_size=shard_size, batch_format="numpy"):
        picked = [todo[int(i)] for i in batch["video_index"]]
        files.write_shard(out, _records(picked, batch), dim)
        done += len(picked)
        print(f"[raytrain] index: {done}/{len(todo)} clips embedded ({done / max(time.time() - t0, 1e-9):.1f} "
              f"clips/s)", flush=True)
    return {"clips": len(rows), "embedded": done, "out": out}


def _probe_tokens(cfg):
    from raytrain.model.clip_video import get_tokenizer

    return get_tokenizer(cfg.model.arch, cfg.data.max_words)(["x"])


def _records(rows, batch) -> dict[str, list]:
    return {"key": [files.clip_key(r.video_id, r.start_s, r.end_s) for r in rows],
            "video_id": [r.video_id for r in rows], "path": [r.path for r in rows],
            "start_s": [r.start_s for r in rows], "end_s": [r.end_s for r in rows],
            "captions": [list(r.captions) for r in rows], "split": [r.split for r in rows],
            "embedding": [np.asarray(e, np.float32) for e in batch["embedding"]],
            "thumbnail": [bytes(t) for t in batch["thumbnail"]]}
