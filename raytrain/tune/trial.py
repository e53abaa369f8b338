"""A sweep trial: its function (a Tune function trainable) and the protocol between it and its Ray
Train run, both halves in one object.

A trial (a Tune function trainable) drives a Train run whose workers run in their own placement
group. Two files in the run folder carry the protocol, so it works on local and remote storage alike:

- the **stop request**: when Tune decides to stop the trial (ASHA), the sweep driver writes it
  (``callbacks.ForwardTrialStops``); the training loop asks ``stop_requested()`` and ends cleanly
  after a checkpoint;
- the **placement group record**: rank 0 writes its group's id when the loop starts; when the trial
  ends, ``release()`` removes the group, ending any worker still running and freeing its CPUs (Tune
  may end the trial's process before Train's controller has released them).
"""

from __future__ import annotations

from dataclasses import dataclass

from raytrain.storage import exists, join, read_text, remove_file, write_text

STOP_FILE = "STOP_REQUESTED"
PLACEMENT_GROUP_FILE = "train_placement_group"


@dataclass(frozen=True)
class TrialControl:
    run_location: str  # the trial's Train run folder (local path or URI)

    @property
    def stop_file(self) -> str:
        return join(self.run_location, STOP_FILE)

    @property
    def placement_group_file(self) -> str:
        return join(self.run_location, PLACEMENT_GROUP_FILE)

    # ---- the trial's half (the Tune actor, or the sweep driver's callbacks)

    def reset(self) -> None:
        """A resumed trial goes on: forget an earlier stop request."""
        remove_file(self.stop_file)

    def request_stop(self, reason: str = "stopped by the sweep's scheduler") -> None:
        write_text(self.stop_file, reason + "\n")

    def release(self) -> None:
        """Remove the placement group the training loop recorded (a no-op if none or already gone)."""
        import ray
        from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

        try:
            pg_id = read_text(self.placement_group_file).strip()
        except OSError:
            return
        if not pg_id:
            return
        # Public handles (ray.PlacementGroupID, util.PlacementGroup): Train names no group we could look up.
        group = PlacementGroup(ray.PlacementGroupID.from_hex(pg_id))
        if placement_group_table(group).get("state") not in (None, "REMOVED"):
            remove_placement_group(group)

    # ---- the Train run's half (rank 0 of the training loop)

    def record_placement_group(self) -> None:
        from ray.util import get_current_placement_group

        pg = get_current_placement_group()
        write_text(self.placement_group_file, pg.id.hex() if pg is not None else "")

    def stop_requested(self) -> bool:
        return exists(self.stop_file)
