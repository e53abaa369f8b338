"""The decode actors' ``map_batches`` UDF: a thin composition of the data path's pieces, each testable
on its own without Ray: reading (``reader``), the frame cache (``read_through``), stand-ins for bad
clips (``substitute``), tokenising (``tokens``) and the random masks (``clip_masks``). What it emits is
the batch schema of ``raytrain.data.batch``; what it does, the frozen :class:`DecodeSpec`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from raytrain.data.batch import assemble
from raytrain.data.clip_masks import clip_masks
from raytrain.data.decode import VideoDecodeError, VideoDecoder, make_decoder
from raytrain.data.frame_sampling import pad_frames
from raytrain.data.read_through import ReadThroughCache
from raytrain.data.reader import ClipReader
from raytrain.data.spec import DecodeSpec
from raytrain.data.substitute import Substitutes
from raytrain.data.tokens import CaptionTokenizer


class DecodeClips:
    """Decode ``spec.num_frames`` frames per clip; tokenise the planned caption and build the masks (train).

    Train rows come from the epoch plan and carry a caption and a ``sample_seed`` that fixes the
    random frame offsets inside T equal segments, so augmentation is reproducible. Eval rows get
    segment centres and no text (every caption is queried separately). A clip that cannot be decoded
    stops the run (``on_bad_video=error``) or, under ``skip``, is replaced: in training by a good
    train clip (``substitutes``, rows of ``substitute_rows``), flagged in ``bad_clip``; in evaluation
    (the similarity matrix is fixed) by a black video, flagged in ``bad_video``. ``decoder`` overrides
    the one ``spec.decoder`` names (tests inject fakes here).
    """

    def __init__(self, spec: DecodeSpec, substitutes: Sequence[dict] = (), decoder: VideoDecoder | None = None):
        self.spec = spec
        self.reader = ClipReader(decoder or make_decoder(spec.decoder), spec.num_frames, spec.image_size,
                                 spec.train, spec.timeout_s, spec.sampling())
        self.cache = None if spec.cache_location is None else ReadThroughCache(
            self.reader, spec.cache_location, spec.cache_samplings, spec.seed, spec.cache_compression,
            spec.cache_budget_bytes, spec.cache_min_free_bytes, spec.cache_token)
        self.substitutes = Substitutes(self.reader, substitutes)
        self.tokenize = CaptionTokenizer(spec.arch, spec.max_words, spec.simple_tokenizer) if spec.train else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        train = self.spec.train
        clips, masks, captions, hits, bad_clip, bad_video, fallback = [], [], [], [], [], [], []
        for i, path in enumerate(batch["path"]):
            path = str(path)
            seed = int(batch["sample_seed"][i]) if train else 0
            try:
                frames, hit = self._read(batch, i, path, seed)
                caption = str(batch["caption"][i]) if train else ""
                replaced = False
            except Exception as exc:  # VideoDecodeError, or a decoder bug: either way the file is bad
                if not self.spec.skip_bad:
                    if isinstance(exc, VideoDecodeError):
                        raise
                    raise VideoDecodeError(path, self.reader.name, f"{type(exc).__name__}: {exc}") from exc
                print(f"[raytrain] skipping bad video: {exc}", flush=True)
                self.reader.mark_bad(path)
                frames, caption = self._stand_in(path, seed)
                hit, replaced = False, True
            frames, mask = pad_frames(frames, self.spec.num_frames)  # clip4clip: a short clip's n < T frames
            clips.append(frames)
            masks.append(mask)
            captions.append(caption)
            hits.append(hit)
            fallback.append(not (hit or replaced) and path in self._fallback_files)
            bad_video.append(replaced)
            bad_clip.append((int(batch["clip"][i]) if "clip" in batch else 0) if replaced else -1)
        if self.cache is not None:  # every sampling of the clips decoded in this batch, as one shard
            self.cache.flush()
        values = {"frames": np.stack(clips), "frame_mask": np.stack(masks), "cache_hit": hits, "bad_clip": bad_clip,
                  "bad_video": bad_video, "fallback_decoded": fallback}
        if train:
            values["tokens"] = self.tokenize(captions)
            values.update(clip_masks(batch["sample_seed"], self.spec.num_frames, self.spec.masks))
        else:
            values["video_index"] = batch["video_index"]
        return assemble(self.spec.columns, values)

    @property
    def _fallback_files(self):
        """The files ``data.decoder=auto`` reads with its fallback (none for the other decoders)."""
        return getattr(self.reader.decoder, "fallback_files", {})

    def _read(self, batch: dict[str, np.ndarray], i: int, path: str, seed: int) -> tuple[np.ndarray, bool]:
        """``(frames (T, S, S, 3), cache hit)`` of row ``i``: the planned sampling (train) or the centres."""
        start, end = batch["start_s"][i], batch["end_s"][i]
        if self.cache is None:
            rng = np.random.default_rng(seed) if self.spec.train else None
            return self.reader.read(path, start, end, [rng])[0], False
        clip = int(batch["clip"][i] if self.spec.train else batch["video_index"][i])
        sampling = int(batch["sampling"][i]) if self.spec.train else 0
        return self.cache.read(path, start, end, clip, sampling)

    def _stand_in(self, path: str, seed: int) -> tuple[np.ndarray, str]:
        """A good train clip in a bad one's place (batches stay full); in eval a black video."""
        if self.spec.train:
            return self.substitutes.draw(path, seed)
        size = self.spec.image_size
        return np.zeros((self.spec.num_frames, size, size, 3), np.uint8), ""
