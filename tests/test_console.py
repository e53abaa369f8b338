"""Quiet by default (raytrain/console.py), without Ray: which worker lines reach the console, and how
the log file names their process."""

from raytrain.console import keep_line, worker_line


def test_only_raytrains_own_worker_lines_reach_the_quiet_console():
    assert keep_line("[raytrain] step 5/100 (5%) | epoch 1/20 | loss 3.1")
    for noise in ("Failed to query Ray Train Controller actor state. State API may be temporarily unavailable.",
                  "Parsing model identifier. Schema: None, Identifier: RT-Micro-ViT",
                  ("[2026-12-02 19:34:32,208 E 9016 9046] core_worker.cc:2465: Actor with class name: 'X' has "
                  "constructor arguments in the object store and max_restarts > 0."),
                  "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'step': 4})"):
        assert not keep_line(noise)


def test_the_log_file_names_each_lines_process():
    assert worker_line({"actor_name": "RayTrainWorker", "pid": 7}, "hello") == "(RayTrainWorker pid=7) hello"
    assert worker_line({"pid": 8}, "x") == "(pid=8) x"
