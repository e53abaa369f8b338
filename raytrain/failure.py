"""A failed command's one message: the useful line out of Ray's wrapped errors (a worker's traceback
inside a ``WorkerGroupError`` inside a ``TrainingFailedError``), the manifest row of a file that could
not be decoded, the run folder and its last good checkpoint. Pure text functions (no Ray)."""

from __future__ import annotations

import re
from collections.abc import Sequence

_DECODE = re.compile(r"cannot decode '([^'\n]*)'[^\n]*")
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt)): (\S.*)$")
_NOISE = ("Traceback", "File \"", "^", "During handling", "The above exception", "ray.exceptions")


def error_text(exc: BaseException) -> str:
    """``exc``'s message with those of its causes and contexts (where Ray keeps the worker's error)."""
    seen, parts, todo = set(), [], [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts.append(f"{type(e).__name__}: {e}")
        todo += [e.__cause__, e.__context__]
    return "\n".join(parts)


def short_error(text: str, limit: int = 400) -> str:
    """The line that says what went wrong: a decode error (the file and the decoder's message), else
    the innermost ``SomeError: message`` line of the tracebacks, else the last non-empty line."""
    found = _DECODE.search(text)
    if found:
        return found.group(0)[:limit]
    candidates = []
    for line in text.splitlines():
        m = _ERROR_LINE.match(line)
        if m and m.group(1) not in ("TrainingFailedError", "WorkerGroupError", "RayTaskError", "RayActorError"):
            candidates.append(f"{m.group(1)}: {m.group(2).strip()}")
    if candidates:
        return candidates[-1][:limit]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(_NOISE)]
    return (lines[-1] if lines else text.strip())[:limit]


def decoded_file(message: str) -> str | None:
    """The file named by a decode error, or None."""
    m = _DECODE.search(message)
    return m.group(1) if m else None


def manifest_row(paths: Sequence[str], video_ids: Sequence[str], file: str) -> str | None:
    """``manifest row 17 (video_id 'v17')`` for the clip whose file is ``file`` (rows 0-based, in the
    manifest's order), or None."""
    for i, (path, vid) in enumerate(zip(paths, video_ids)):
        if path == file:
            return f"manifest row {i} (video_id '{vid}')"
    return None


def failure_message(command: str, short: str, row: str | None = None, run_dir: str | None = None,
                    checkpoint: str | None = None, verbose_hint: bool = True) -> str:
    """One message: what failed (and its manifest row), where the run is, how to go on."""
    out = f"raytrain {command}: failed: {short}"
    if row:
        out += f"\n  the clip: {row}"
    if run_dir:
        out += f"\n  run folder: {run_dir}; last good checkpoint: {checkpoint or 'none'}"
        out += " (rerun the same command to resume from it)" if checkpoint else ""
    if verbose_hint:
        out += "\n  (--verbose shows the full traceback)"
    return out
