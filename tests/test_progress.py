"""What a watched run prints (raytrain/train/progress.py), without Ray: the progress line, the
resume/interrupt/finished messages and the closing summary; and the metric logger printing the
progress line at its interval and at each epoch's end, once, on rank 0 only."""

from raytrain.config import Config, apply_overrides
from raytrain.train.progress import (
    Window,
    duration,
    epoch_of,
    finished_line,
    interrupted_line,
    progress_line,
    resume_line,
    summary_lines,
)


def test_durations_read_like_a_clock():
    assert [duration(s) for s in (0, 45.4, 65, 3599, 7620)] == ["0s", "45s", "1m05s", "59m59s", "2h07m"]
    assert duration(float("nan")) == duration(float("inf")) == duration(-1) == "?"


def test_the_progress_line_names_step_epoch_loss_throughput_data_wait_and_eta():
    window = Window(steps=5, wall_s=2.0, data_wait_s=0.5, clips_per_step=64, losses=[4.0, 3.0, 2.0])
    line = progress_line(25, 100, 5, window)
    assert line == ("[raytrain] step 25/100 (25%) | epoch 5/20 | loss 3.0000 | 160.0 clips/s | "
                    "data wait 25% | ETA 30s")
    assert "| epoch 5/20 done |" in progress_line(25, 100, 5, window, epoch_end=True)
    assert [epoch_of(s, 5) for s in (1, 5, 6, 100)] == [1, 1, 2, 20]


def test_a_window_of_skipped_steps_or_no_time_shows_unknowns_not_errors():
    line = progress_line(3, 10, 4, Window(steps=0, wall_s=0.0, data_wait_s=0.0, clips_per_step=8, losses=[]))
    assert "loss -" in line and "? clips/s" in line and "data wait ?" in line and "ETA ?" in line
    assert "epoch 1/3" in line  # 10 steps of 4: the last epoch is partial


def test_resume_interrupt_and_finished_messages():
    assert resume_line("demo", 25, 100) == "[raytrain] resuming demo at step 25 of 100"
    assert interrupted_line(37, 25) == ("raytrain: interrupted at step 37; the last checkpoint is step 25; "
                                        "rerun the same command to resume")
    assert "there is no checkpoint yet" in interrupted_line(None, 0)
    assert finished_line("runs/demo", 100, 100).startswith("run runs/demo already finished (step 100 of 100): "
                                                            "nothing to do")


def test_the_summary_names_time_steps_throughput_skips_and_every_path():
    metrics = {"step": 100, "train_clips_per_s": 123.45, "bad_videos_skipped": 2, "nan_steps_skipped": 1,
               "bad_video_examples": "a.mp4 | b.mp4"}
    lines = summary_lines(metrics, 185, "runs/demo", "runs/demo/checkpoint_000003", "runs/demo/metrics.json",
                          "runs/demo/tensorboard", on_bad_video="skip")
    assert lines[0] == "done in 3m05s: 100 steps, 123.5 clips/s while training"
    assert lines[1] == "skipped videos: 2, e.g. a.mp4 | b.mp4; NaN/Inf steps skipped: 1"
    assert lines[2:] == ["run folder:        runs/demo", "latest checkpoint: runs/demo/checkpoint_000003",
                         "metrics.json:      runs/demo/metrics.json",
                         "TensorBoard:       tensorboard --logdir runs/demo/tensorboard"]
    bare = summary_lines({"step": 4}, 3, "r", None, None, None)
    assert bare[1] == "skipped videos: 0 (data.on_bad_video=error); NaN/Inf steps skipped: 0"
    assert "latest checkpoint: (none)" in bare and not any(line.startswith("metrics.json") for line in bare)
    auto = summary_lines({"step": 4, "fallback_decodes": 3}, 3, "r", None, None, None)
    assert auto[1].endswith("; clips read by the fallback decoder: 3")


def test_the_logger_prints_progress_at_its_interval_and_each_epoch_end_once_on_rank_0(tmp_path, capsys):
    import torch

    from raytrain.train.metric_logger import MetricLogger
    from raytrain.train.step import StepResult

    # data.decoder=pyav: summary() then gathers nothing (no process group here for the 2 ranks)
    cfg = apply_overrides(Config(), ["train.log_every=4", "train.batch_size=8", f"run.storage_path={tmp_path}",
                                     "run.name=r", "data.decoder=pyav"])
    for rank, expected in ((0, [3, 4, 6, 8, 9]), (1, [])):
        logger = MetricLogger(cfg, rank=rank, world_size=2, step=0, steps_per_epoch=3, total_steps=9, run_dir=None)
        capsys.readouterr()
        for step in range(1, 10):
            logger.batch(None, data_wait_s=0.0)
            logger.step(StepResult(float(step), {}, torch.tensor(1.0), False, [], 0.0), step, 0.1, 0)
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[raytrain] step")]
        assert [int(line.split()[2].split("/")[0]) for line in lines] == expected
        if rank == 0:
            assert "loss 4.0000" in lines[1] and "epoch 2/3 |" in lines[1]  # steps 4 alone since step 3's line
            assert "epoch 3/3 done" in lines[-1] and "ETA 0s" in lines[-1]
            assert logger.summary()["train_clips_per_s"] > 0
        logger.close()
