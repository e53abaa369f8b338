"""Search spaces: a small declarative YAML format, validated against the config before any trial runs.

```yaml
# search_spaces/mascot_mask_ratios.yaml
description: MASCOT high/low mask ratios
space:
  mask.high_ratio: {grid: [0.2, 0.3, 0.5]}      # every value, crossed with the other grid keys
  mask.low_ratio: {uniform: [0.1, 0.5]}          # sampled, train.num_samples times
  method.mascot.lambda_rec: {loguniform: [0.1, 10]}
  train.batch_size: {choice: [16, 32]}           # sampled (random search) or a grid axis (grid search)
  train.seed: {randint: [0, 1000]}               # low inclusive, high exclusive (numpy/Tune convention)
```

Every key must be a config key, and every value a grid/choice lists, both bounds of a range and the
integer-ness of ``randint`` must be valid for that key: errors name the file and the key. Ray Tune is
imported only by ``to_tune``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raytrain.config import Config, ConfigError

KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
SEARCHES = ("random", "grid")


class SpaceError(ValueError):
    """A search space that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Param:
    key: str  # dotted config key, e.g. "mask.high_ratio"
    kind: str  # one of KINDS
    values: tuple[Any, ...]  # grid/choice: the values; uniform/loguniform/randint: (low, high)

    @property
    def is_range(self) -> bool:
        return self.kind in ("uniform", "loguniform", "randint")


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    source: str = "<space>"
    description: str = ""

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def grid_size(self, search: str) -> int:
        """Trials per sample: the product of the grid axes (``choice`` is one too under grid search)."""
        n = 1
        for p in self.params:
            if p.kind == "grid" or (search == "grid" and p.kind == "choice"):
                n *= len(p.values)
        return n

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (``load_space_dict`` reads it back)."""
        space = {p.key: {p.kind: list(p.values)} for p in self.params}
        return {"description": self.description, "space": space} if self.description else {"space": space}


def load_space(path: str | Path, cfg: Config) -> SearchSpace:
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"search space file '{path}' not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpaceError(f"search space file '{path}' is not valid YAML: {exc}") from exc
    return load_space_dict(data, cfg, source=str(path))


def load_space_dict(data: Any, cfg: Config, source: str = "<space>") -> SearchSpace:
    if not isinstance(data, Mapping) or "space" not in data:
        raise SpaceError(f"search space {source} must be a mapping with a 'space' section "
                         f"(config key -> {{grid|choice|uniform|loguniform|randint: ...}})")
    unknown = sorted(set(data) - {"space", "description"})
    if unknown:
        raise SpaceError(f"search space {source}: unknown top-level key '{unknown[0]}' "
                         f"(valid: 'space', 'description')")
    space = data["space"]
    if not isinstance(space, Mapping) or not space:
        raise SpaceError(f"search space {source}: 'space' must be a non-empty mapping of config keys")
    params = tuple(_parse_param(str(key), spec, cfg, source) for key, spec in space.items())
    return SearchSpace(params, source, str(data.get("description") or ""))


def _parse_param(key: str, spec: Any, cfg: Config, source: str) -> Param:
    current = _check_key(key, cfg, source)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise SpaceError(f"search space {source}: key '{key}' must map to exactly one of "
                         f"{', '.join(KINDS)} (e.g. {{grid: [0.2, 0.3]}}), got {spec!r}")
    kind, values = next(iter(spec.items()))
    if kind not in KINDS:
        raise SpaceError(f"search space {source}: key '{key}' has unknown kind '{kind}' "
                         f"(valid: {', '.join(KINDS)})")
    if not isinstance(values, list) or not values:
        raise SpaceError(f"search space {source}: key '{key}': {kind} needs a non-empty list, got {values!r}")
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2 or not all(_is_number(v) for v in values):
            raise SpaceError(f"search space {source}: key '{key}': {kind} needs [low, high] numbers, "
                             f"got {values!r}")
        low, high = values
        if not low < high:
            raise SpaceError(f"search space {source}: key '{key}': {kind} needs low < high, got {values!r}")
        if kind == "loguniform" and low <= 0:
            raise SpaceError(f"search space {source}: key '{key}': loguniform needs low > 0, got {values!r}")
        if kind == "randint":
            if not all(isinstance(v, int) for v in values):
                raise SpaceError(f"search space {source}: key '{key}': randint needs integer bounds, "
                                 f"got {values!r}")
            candidates = [low, high - 1]  # high is exclusive
        else:
            candidates = [float(low), float(high)]
    else:
        if len(set(map(repr, values))) != len(values):
            raise SpaceError(f"search space {source}: key '{key}': {kind} lists a value twice: {values!r}")
        candidates = list(values)
    if kind in ("uniform", "loguniform") and not isinstance(current, float):
        raise SpaceError(f"search space {source}: key '{key}' holds {type(current).__name__} values; "
                         f"{kind} samples floats (use randint or choice)")
    for value in candidates:  # the config's own types and rules decide what a key accepts
        try:
            cfg.replace(**{key: value})
        except ConfigError as exc:
            raise SpaceError(f"search space {source}: key '{key}': value {value!r} is not valid: {exc}") from None
    return Param(key, kind, tuple(values))


def _check_key(key: str, cfg: Config, source: str) -> Any:
    """The key's current value; errors for a key the config does not have or that cannot be searched."""
    obj: Any = cfg
    walked = []
    for part in key.split("."):
        if not hasattr(obj, "__dataclass_fields__") or part not in obj.__dataclass_fields__:
            where = ".".join(walked) or "the top level"
            valid = sorted(obj.__dataclass_fields__) if hasattr(obj, "__dataclass_fields__") else []
            raise SpaceError(f"search space {source}: '{key}' is not a config key ('{part}' is not in "
                             f"{where}; valid there: {valid})")
        obj = getattr(obj, part)
        walked.append(part)
    if hasattr(obj, "__dataclass_fields__"):
        raise SpaceError(f"search space {source}: '{key}' is a config section, not a key")
    if key.startswith(("run.", "ray.", "sweep.")):
        raise SpaceError(f"search space {source}: '{key}' cannot be searched (run, ray and sweep keys "
                         f"belong to the sweep itself)")
    return obj


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_search(space: SearchSpace, search: str) -> None:
    """Grid search enumerates: every key must be a grid or a choice (a range has no finite grid)."""
    if search not in SEARCHES:
        raise SpaceError(f"config key 'sweep.search' must be one of {SEARCHES} (got {search!r})")
    if search == "grid":
        ranged = [p.key for p in space.params if p.is_range]
        if ranged:
            raise SpaceError(f"search space {space.source}: sweep.search=grid cannot enumerate the range of "
                             f"'{ranged[0]}'; use grid/choice values or sweep.search=random")


def to_tune(space: SearchSpace, search: str) -> dict[str, Any]:
    """The Tune ``param_space`` (flat: dotted config keys → Tune domains)."""
    from ray import tune

    check_search(space, search)
    out: dict[str, Any] = {}
    for p in space.params:
        if p.kind == "grid" or (p.kind == "choice" and search == "grid"):
            out[p.key] = tune.grid_search(list(p.values))
        elif p.kind == "choice":
            out[p.key] = tune.choice(list(p.values))
        elif p.kind == "uniform":
            out[p.key] = tune.uniform(float(p.values[0]), float(p.values[1]))
        elif p.kind == "loguniform":
            out[p.key] = tune.loguniform(float(p.values[0]), float(p.values[1]))
        else:
            out[p.key] = tune.randint(int(p.values[0]), int(p.values[1]))
    return out


def apply_params(cfg: Config, params: Mapping[str, Any]) -> Config:
    """A trial's config: the base config with the sampled values (numpy scalars made plain)."""
    return cfg.replace(**{k: (v.item() if hasattr(v, "item") else v) for k, v in sorted(params.items())})
