"""One config object, from YAML (plus ``key=value`` overrides) to every component.

Sections are frozen dataclasses. Each field's check sits beside it (``knob(default, check)``); rules
that tie fields together are a section's ``check()`` (within it) or ``Config.check()`` (across
sections). Loading checks every key and value and names the offending key and file.
``Config.to_dict`` round-trips through ``Config.from_dict`` so the config can travel to Ray workers
and into checkpoints as plain data; configs written before the train section was split by concern
still load (``LEGACY_KEYS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from raytrain.config.checks import Check, ConfigError, knob
from raytrain.config.parse import LEGACY_KEYS, merge_override, parse_override
from raytrain.config.sections import (
    CheckpointSection,
    Config,
    DataSection,
    DmaeSection,
    EvalSection,
    FaultsSection,
    MascotSection,
    MaskSection,
    MethodSection,
    MilesSection,
    ModelSection,
    NegNCESection,
    OptimSection,
    RaySection,
    RunSection,
    ScalingSection,
    SweepSection,
    TpmclSection,
    TrainSection,
)

__all__ = [
    "LEGACY_KEYS", "Check", "CheckpointSection", "Config", "ConfigError", "DataSection", "DmaeSection",
    "EvalSection", "FaultsSection", "MascotSection", "MaskSection", "MethodSection", "MilesSection",
    "ModelSection", "NegNCESection", "OptimSection", "RaySection", "RunSection", "ScalingSection",
    "SweepSection", "TpmclSection", "TrainSection", "apply_overrides", "dump_config", "knob", "load_config",
    "parse_override",
]


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    data = cfg.to_dict()
    for text in overrides:
        parts, value = parse_override(text)
        merge_override(data, parts, value)
    return Config.from_dict(data, source="overrides " + " ".join(overrides))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load YAML at ``path`` (or the defaults), then apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from exc
    for text in overrides:
        parts, value = parse_override(text)
        merge_override(data, parts, value)
        source = f"{source} (with overrides)" if "overrides" not in source else source
    return Config.from_dict(data, source=source)


def dump_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
