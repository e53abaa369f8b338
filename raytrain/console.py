"""Quiet by default: the console shows raytrain's own lines; everything else (Ray's logs, the workers'
library output, Python warnings) goes to ``<run>/raytrain.log`` in the run folder, and to the console
too with ``--verbose`` (``RAYTRAIN_VERBOSE=1``)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import IO

VERBOSE_ENV = "RAYTRAIN_VERBOSE"
LOG_FILE = "raytrain.log"
KEEP = ("[raytrain]",)  # worker lines shown on the quiet console


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def keep_line(line: str) -> bool:
    """Whether a worker's output line reaches the quiet console (raytrain's own lines)."""
    return any(k in line for k in KEEP)


def worker_line(data: dict, line: str) -> str:
    """A worker's line as the log file keeps it: ``(actor pid=...) line``."""
    who = data.get("actor_name") or data.get("task_name") or ""
    return f"({who} pid={data.get('pid')}) {line}".replace("( pid", "(pid")


_installed: dict[str, IO[str] | None] = {}


def _ray_loggers() -> list[str]:
    return [n for n in logging.root.manager.loggerDict if n == "ray" or n.startswith("ray.")
            if logging.getLogger(n).handlers]


def install(log_dir: Path | None) -> None:
    """Before ``ray.init``: Ray's driver-side log records and Python warnings go to the log file (the
    console keeps errors only), and the workers' output lines are filtered to raytrain's own (all of
    them in the log file). With ``--verbose`` the console shows everything as well."""
    if "done" in _installed:
        return
    import ray._private.worker as ray_worker

    loud = verbose()
    out: IO[str] | None = None
    handlers: list[logging.Handler] = []
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_dir / LOG_FILE, "a", buffering=1)  # noqa: SIM115 -- open for the process's life
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(handler)
    import ray.data  # noqa: F401 -- configures its own "ray.data" logger (console + session file)

    for name in ["", *_ray_loggers()]:
        logger = logging.getLogger(name)
        if not loud:
            for h in logger.handlers:
                if not isinstance(h, logging.FileHandler) and getattr(h, "stream", None) in (sys.stderr, sys.stdout):
                    h.setLevel(logging.ERROR)  # console handlers: errors only
        if name == "" or not logger.propagate:  # the rest reaches the root's handlers
            for h in handlers:
                logger.addHandler(h)
    if not logging.getLogger().handlers:
        logging.getLogger().addHandler(logging.NullHandler())  # no implicit basicConfig to stderr
    logging.captureWarnings(True)
    original = ray_worker.print_worker_logs

    def filtered(data: dict, print_file, ignore_prefix: bool = False) -> None:
        lines = data.get("lines", [])
        if out is not None:
            out.write("".join(worker_line(data, line) + "\n" for line in lines))
        shown = lines if loud else [line for line in lines if keep_line(line)]
        if shown:
            original({**data, "lines": shown}, print_file, ignore_prefix or not loud)

    ray_worker.print_worker_logs = filtered
    _installed.update(done=out)
    if out is not None and not loud:
        print(f"[raytrain] Ray's and the libraries' logs: {(log_dir / LOG_FILE).resolve()} (--verbose shows "
              f"them here)",
              file=sys.stderr, flush=True)
