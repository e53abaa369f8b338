"""A failed command's one message (raytrain/failure.py), without Ray: the useful line out of Ray's
nested errors, the manifest row of an undecodable file, the run folder and last good checkpoint."""

from raytrain.failure import decoded_file, error_text, failure_message, manifest_row, short_error

RAY_TEXT = """TrainingFailedError: Training failed due to worker errors:
[Rank 0 Error Snippet]:
Traceback (most recent call last):
  File "/x/ray/train/v2/_internal/execution/worker_group/thread_runner.py", line 30, in run
    yield from batches
ray.exceptions.RayTaskError(VideoDecodeError): ray::MapWorker(MapBatches(DecodeClips)).submit()
raytrain.data.decoders.base.VideoDecodeError: cannot decode '/d/truncated.mp4' with decord: moov atom not found
RuntimeError: cannot decode '/d/truncated.mp4' with decord: moov atom not found (data.on_bad_video=error; 'skip' replaces bad clips)
"""


def test_the_decode_error_is_the_line_that_names_the_file():
    short = short_error(RAY_TEXT)
    assert short.startswith("cannot decode '/d/truncated.mp4' with decord: moov atom not found")
    assert decoded_file(short) == "/d/truncated.mp4"
    assert manifest_row(["/d/a.mp4", "/d/truncated.mp4"], ["a", "t"], "/d/truncated.mp4") == \
        "manifest row 1 (video_id 't')"
    assert manifest_row(["/d/a.mp4"], ["a"], "/d/other.mp4") is None


def test_other_errors_give_their_innermost_error_line_not_rays_wrappers():
    text = ("TrainingFailedError: Training failed\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
            "WorkerGroupError: worker group failed\nraytrain.train.faults.NonFiniteLossError: non-finite loss "
            "at step 3 (train.on_nan=stop); the last good checkpoint is step 2\n")
    assert short_error(text) == ("NonFiniteLossError: non-finite loss at step 3 (train.on_nan=stop); "
                                 "the last good checkpoint is step 2")
    assert short_error("just words\n\n") == "just words"


def test_error_text_keeps_the_causes():
    try:
        try:
            raise ValueError("inner")
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        assert error_text(exc) == "RuntimeError: outer\nValueError: inner"


def test_the_message_names_the_row_the_run_folder_and_the_last_checkpoint():
    msg = failure_message("train", "cannot decode 'f.mp4' with decord: x", "manifest row 1 (video_id 't')",
                          "runs/r", "step 2 at runs/r/checkpoint_1")
    assert msg.splitlines() == ["raytrain train: failed: cannot decode 'f.mp4' with decord: x",
                                "  the clip: manifest row 1 (video_id 't')",
                                ("  run folder: runs/r; last good checkpoint: step 2 at runs/r/checkpoint_1 "
                                "(rerun the same command to resume from it)"),
                                "  (--verbose shows the full traceback)"]
    assert "last good checkpoint: none" in failure_message("train", "x", None, "runs/r", None)
