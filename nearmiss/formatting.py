"""Rows to text: an aligned table for people, CSV and JSON for programs."""
from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal


def _cell(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) > 6:
        return "[" + ", ".join(_cell(x) for x in v[:4]) + f", ... {len(v)} values]"
    return str(v)


def _json_default(v):
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return str(v)


def format_rows(columns: list[str], rows: list[tuple], fmt: str = "table", max_rows: int = 200) -> str:
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(columns)
        w.writerows(rows)
        return buf.getvalue()
    if fmt == "json":
        return json.dumps([dict(zip(columns, r)) for r in rows], default=_json_default, indent=1) + "\n"
    shown = [[_cell(v) for v in r] for r in rows[:max_rows]]
    widths = [min(60, max([len(c)] + [len(r[i]) for r in shown])) for i, c in enumerate(columns)]
    clip = lambda s, w: s if len(s) <= w else s[: w - 1] + "…"  # noqa: E731
    lines = [" | ".join(clip(c, w).ljust(w) for c, w in zip(columns, widths)),
             "-+-".join("-" * w for w in widths)]
    for r in shown:
        lines.append(" | ".join(clip(v, w).ljust(w) for v, w in zip(r, widths)))
    more = f" (showing {max_rows})" if len(rows) > max_rows else ""
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
    return "\n".join(lines) + "\n"
