"""Issue 21 item 7: MASCOT's ISC decoder fed the visible tokens through ``ln_post`` vs the raw residual
stream (``method.mascot.decoder_input``). Full MASCOT on SynthVTT (configs/ablation.yaml), both arms
with the same seeds (same initial weights, data order and masks at step 0), paired Δ = ln_post − residual.
Finished runs resume (evaluated again), so the script can be re-run.

    flock /tmp/raytrain-heavy.lock .venv/bin/python bench/decoder_input.py --seeds 0 1 2 [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ARMS = ("ln_post", "residual")
KEYS = ("t2v_R1", "t2v_R5", "v2t_R1", "v2t_R5")
RESULTS = Path("bench/results/decoder_input_runs.json")


def _fmt(values: list[float], signed: bool = False) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{'+' if signed else ''}.1f} ± {std:.1f}"


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| decoder_input | " + " | ".join(KEYS) + " | runs |", "|---" * (len(KEYS) + 2) + "|"]
    for arm, runs in results.items():
        lines.append(f"| {arm} | " + " | ".join(_fmt([r[k] for r in runs]) for k in KEYS) + f" | {len(runs)} |")
    base = {r["seed"]: r for r in results.get("residual", [])}
    pairs = [(r, base[r["seed"]]) for r in results.get("ln_post", []) if r["seed"] in base]
    if pairs:
        lines.append("| Δ ln_post − residual (paired) | "
                     + " | ".join(_fmt([a[k] - b[k] for a, b in pairs], signed=True) for k in KEYS)
                     + f" | {len(pairs)} pairs |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ablation.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    from raytrain.config import load_config
    from raytrain.data.synth import main_synth
    from raytrain.ray_env import ensure_ray
    from raytrain.train.trainer import fit

    base = load_config(args.config, args.overrides)
    if not Path(base.data.manifest).is_file():
        main_synth(str(Path(base.data.manifest).parent), base.data.synth_num_videos, base.data.synth_seed, 0.2)
    ensure_ray(base)
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for arm in ARMS:
            cfg = load_config(args.config, [*args.overrides, "method.name=mascot", "mask.strategy=attention",
                                            f"method.mascot.decoder_input={arm}", f"train.seed={seed}",
                                            "run.storage_path=runs/decoder_input", f"run.name=dec-{arm}-seed{seed}"])
            t0 = time.time()
            metrics = {k: float(v) for k, v in fit(cfg).metrics.items() if isinstance(v, (int, float))}
            metrics.update(seed=seed, wall_s=time.time() - t0)
            results.setdefault(arm, []).append(metrics)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1))
            print(f"[decoder_input] {arm} seed {seed}: " + ", ".join(f"{k}={metrics[k]:.1f}" for k in KEYS), flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
