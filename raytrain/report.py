"""Plain-text tables of retrieval metrics for the terminal."""

from __future__ import annotations

from collections.abc import Mapping

COLUMNS = [("t2v_R1", "R@1"), ("t2v_R5", "R@5"), ("t2v_R10", "R@10"), ("t2v_MdR", "MdR"), ("t2v_MnR", "MnR"),
           ("v2t_R1", "R@1"), ("v2t_R5", "R@5"), ("v2t_R10", "R@10"), ("v2t_MdR", "MdR"), ("v2t_MnR", "MnR")]


def metrics_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """One line per model; text→video columns, then video→text."""
    name_w = max(12, *(len(n) for n in rows))
    head1 = " " * name_w + " | " + "text -> video".center(39) + " | " + "video -> text".center(39)
    head2 = "model".ljust(name_w) + " | " + " ".join(f"{c:>7}" for _, c in COLUMNS[:5]) + " | " + \
        " ".join(f"{c:>7}" for _, c in COLUMNS[5:])
    lines = [head1, head2, "-" * len(head2)]
    for name, m in rows.items():
        cells = [f"{m[k]:7.1f}" if k in m else f"{'-':>7}" for k, _ in COLUMNS]
        lines.append(name.ljust(name_w) + " | " + " ".join(cells[:5]) + " | " + " ".join(cells[5:]))
    return "\n".join(lines)
