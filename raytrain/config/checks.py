"""Checks that sit beside the config fields they guard: ``knob(default, check)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raytrain.eval.metrics import REPORTED_METRICS


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key (and the file when there is one)."""


@dataclass(frozen=True)
class Check:
    ok: Callable[[Any], bool]
    what: str  # what the value must be, e.g. ">= 1"


def at_least(n: float, note: str = "") -> Check:
    return Check(lambda v: v >= n, f">= {n:g}" + (f" ({note})" if note else ""))


def above(n: float, note: str = "") -> Check:
    return Check(lambda v: v > n, f"> {n:g}" + (f" ({note})" if note else ""))


def within(low: float, high: float, closed: str = "") -> Check:
    """``low < v < high``; ``closed`` names the closed ends: "low", "high" or "both"."""
    lo, hi = closed in ("low", "both"), closed in ("high", "both")
    return Check(lambda v: (v >= low if lo else v > low) and (v <= high if hi else v < high),
                 f"in {'[' if lo else '('}{low:g}, {high:g}{']' if hi else ')'}")


def reported_metric(allow_empty: bool = False) -> Check:
    names = ", ".join(REPORTED_METRICS)
    return Check(lambda v: v in REPORTED_METRICS or (allow_empty and v == ""),
                 f"a reported metric ({names})" + (" or ''" if allow_empty else ""))


def knob(default: Any, check: Check | None = None) -> Any:
    """A config field with its check (run after the type is right)."""
    return field(default=default, metadata={"check": check} if check else {})


def fail(key: str, what: str, value: Any) -> tuple[str, str]:
    return key, f"must be {what} (got {value!r})"
