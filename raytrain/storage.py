"""``run.storage_path``: a local folder, a shared filesystem path, or a pyarrow URI (``s3://``, ``gs://``).

Ray Train persists checkpoints itself (through ``pyarrow.fs``); this module covers what raytrain writes
next to them: TensorBoard logs and ``metrics.json``, and the check that a multi-node run does not write
to a node-local folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

from raytrain.config import Config

# Filesystem types whose paths every node sees (checked against /proc/mounts by ``run.shared_storage=auto``).
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "glusterfs", "ceph",
              "cephfs", "9p", "virtiofs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "fuse.ceph", "efs")


def is_uri(path: str) -> bool:
    return "://" in path


def join(base: str, *parts: str) -> str:
    """Join path parts without ``pathlib`` (which turns ``s3://b`` into ``s3:/b``)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def run_location(cfg: Config) -> str:
    return join(cfg.run.storage_path, cfg.run.name)


def filesystem(location: str):
    """``(pyarrow filesystem, path inside it)`` for a URI or a local path (made absolute)."""
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(location if is_uri(location) else os.path.abspath(location))


def write_text(location: str, text: str) -> None:
    """Write ``text`` to a local path or a pyarrow URI (parents are created)."""
    if not is_uri(location):
        os.makedirs(os.path.dirname(location) or ".", exist_ok=True)
        with open(location, "w") as f:
            f.write(text)
        return
    fs, path = filesystem(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def read_text(location: str) -> str:
    if not is_uri(location):
        with open(location) as f:
            return f.read()
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def exists(location: str) -> bool:
    """Whether a local path or a URI names an existing file or folder."""
    if not is_uri(location):
        return os.path.exists(location)
    import pyarrow.fs

    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def remove_file(location: str) -> None:
    """Delete a file (local path or URI) if it exists."""
    if not is_uri(location):
        if os.path.exists(location):
            os.remove(location)
        return
    if exists(location):
        fs, path = filesystem(location)
        fs.delete_file(path)


def upload_dir(local_dir: str, location: str) -> None:
    """Copy a local folder's files into ``location`` (a URI), keeping relative paths."""
    import pyarrow.fs

    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)
    pyarrow.fs.copy_files(local_dir, path, source_filesystem=pyarrow.fs.LocalFileSystem(),
                          destination_filesystem=fs)


class TensorBoardLog:
    """A ``SummaryWriter`` that also works for URI storage: it writes into a local temporary folder
    and uploads the event files to ``<run>/tensorboard`` on ``flush()`` and ``close()`` (each run
    segment writes its own event file, so uploads never overwrite an earlier segment's log); while
    logging it uploads at most every ``upload_every_s`` seconds."""

    def __init__(self, location: str, purge_step: int | None = None, upload_every_s: float = 60.0):
        from torch.utils.tensorboard import SummaryWriter

        self.location = location
        self._local = tempfile.mkdtemp(prefix="raytrain_tb_") if is_uri(location) else None
        self.writer = SummaryWriter(self._local or location, purge_step=purge_step)
        self.upload_every_s = upload_every_s  # URI storage: upload at most this often while logging
        self._uploaded = time.monotonic()

    def __getattr__(self, name: str) -> Any:  # add_scalar, add_text, ...
        attr = getattr(self.writer, name)
        if not (self._local and name.startswith("add_")):
            return attr

        def add(*args, **kwargs):
            attr(*args, **kwargs)
            if time.monotonic() - self._uploaded > self.upload_every_s:
                self.flush()

        return add

    def flush(self) -> None:
        self.writer.flush()
        if self._local:
            upload_dir(self._local, self.location)
            self._uploaded = time.monotonic()

    def close(self) -> None:
        self.writer.close()
        if self._local:
            upload_dir(self._local, self.location)
            shutil.rmtree(self._local, ignore_errors=True)
            self._local = None


def tensorboard_log(cfg: Config, purge_step: int | None = None) -> TensorBoardLog:
    return TensorBoardLog(join(run_location(cfg), "tensorboard"), purge_step=purge_step)


def mount_fstype(path: str, mounts_file: str = "/proc/mounts") -> str | None:
    """The filesystem type of the mount holding ``path`` (longest mount-point prefix), or None."""
    path = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open(mounts_file) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def storage_is_shared(cfg: Config, mounts_file: str = "/proc/mounts") -> tuple[bool, str]:
    """Whether every node sees ``run.storage_path``, and why (for the error message)."""
    path, declared = cfg.run.storage_path, cfg.run.shared_storage
    if is_uri(path):
        return True, "a URI"
    if declared is True:
        return True, "declared shared (run.shared_storage=true)"
    if declared is False:
        return False, "declared node-local (run.shared_storage=false)"
    probe = path
    while probe and not os.path.exists(probe):  # the run folder may not exist yet
        probe = os.path.dirname(probe.rstrip("/"))
    fstype = mount_fstype(probe or "/", mounts_file)
    if fstype and (fstype in NETWORK_FS or fstype.split(".")[0] in NETWORK_FS):
        return True, f"on a {fstype} mount"
    return False, f"a local folder ({fstype or 'unknown'} filesystem)"


def alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def check_shared_storage(cfg: Config, nodes: list[dict] | None = None, mounts_file: str = "/proc/mounts") -> None:
    """Refuse a multi-node run whose ``run.storage_path`` only one node can see: its workers would
    each write checkpoints to their own disk and a restart would not find them."""
    nodes = alive_nodes() if nodes is None else nodes
    if len(nodes) <= 1:
        return  # single node: any local folder works
    shared, why = storage_is_shared(cfg, mounts_file)
    if not shared:
        raise ValueError(
            f"config key 'run.storage_path': '{cfg.run.storage_path}' is {why}, but the Ray cluster has "
            f"{len(nodes)} alive nodes; use an s3:// or gs:// URI or a shared filesystem path, and set "
            f"run.shared_storage=true if that path is shared (NFS mounted the same way on every node)")
