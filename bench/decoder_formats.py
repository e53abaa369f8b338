"""Every format case x every decoder: pass / refused / FAIL and the time of one decode, side by side.

The corpus is raytrain/data/video_corpus.py's (what tests/test_decode_formats.py checks) plus a five
minute 320x240 clip (keyframe every 10 s) that times seeking. A case passes when the decoder presents
the same number of frames as a player and the 12 sampled frames show the right frame index the right
way up and are within 3 grey levels of the ffmpeg program's decode (pattern only for the long clip);
``refused`` is a VideoDecodeError (data.decoder=auto then reads the file with PyAV); FAIL is a wrong
answer. Time: the median of 3 ``decode(path, 12 frames, 112 px)`` calls, ms. decord and decord2 both
install as ``import decord``: each interpreter given with ``--python LABEL=PATH`` runs decord and auto
with its own build (PyAV and torchcodec run once, in the first interpreter that has them). Each
decoder runs in its own process: decord2's wheel carries FFmpeg 8, torchcodec loads the system's
FFmpeg, and both in one process crash (seen here: SIGSEGV on the AV1 clip).

    PYTHONPATH=$PWD .venv/bin/python bench/decoder_formats.py --python "decord 0.6.0=.venv/bin/python" \\
        --python "decord2 3.4.0=/path/to/venv-with-decord2/bin/python" --markdown docs/decoders_table.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(decoder, path: str) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        decoder.decode(path, 12, 112, train=False)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _cases(names: str):
    from raytrain.data import video_corpus as vc

    every = [*vc.CASES, vc.LONG_BENCH]
    return every if names == "all" else [c for c in every if c.name in names.split(",")]


def child(root: str, decoders: list[str], names: str) -> None:
    import numpy as np

    from raytrain.data import video_corpus as vc
    from raytrain.data.decode import VideoDecodeError, make_decoder, sample_frame_indices
    from raytrain.data.decoders.pyav_decoder import _PyAVVideo

    cases = _cases(names)
    paths = {c.name: str(next(Path(root).glob(f"{c.name}.*"))) for c in cases}
    refs = {c.name: vc.ffmpeg_frames(paths[c.name]) if vc.has_ffmpeg_cli() and c.frames < 2000 else None
            for c in cases}
    for name in decoders:
        try:
            decoder = make_decoder(name)
        except ImportError as exc:
            print(json.dumps({"decoder": name, "missing": str(exc)[:200]}), flush=True)
            continue
        for c in cases:
            status, detail = vc.check_case(decoder, paths[c.name], c, refs[c.name])
            ms = _time(decoder, paths[c.name]) if status == "pass" else None
            print(json.dumps({"decoder": name, "case": c.name, "status": status, "detail": detail, "ms": ms}),
                  flush=True)
        for kind in vc.BROKEN:
            path = str(next(Path(root).glob(f"broken_{kind}.*")))
            try:
                decoder.decode(path, 4, 32, train=False)
                status, detail = "FAIL", "returned frames"
            except VideoDecodeError as exc:
                status, detail = ("pass" if f"'{path}'" in str(exc) else "FAIL"), str(exc)[:120]
            print(json.dumps({"decoder": name, "case": f"broken: {kind}", "status": status, "detail": detail,
                              "ms": None}), flush=True)
    if "pyav" in decoders and vc.LONG_BENCH in cases:  # what seeking saves on the long clip: PyAV decoding from the start instead
        path = paths[vc.LONG_BENCH.name]
        with _PyAVVideo(path, "pyav") as video:
            idx = np.unique(sample_frame_indices(video.num_frames, 12, train=False))
            t0 = time.perf_counter()
            video._read_sequential(idx)
            ms = 1000 * (time.perf_counter() - t0)
        print(json.dumps({"decoder": "pyav", "case": f"{vc.LONG_BENCH.name} (no seek: from the start)",
                          "status": "pass", "detail": "sequential read", "ms": ms}), flush=True)


def _add(r: dict, label: str, rows: dict, columns: list, done: set) -> None:
    col = f"{r['decoder']} ({label})" if r["decoder"] in ("decord", "auto") else r["decoder"]
    if "missing" in r:
        print(f"# {col}: not available here: {r['missing']}")
        return
    done.add(r["decoder"])
    if col not in columns:
        columns.append(col)
    cell = r["status"] + (f" {r['ms']:.1f} ms" if r["ms"] is not None else "")
    if r["status"] != "pass":
        cell += f" ({r['detail'][:70]})"
    rows.setdefault(r["case"], {})[col] = cell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", action="append", default=[], help="LABEL=PATH of an interpreter (repeatable)")
    ap.add_argument("--markdown", help="also write the table as markdown here")
    ap.add_argument("--cases", default="all", help="comma-separated case names (default: all)")
    ap.add_argument("--child", nargs=2, metavar=("ROOT", "DECODERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1].split(","), args.cases)
    from raytrain.data import video_corpus as vc

    pythons = [p.split("=", 1) for p in args.python] or [["decord", sys.executable]]
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    done: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        vc.write_corpus(tmp, [c for c in _cases(args.cases) if c is not vc.LONG_BENCH])
        if vc.LONG_BENCH in _cases(args.cases):
            vc.write_case(vc.LONG_BENCH, tmp)
        print(f"# corpus written in {time.perf_counter() - t0:.1f} s; ffmpeg program: {vc.has_ffmpeg_cli()}; "
              f"cpu, {os.cpu_count()} cores", flush=True)
        for label, python in pythons:
            wanted = ["decord", "auto"] + [d for d in ("pyav", "torchcodec") if d not in done]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            for decoder in wanted:  # one process each: decord2's bundled FFmpeg and torchcodec's clash
                run = subprocess.run([python, __file__, "--cases", args.cases, "--child", tmp, decoder],
                                     check=False, capture_output=True, text=True, env=env)
                for line in run.stdout.splitlines():
                    if line.startswith("{"):
                        _add(json.loads(line), label, rows, columns, done)
                if run.returncode:
                    print(f"# {decoder} ({label}): child exited {run.returncode}: "
                          f"{run.stderr.strip().splitlines()[-1:]}")
    header = ["case", *columns]
    table = [header, ["---"] * len(header)] + [[case, *(cells.get(c, "") for c in columns)]
                                                for case, cells in rows.items()]
    md = "\n".join("| " + " | ".join(r) + " |" for r in table)
    print(md)
    passed = {c: sum(cells.get(c, "").startswith("pass") for cells in rows.values()) for c in columns}
    print("\npassed: " + ", ".join(f"{c} {n}/{len(rows)}" for c, n in passed.items()))
    if args.markdown:
        Path(args.markdown).write_text(md + "\n\npassed: " + ", ".join(f"{c} {n}/{len(rows)}"
                                                                       for c, n in passed.items()) + "\n")


if __name__ == "__main__":
    main()
