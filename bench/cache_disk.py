"""The frame cache writer on a real small disk: a tmpfs filled by decode-actor stand-ins, without and
with the default floor of free space. Needs root (mount); prints one row per case, or why it skipped.

    sudo .venv/bin/python bench/cache_disk.py [--mb 20] [--actors 4]

Columns: case, shards written, MB cached, MB left free when every actor stopped, floor (MB), temp
files left (must be 0), "cache" lines printed (must be 1: one for the run).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import tempfile

import numpy as np

from raytrain.data import cache_disk
from raytrain.data.read_through import ReadThroughCache


class _NoiseReader:
    """Incompressible frames, 2 x 512 x 512 x 3 bytes (1.5 MB) per sampling."""

    train = True
    name = "noise"

    def read(self, path, start_s, end_s, rngs):
        return np.stack([np.random.default_rng(len(path)).integers(0, 255, (2, 512, 512, 3), np.uint8)
                         for _ in rngs])


def fill(disk: str, actors: int, floor_on: bool) -> str:
    root = os.path.join(disk, "frame_cache")
    folder = os.path.join(root, "train-bench")
    os.makedirs(folder)
    floor = cache_disk.measure_min_free(root, 0.5, 0.0) if floor_on else 0
    caches = [ReadThroughCache(_NoiseReader(), folder, samplings=2, min_free_bytes=floor,
                               token=cache_disk.writer_token()) for _ in range(actors)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for clip in range(200):
            cache = caches[clip % actors]
            cache.read("c" * (clip + 1), None, None, clip=clip, sampling=0)
            cache.flush()
            if not any(c.writing for c in caches):
                break
    names = os.listdir(folder)
    shards = [n for n in names if n.endswith(".arrow") and not n.startswith(".")]
    size = sum(os.path.getsize(os.path.join(folder, n)) for n in shards)
    lines = sum("[raytrain] frame cache" in line for line in out.getvalue().splitlines())
    case = "default floor (0.5, reserve 0)" if floor_on else "no floor"
    return (f"{case:32s} {len(shards):6d} {size / 1e6:9.1f} {shutil.disk_usage(disk).free / 1e6:9.1f} "
            f"{floor / 1e6:9.1f} {sum(n.endswith('.tmp') for n in names):5d} {lines:6d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--actors", type=int, default=4)
    args = parser.parse_args()
    print(f"{'case':32s} {'shards':>6s} {'MB cached':>9s} {'MB free':>9s} {'floor MB':>9s} {'.tmp':>5s} {'lines':>6s}")
    for floor_on in (False, True):
        disk = tempfile.mkdtemp(prefix="raytrain-tmpfs-")
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.mb}m", "tmpfs", disk],
                                 check=False, capture_output=True)
        if mounted.returncode != 0:
            print(f"skipped: cannot mount a tmpfs ({mounted.stderr.decode().strip()})")
            os.rmdir(disk)
            return
        try:
            print(fill(disk, args.actors, floor_on))
        finally:
            subprocess.run(["umount", "-l", disk], check=False)
            os.rmdir(disk)


if __name__ == "__main__":
    main()
