"""The frame cache and its disk: how much free space its writes must leave, the removal of the temp
files killed writers leave behind, and one message for a run instead of one per decode actor. No Ray.

Why a floor of free space rather than a folder size: several decode actors (and the train and eval
folders) write to the same disk, and checkpoints and logs share it. The floor is fixed once, on the
driver, when a dataset opens its cache (:func:`measure_min_free`): measured as free space *plus what
the cache root already holds*, that figure does not shrink as the cache itself fills the disk, so a
resumed run gets the same floor; each shard write then needs only ``os.statvfs`` (no listing) and
holds for the whole disk, within one shard per concurrent actor.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import time
from collections.abc import Callable

from raytrain.storage import is_uri

# A temp shard a live writer owns is modified at its creation and by its one write (a shard is one
# decode batch, tens of MB): one not modified for 10 minutes belongs to no live writer, even on a slow
# network filesystem; one named by a pid of this host that is gone is removed at once.
STALE_TEMP_S = 600.0
TEMP_PREFIX, TEMP_SUFFIX = ".shard-", ".tmp"
SAID_PREFIX = ".said-"  # markers of the once-per-run messages: .said-<host>-<pid>-<what>


def writer_token(host: str | None = None, pid: int | None = None) -> str:
    """``<host>-<pid>`` of the process that builds the datasets: its decode actors say each cache
    message once for as long as it lives (:func:`say_once`); its markers go when it is gone."""
    return f"{host or socket.gethostname()}-{pid or os.getpid()}"


def min_free_bytes(free: int, cached: int, fraction: float, reserve_bytes: int, budget_bytes: int = 0) -> int:
    """The free space the cache's writes must leave on its disk: ``reserve_bytes`` always, and without an
    explicit folder budget (``budget_bytes`` 0) also ``1 - fraction`` of the space the cache could use
    (``free`` + ``cached``, what the cache root already holds), so the cache takes at most ``fraction``."""
    floor = int(reserve_bytes)
    if not budget_bytes:
        floor = max(floor, math.ceil((1.0 - fraction) * (int(free) + int(cached))))
    return floor


def bytes_under(root: str) -> int:
    """The size of every file under ``root`` (0 when it does not exist)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass  # removed meanwhile
    return total


def measure_min_free(root: str, fraction: float, reserve_gb: float, budget_gb: float = 0.0,
                     disk_usage: Callable = shutil.disk_usage) -> int:
    """:func:`min_free_bytes` for the cache root ``root`` (``data.cache_max_disk_fraction``,
    ``data.cache_disk_reserve_gb``, ``data.cache_budget_gb``); 0 (no floor) for an object store, whose
    free space is neither measurable nor shared with the run's checkpoints."""
    if is_uri(root):
        return 0
    reserve = round(reserve_gb * 1e9)
    probe = root
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the root is made by the first prepare; measure its disk anyway
    try:
        free = int(disk_usage(probe).free)
    except OSError:
        return reserve
    return min_free_bytes(free, bytes_under(root), fraction, reserve, round(budget_gb * 1e9))


def temp_name(name: str, host: str | None = None, pid: int | None = None) -> str:
    """The hidden name a shard is written under before its rename, naming its writer (host and pid)."""
    return f".{name}.{writer_token(host, pid)}{TEMP_SUFFIX}"


def _owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a :func:`temp_name` or a message marker, None for a name without one."""
    if name.startswith(SAID_PREFIX):
        tail = name[len(SAID_PREFIX):].rpartition("-")[0]
    else:
        tail = name[:-len(TEMP_SUFFIX)].rpartition(".arrow.")[2]
    host, _, pid = tail.rpartition("-")
    return (host, int(pid)) if host and pid.isdigit() else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def is_stale_temp(name: str, age_s: float, host: str, alive: Callable[[int], bool] = pid_alive) -> bool:
    """Whether a temp shard belongs to no live writer: not touched for :data:`STALE_TEMP_S`, or named by
    a process of this host that is gone (a killed decode actor). Another host's recent temp is kept."""
    if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
        return False
    if age_s > STALE_TEMP_S:
        return True
    owner = _owner(name)
    return owner is not None and owner[0] == host and not alive(owner[1])


def remove_stale_temps(folder: str, now: float | None = None, host: str | None = None,
                       alive: Callable[[int], bool] = pid_alive) -> list[str]:
    """Remove the temp shards of ``folder`` that no live writer owns (:func:`is_stale_temp`) and the
    message markers of processes of this host that are gone; returns the temp names removed."""
    if is_uri(folder) or not os.path.isdir(folder):
        return []
    now, host = time.time() if now is None else now, host or socket.gethostname()
    removed = []
    for entry in os.scandir(folder):
        try:
            if entry.name.startswith(SAID_PREFIX):
                owner = _owner(entry.name)
                if owner is None or (owner[0] == host and not alive(owner[1])):
                    os.remove(entry.path)
            elif is_stale_temp(entry.name, now - entry.stat().st_mtime, host, alive):
                os.remove(entry.path)
                removed.append(entry.name)
        except OSError:
            pass  # gone meanwhile (its writer renamed or removed it)
    return removed


def say_once(folder: str, token: str, what: str, message: str) -> bool:
    """Print ``message`` unless another decode actor of the same driver (``token``, a
    :func:`writer_token`) said ``what`` already: the first to create the marker file says it. Where no marker can be made (an object
    store, a disk too full for an empty file) every actor says it. True when printed."""
    if token and not is_uri(folder):
        try:
            os.close(os.open(os.path.join(folder, f"{SAID_PREFIX}{token}-{what}"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        except OSError:
            pass
    print(message, flush=True)
    return True
