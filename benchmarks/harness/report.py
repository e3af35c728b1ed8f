"""Figures (median, min and max of their rounds), their ratios to baselines,
targets, the printed table and the JSON document."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    rounds: list[float] = field(default_factory=list)
    baseline: str | None = None  # key of the figure this one is divided by
    target: str = ""  # human text, e.g. ">= 0.30 x baseline", "<= 15 ms"
    check: Callable[[float | None, float | None], bool] | None = None  # (value, ratio) -> met
    note: str = ""
    group: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # set when the figure could not be measured

    @property
    def value(self) -> float | None:
        return statistics.median(self.rounds) if self.rounds else None

    @property
    def min(self) -> float | None:
        return min(self.rounds) if self.rounds else None

    @property
    def max(self) -> float | None:
        return max(self.rounds) if self.rounds else None


GROUPS = [
    "baselines",
    "against the CRUD baseline",
    "commands",
    "history",
    "audit",
    "queries",
    "rebuild",
    "memory",
    "workers",
    "against the previous run",
    "load generator and background",
]


class Figures:
    def __init__(self) -> None:
        self.items: dict[str, Figure] = {}

    def add(self, figure: Figure) -> Figure:
        self.items[figure.key] = figure
        return figure

    def get(self, key: str) -> Figure | None:
        return self.items.get(key)

    def ratio(self, f: Figure) -> float | None:
        if f.baseline is None or f.value is None:
            return None
        base = self.items.get(f.baseline)
        if base is None or not base.value:
            return None
        return f.value / base.value

    def met(self, f: Figure) -> bool | None:
        if f.check is None:
            return None
        if f.value is None:
            return False if f.error is None else None
        return bool(f.check(f.value, self.ratio(f)))

    def rows(self) -> list[dict[str, Any]]:
        out = []
        order = {g: i for i, g in enumerate(GROUPS)}
        figures = sorted(self.items.values(), key=lambda f: order.get(f.group, len(order)))
        for f in figures:
            base = self.items.get(f.baseline) if f.baseline else None
            ratio = self.ratio(f)
            out.append(
                {
                    "key": f.key,
                    "group": f.group,
                    "figure": f.label,
                    "value": _round(f.value),
                    "min": _round(f.min),
                    "max": _round(f.max),
                    "rounds": [_round(v) for v in f.rounds],
                    "unit": f.unit,
                    "baseline_key": f.baseline,
                    "baseline": base.label if base else None,
                    "baseline_value": _round(base.value) if base else None,
                    "ratio": _round(ratio, 3) if ratio is not None else None,
                    "target": f.target or None,
                    "met": self.met(f),
                    "note": f.note or None,
                    "error": f.error,
                    "detail": f.detail,
                }
            )
        return out


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    header = ["figure", "value", "min..max", "unit", "baseline", "ratio", "target", "met?"]
    lines: list[list[str]] = []
    groups: list[tuple[int, str]] = []
    current = None
    for r in rows:
        if r["group"] != current:
            current = r["group"]
            groups.append((len(lines), current))
        if r["error"] and r["value"] is None:
            value, spread = "n/a", ""
        else:
            value = fmt(r["value"])
            spread = f"{fmt(r['min'])}..{fmt(r['max'])}" if len(r["rounds"]) > 1 else "(1 round)"
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        if r["error"] and r["value"] is None:
            met = "n/a" if r["target"] else ""
        elif r["error"]:
            met = (met + " ERR").strip()  # failed requests: see the JSON's error
        base = f"{r['baseline_key']}" if r["baseline_key"] else ""
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        lines.append(
            [f"{r['key']} {r['figure']}", value, spread, r["unit"], base, ratio, r["target"] or "", met]
        )
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for line in lines:
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |")
        return "\n".join(out)
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)
    ]
    sep = "  "
    out = [
        sep.join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        sep.join("-" * w for w in widths),
    ]
    group_at = dict(groups)
    for i, line in enumerate(lines):
        if group_at.get(i):
            out.append(f"[{group_at[i]}]")
        cells = [
            c.ljust(w) if j in (0, 3, 4, 6, 7) else c.rjust(w)
            for j, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append(sep.join(cells).rstrip())
    return "\n".join(out)


def machine_line(m: dict[str, Any]) -> str:
    if not m:
        return ""
    git = m.get("service_git") or {}
    commit = f"; service at {git['commit'][:10]}" if git.get("commit") else ""
    if git.get("dirty_files"):
        commit += f" + {git['dirty_files']} uncommitted files"
    pg = m.get("postgresql", "").split(" on ")[0]
    settings = m.get("postgresql_settings") or {}
    pg_set = ", ".join(
        f"{k}={v}" for k, v in settings.items() if k in ("shared_buffers", "synchronous_commit")
    )
    return (
        f"{m['nproc']} cores {m['cpu_model']}, {m['memory_gb']} GB, {pg} ({pg_set}), Python {m['python']}, "
        f"{m.get('wrk', '').split(' [')[0]}{commit}"
    )


def markdown(doc: dict[str, Any], quick: bool) -> str:
    lines = [
        f"# racer-profiles benchmark {doc['started_utc']}{' (quick)' if quick else ''}",
        "",
        f"`python benchmarks/run.py --out results.json{' --quick' if quick else ''}`: "
        f"{doc['runtime_s']:.0f}s{'' if doc['complete'] else ' (INCOMPLETE)'}.",
        "",
        f"Machine: {machine_line(doc.get('machine') or {})}.",
        "",
        table(doc["figures"], markdown=True),
        "",
    ]
    lines += [f"- {r['key']}: {r['error']}" for r in doc["figures"] if r["error"]]
    lines += [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"
