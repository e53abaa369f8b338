"""From plain data (YAML, overrides) to typed sections: type coercion, per-field and per-section
checks, ``key=value`` parsing, and the legacy train keys. Knows no particular section."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

from raytrain.config.checks import ConfigError, fail

LEGACY_KEYS = {
    "train.num_workers": "scaling.num_workers", "train.use_gpu": "scaling.use_gpu",
    "train.cpus_per_worker": "scaling.cpus_per_worker", "train.placement_strategy": "scaling.placement_strategy",
    "train.torch_threads": "scaling.torch_threads", "train.checkpoint_every": "checkpoint.every",
    "train.keep_checkpoints": "checkpoint.keep", "train.keep_best_by": "checkpoint.keep_best_by",
    "train.keep_best_order": "checkpoint.keep_best_order", "train.eval_at_end": "eval.at_end",
    "train.eval_every": "eval.every", "train.fault_kill_at_step": "faults.kill_at_step",
    "train.fault_kill_rank": "faults.kill_rank",
    "train.fault_checkpoint_crash_at_step": "faults.checkpoint_crash_at_step",
    "train.fault_nan_at_step": "faults.nan_at_step",
}


def migrate_legacy(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with every ``LEGACY_KEYS`` key moved to its new place (a copy; ``data`` itself if none)."""
    train = data.get("train") if isinstance(data, Mapping) else None
    if not isinstance(train, Mapping) or not any(f"train.{k}" in LEGACY_KEYS for k in train):
        return data
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for key in [k for k in train if f"train.{k}" in LEGACY_KEYS]:
        section, name = LEGACY_KEYS[f"train.{key}"].split(".")
        target = out[section] = dict(out.get(section) or {})
        if name in target:
            raise ConfigError(f"config keys 'train.{key}' (old name) and '{section}.{name}' are both set")
        target[name] = out["train"].pop(key)
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key '{key}' must be {_type_name(tp)} (got {value!r}) in {source}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise ConfigError(f"config key '{key}' has an unsupported type {tp} (internal error)")


def build(cls: type, data: Mapping[str, Any], prefix: str, source: str) -> Any:
    if not isinstance(data, Mapping):
        where = f"section '{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ConfigError(f"config {where} must be a mapping (got {type(data).__name__}) in {source}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}' in {source}; "
                              f"valid keys here: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        key = prefix + f.name
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = build(tp, data[f.name] or {}, key + ".", source)
        else:
            kwargs[f.name] = _coerce(data[f.name], tp, key, source)
    obj = cls(**kwargs)
    problems = [(prefix + f.name, fail(f.name, f.metadata["check"].what, getattr(obj, f.name))[1])
                for f in dataclasses.fields(cls)
                if "check" in f.metadata and not f.metadata["check"].ok(getattr(obj, f.name))]
    if hasattr(obj, "check"):  # the section's (or, at the top, the whole config's) rules across fields
        problems += [(prefix + key, what) for key, what in obj.check()]
    if problems:
        key, what = problems[0]
        raise ConfigError(f"config key '{key}' {what} in {source}")
    return obj


_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # not "24e38_00000" (a name)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` → (["train", "lr"], 0.0003); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (e.g. train.epochs=2)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    # YAML reads 1e-4 as a string (no dot); accept plain numeric spellings as numbers.
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)
    return key.split("."), value


def merge_override(data: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"override key '{'.'.join(parts)}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value
