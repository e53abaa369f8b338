"""Stand-ins for bad train clips (``data.on_bad_video=skip``): a good clip of the train split takes a
bad one's place, so batches stay full. The draw is seeded by the bad row's ``sample_seed``: a rerun
(or a restarted run) substitutes the same clip. No Ray here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from raytrain.data.decode import VideoDecodeError
from raytrain.data.manifest import ClipRow
from raytrain.data.reader import ClipReader


def substitute_rows(rows: Sequence[ClipRow] | None) -> list[dict]:
    """The candidates as plain dicts (what a decode actor is sent): path, segment (NaN: none), captions."""
    nan = float("nan")
    return [{"path": r.path, "start_s": nan if r.start_s is None else r.start_s,
             "end_s": nan if r.end_s is None else r.end_s, "captions": list(r.captions)} for r in rows or []]


class Substitutes:
    """Draws a stand-in among ``rows`` (``substitute_rows``), decoded with ``reader``; a candidate that
    fails is remembered as bad by the reader and the next one of the draw is tried."""

    def __init__(self, reader: ClipReader, rows: Sequence[dict] = (), tries: int = 16):
        self.reader = reader
        self.rows = list(rows)
        self.tries = tries

    def draw(self, bad_path: str, seed: int) -> tuple[np.ndarray, str]:
        """``(frames (T, S, S, 3), caption)``: the first good clip of a draw seeded by ``seed``."""
        rng = np.random.default_rng([seed, 0xBAD])
        order = rng.permutation(len(self.rows))[:self.tries] if self.rows else []
        for j in order:
            row = self.rows[int(j)]
            if row["path"] in self.reader.known_bad:
                continue
            try:
                frames = self.reader.read(row["path"], row["start_s"], row["end_s"],
                                          [np.random.default_rng(int(rng.integers(2**62)))])[0]
            except Exception:  # noqa: BLE001 - any failure makes the stand-in unusable; try the next
                self.reader.mark_bad(row["path"])
                continue
            return frames, row["captions"][int(rng.integers(len(row["captions"])))]
        raise VideoDecodeError(bad_path, self.reader.name,
                               f"bad, and no good substitute among {len(order)} train clips tried")
