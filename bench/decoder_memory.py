"""A decode actor's memory over many decodes, per decoder, side by side in one run.

Each decoder runs in a fresh process (as a decode actor is one), which decodes the same clip N times
(8 frames, 112 px, a new reader per decode as the data path does) and prints its resident set size
(RSS, /proc/self/statm) every N/10 decodes. decord 0.6.0 is reported to leak ~800 KB per VideoReader
(dmlc/decord#1); a leak shows as RSS growing linearly with the decodes. decord and decord2 both
install as ``import decord``, so each comes from its own interpreter: ``--python LABEL=PATH`` (the
decoders are then run in every interpreter given, the labels name the decord build).

    PYTHONPATH=$PWD .venv/bin/python bench/decoder_memory.py --decodes 10000 \\
        --python decord=.venv/bin/python --python decord2=/path/to/venv-with-decord2/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(decoder: str, path: str, decodes: int) -> None:
    import numpy as np

    from raytrain.data.decode import make_decoder

    d = make_decoder(decoder)
    d.decode(path, 8, 112, train=False)  # libraries loaded, first allocations made
    marks = [(0, rss_mb())]
    t0 = time.perf_counter()
    for i in range(1, decodes + 1):
        d.decode(path, 8, 112, train=True, rng=np.random.default_rng(i))
        if i % max(1, decodes // 10) == 0:
            marks.append((i, rss_mb()))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"decoder": decoder, "marks": marks, "ms_per_decode": 1000 * elapsed / decodes}))


def version(python: str) -> str:
    code = "import decord, av; print(decord.__version__, av.__version__)"
    out = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True)
    return out.stdout.strip() or "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decodes", type=int, default=10000)
    ap.add_argument("--python", action="append", default=[], help="LABEL=PATH of an interpreter (repeatable)")
    ap.add_argument("--decoders", default="decord,pyav,torchcodec")
    ap.add_argument("--child", nargs=2, metavar=("DECODER", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.decodes)
    pythons = [p.split("=", 1) for p in args.python] or [["decord", sys.executable]]
    import numpy as np

    from raytrain.data.synth import encode_h264, render_frames, sample_clip_spec

    with tempfile.TemporaryDirectory() as tmp:
        spec = sample_clip_spec("m", ("circle", "red"), np.random.default_rng(0))
        frames = render_frames(spec)
        clip = str(encode_h264(frames, Path(tmp) / "clip.mp4", spec.fps))
        print(f"# decode-actor RSS over {args.decodes} decodes of one {frames.shape[2]}x{frames.shape[1]} "
              f"H.264 clip ({len(frames)} frames), 8 frames at 112 px per decode, a new reader each; "
              f"cpu, {os.cpu_count()} cores, one process per decoder; *KB/decode: RSS slope after the first "
              f"tenth of the decodes")
        print(f"{'build':10s} {'decoder':12s} {'RSS start MB':>12s} {'RSS end MB':>10s} {'KB/decode*':>10s} "
              f"{'ms/decode':>9s}  RSS every {args.decodes // 10} decodes (MB)")
        seen = set()
        for label, python in pythons:
            print(f"# {label}: {python} (decord, av = {version(python)})")
            for decoder in args.decoders.split(","):
                if decoder != "decord" and decoder in seen:
                    continue  # PyAV / torchcodec are the same in every interpreter
                env = {**os.environ, "PYTHONPATH": str(ROOT)}
                run = subprocess.run([python, __file__, "--decodes", str(args.decodes), "--child", decoder, clip],
                                     check=False, capture_output=True, text=True, env=env)
                lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
                if run.returncode or not lines:
                    why = (run.stderr.strip().splitlines() or ["?"])[-1][:120]
                    print(f"{label:10s} {decoder:12s} not run: {why}")
                    continue
                seen.add(decoder)
                r = json.loads(lines[-1])
                start, end = r["marks"][0][1], r["marks"][-1][1]
                (n0, m0), (n1, m1) = r["marks"][1], r["marks"][-1]  # the slope after the first tenth
                per = (m1 - m0) * 1024 / max(1, n1 - n0)
                trace = " ".join(f"{m:.0f}" for _, m in r["marks"])
                print(f"{label:10s} {decoder:12s} {start:12.1f} {end:10.1f} {per:10.2f} {r['ms_per_decode']:9.2f}  {trace}",
                      flush=True)


if __name__ == "__main__":
    main()
