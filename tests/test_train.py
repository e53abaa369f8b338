"""Tier 3: 2-worker Ray Train fits on tiny data — a fit, a resume at the exact step, and a check
that training beats the untrained model on the held-out split."""

import json
from pathlib import Path

import pytest
import torch

from raytrain.config import apply_overrides
from raytrain.train.state import find_checkpoint, load_training_state
from raytrain.train.trainer import fit

pytestmark = [pytest.mark.ray, pytest.mark.e2e]


def _event_scalars(run_dir: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for events in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            out.update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def _tensorboard_as_read(run_dir: Path, tag: str) -> dict[int, float]:
    """The points TensorBoard shows for ``tag``: the run's event files read together, purges applied."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)} if tag in acc.Tags()["scalars"] else {}


def test_fit_then_resume_continues_at_the_exact_step(ray_session, tiny_config, capsys):
    # 48 train clips / 2 workers / batch 4 -> 6 steps per epoch; stop after 4, then resume to 6. The
    # first segment is shorter than its checkpoint interval: it still checkpoints at its end.
    cfg = apply_overrides(tiny_config, ["train.stop_at_step=4", "eval.at_end=false", "checkpoint.every=50"])
    first = fit(cfg)
    state = load_training_state(find_checkpoint(first.checkpoint_path))
    assert state["step"] == 4 and state["extra"]["start_step"] == 0
    assert len(state["rng"]) == 2  # every rank's RNG state is kept

    capsys.readouterr()
    second = fit(apply_overrides(tiny_config, ["eval.at_end=true"]))
    assert "[raytrain] resuming t at step 4 of 6" in capsys.readouterr().out
    final = load_training_state(find_checkpoint(second.checkpoint_path))
    assert final["step"] == 6 and final["extra"]["start_step"] == 4
    assert final["scheduler"]["last_epoch"] == 6  # the LR schedule continued, not restarted
    assert not torch.equal(final["model"]["model.clip.visual.proj"], state["model"]["model.clip.visual.proj"])
    run = Path(second.run_dir)
    assert set(_event_scalars(run, "train/loss")) == set(range(1, 7))  # one loss per step, no repeats
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"t2v_R1", "t2v_MdR", "v2t_R5"} <= set(metrics) and metrics["step"] == 6
    assert {"eval/t2v_R1", "retrieval/caption0", "retrieval/caption3"} <= _event_tags(run)  # eval.retrieval_examples=4
    assert metrics["fallback_decodes"] == 0  # data.decoder=auto: decord read every file
    # TensorBoard, reading the segments together, shows every step once: the resumed writer's purge
    # dropped nothing before the resume (step 4, logged before the checkpoint, included).
    assert sorted(_tensorboard_as_read(run, "train/loss")) == list(range(1, 7))
    assert sorted(_tensorboard_as_read(run, "time/step_s")) == list(range(1, 7))

    # Running the finished run again says so and does nothing: no training, no evaluation, no new
    # checkpoint, metrics.json as it was.
    before = (sorted(p.name for p in run.glob("checkpoint_*")), (run / "metrics.json").read_text())
    third = fit(apply_overrides(tiny_config, ["eval.at_end=false"]))
    assert "already finished (step 6 of 6): nothing to do" in capsys.readouterr().out
    assert load_training_state(find_checkpoint(third.checkpoint_path))["step"] == 6
    assert (sorted(p.name for p in run.glob("checkpoint_*")), (run / "metrics.json").read_text()) == before
    assert third.metrics["t2v_R1"] == metrics["t2v_R1"] and "loss" in third.metrics


def _event_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (run_dir / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    return tags


def test_training_beats_the_untrained_model_on_held_out_split(ray_session, tmp_path_factory, tmp_path):
    from raytrain.cli import evaluate_on_driver
    from raytrain.config import Config
    from raytrain.data.manifest import load_manifest
    from raytrain.data.synth import generate_synthvtt
    from raytrain.model.clip_video import build_model
    from raytrain.train.state import seed_everything

    data = tmp_path_factory.mktemp("synth_learn")
    generate_synthvtt(data, num_videos=200, seed=11)
    cfg = apply_overrides(Config(), [
        f"data.manifest={data / 'manifest.parquet'}", "data.num_frames=3", "data.decode_batch_size=16",
        "model.arch=RT-Tiny-ViT", "model.temporal=meanP", "optim.lr=1e-3", "optim.tower_lr=1e-3",
        "optim.weight_decay=0.05", "scaling.num_workers=2", "train.batch_size=16", "train.epochs=12",
        "checkpoint.every=1000", f"run.storage_path={tmp_path / 'runs'}", "run.name=learn"])
    rows = load_manifest(cfg.data.manifest, split="test")
    seed_everything(cfg.train.seed)
    untrained = evaluate_on_driver(cfg, build_model(cfg.model), rows)
    trained = fit(cfg).metrics
    # 40 unseen-combination test clips, ~150 captions: chance is R@5 = 12.5 %, mean rank 20.5.
    assert trained["t2v_MnR"] < 0.8 * untrained["t2v_MnR"], (trained, untrained)
    assert trained["t2v_R5"] > untrained["t2v_R5"] + 10, (trained, untrained)


@pytest.mark.parametrize("strategy", ["attention", "random"])
def test_mascot_fit_and_resume(ray_session, tiny_config, strategy):
    cfg = apply_overrides(tiny_config, ["method.name=mascot", f"mask.strategy={strategy}",
                                        "method.mascot.decoder_heads=4", "method.mascot.lambda_tp=0.1",
                                        f"run.name=mascot-{strategy}"])
    first = fit(apply_overrides(cfg, ["train.stop_at_step=2", "eval.at_end=false"]))
    assert load_training_state(find_checkpoint(first.checkpoint_path))["step"] == 2
    second = fit(apply_overrides(cfg, ["train.max_steps=4"]))
    final = load_training_state(find_checkpoint(second.checkpoint_path))
    assert final["step"] == 4 and final["extra"]["start_step"] == 2
    assert any(k.startswith("decoder.") for k in final["model"])  # the ISC decoder is checkpointed
    tags = _event_tags(Path(second.run_dir))
    assert {"train/loss_mv", "train/loss_rec", "train/loss_co", "train/loss_tp"} <= tags
    assert "t2v_R1" in second.metrics


def test_miles_fit_and_resume(ray_session, tiny_config):
    cfg = apply_overrides(tiny_config, ["method.name=miles", "method.miles.momentum=0.5", "run.name=miles"])
    first = fit(apply_overrides(cfg, ["train.stop_at_step=2", "eval.at_end=false"]))
    state = load_training_state(find_checkpoint(first.checkpoint_path))
    assert state["step"] == 2
    ema, online = state["model"]["ema_visual.proj"], state["model"]["model.clip.visual.proj"]
    assert not torch.equal(ema, online)  # the snapshot lags the online tower (momentum 0.5, 2 steps)
    second = fit(apply_overrides(cfg, ["train.max_steps=4"]))
    final = load_training_state(find_checkpoint(second.checkpoint_path))
    assert final["step"] == 4 and final["extra"]["start_step"] == 2
    assert not torch.equal(final["model"]["ema_visual.proj"], ema)  # restored, then updated twice more
    assert {"train/loss_nce", "train/loss_mvm"} <= _event_tags(Path(second.run_dir))
    assert "t2v_R1" in second.metrics


def test_dmae_fit_and_resume_evaluates_with_its_similarity(ray_session, tiny_config):
    from raytrain.cli import evaluate_checkpoint

    cfg = apply_overrides(tiny_config, ["method.name=dmae", "run.name=dmae"])
    first = fit(apply_overrides(cfg, ["train.stop_at_step=2", "eval.at_end=false"]))
    assert load_training_state(find_checkpoint(first.checkpoint_path))["step"] == 2
    second = fit(apply_overrides(cfg, ["train.max_steps=4"]))
    final = load_training_state(find_checkpoint(second.checkpoint_path))
    assert final["step"] == 4 and final["extra"]["start_step"] == 2
    assert any(k.startswith("word_weights.") for k in final["model"])
    assert {"train/loss_nce", "train/loss_tpm", "train/tpm_words_masked"} <= _event_tags(Path(second.run_dir))
    # `raytrain eval` on the checkpoint scores with the DMAE similarity and reproduces the in-run metrics.
    again = evaluate_checkpoint(second.checkpoint_path, [], str(Path(second.run_dir) / "re-eval.json"))["metrics"]
    for key in ("t2v_R1", "t2v_MnR", "v2t_R5"):
        assert again[key] == pytest.approx(second.metrics[key], abs=1e-6), key


def test_frame_cache_run_decodes_only_the_first_epoch(ray_session, tiny_config):
    # 6 steps per epoch: epoch 1 (steps 1-6) decodes and fills the cache, epoch 2 reads it; the
    # evaluation at step 6 fills the eval cache and the final one (step 12) reads it.
    # One decode pool (the split): with data.per_rank_plan each rank's pool runs ahead on its own, so a
    # clip may be read from the cache in epoch 1 (another pool decoded it for epoch 2) or decoded twice.
    cfg = apply_overrides(tiny_config, ["data.cache=frames", "data.cache_samplings=2", "train.epochs=2",
                                        "checkpoint.every=6", "eval.every=6", "data.per_rank_plan=false"])
    result = fit(cfg)
    hit_rate = _event_scalars(Path(result.run_dir), "data/cache_hit_rate")
    assert set(hit_rate) == set(range(1, 13))
    assert all(hit_rate[s] == 0.0 for s in range(1, 7)) and all(hit_rate[s] == 1.0 for s in range(7, 13))
    evals = _event_scalars(Path(result.run_dir), "eval/t2v_R1")
    assert set(evals) == {6, 12}
    caches = sorted((Path(result.run_dir) / "frame_cache").iterdir())
    assert [c.name.split("-")[0] for c in caches] == ["test", "train"]
    assert all(list(c.glob("shard-*.arrow")) for c in caches)
