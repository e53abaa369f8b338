"""``raytrain config``: every config key with its default, type, allowed values and meaning, read from
the sections themselves (dataclass fields, their checks, and the comments beside them in
``sections.py``), so the reference cannot drift from the code; and a config resolved as YAML."""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import tokenize
import typing
from dataclasses import dataclass
from typing import Any, Literal

from raytrain.config.parse import _type_name
from raytrain.config.sections import Config

_FIELD = re.compile(r"^\s+(\w+)\s*:")


@dataclass(frozen=True)
class KeyDoc:
    key: str  # dotted, e.g. train.log_every
    default: Any
    type: str
    allowed: str  # the Literal's values, or the field's check ("" when any value of the type goes)
    meaning: str  # the comments beside the field (or the section's docstring's first line)


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the class source: the comment lines right above a field and the comment
    at the end of its line, joined."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    comments: dict[int, str] = {}  # line number (1-based) -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out: dict[str, str] = {}
    above: list[str] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(comments.get(number, ""))
            continue
        found = _FIELD.match(line)
        if found and not stripped.startswith(("def ", "return", "@")):
            parts = [*above, comments.get(number, "")] if number in comments else above
            text = " ".join(p for p in parts if p)
            if text:
                out[found.group(1)] = text
        above = []
    return out


def _allowed(f: dataclasses.Field, tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return ", ".join(repr(a) for a in typing.get_args(tp))
    check = f.metadata.get("check")
    return check.what if check is not None else ""


def key_docs(cls: type = Config, prefix: str = "") -> list[KeyDoc]:
    """Every leaf key of ``cls`` (nested sections walked), in declaration order."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    doc = inspect.getdoc(cls) or ""
    section_doc = "" if doc.startswith(cls.__name__ + "(") else doc.split("\n")[0]  # not dataclass's signature
    out: list[KeyDoc] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += key_docs(tp, prefix + f.name + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(KeyDoc(prefix + f.name, default, _type_name(tp), _allowed(f, tp),
                          comments.get(f.name) or section_doc))
    return out


def reference_text(docs: list[KeyDoc] | None = None) -> str:
    """The reference: one block per key (``key = default  (type; allowed)`` then its meaning)."""
    docs = key_docs() if docs is None else docs
    lines = [f"{len(docs)} config keys (YAML sections, or key=value overrides on any command):", ""]
    section = None
    for d in docs:
        head = d.key.rsplit(".", 1)[0]
        if head != section:
            section = head
            lines.append(f"[{section}]")
        kind = d.type if not d.allowed or d.allowed in d.type else f"{d.type}; {d.allowed}"
        if d.type.startswith("one of "):
            kind = d.type
        lines.append(f"  {d.key} = {d.default!r}  ({kind})")
        if d.meaning:
            lines.append(f"      {d.meaning}")
    return "\n".join(lines)


def resolved_yaml(cfg: Config) -> str:
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
