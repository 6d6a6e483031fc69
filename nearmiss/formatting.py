"""Rows to text: an aligned table for people, CSV and JSON for programs."""
from __future__ import annotations

import csv
import io
import json
import textwrap
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


def _wrapped_row(cells: list[str], widths: list[int]) -> list[str]:
    """One row as one or more lines: a cell wider than its column (a JSON object from `runs.counts`, a long
    error) continues on the next lines, broken between words, so it stays whole and readable."""
    parts = [textwrap.wrap(c, w, break_on_hyphens=False, replace_whitespace=False) or [""]
             for c, w in zip(cells, widths)]
    return [" | ".join((p[k] if k < len(p) else "").ljust(w) for p, w in zip(parts, widths)).rstrip()
            for k in range(max(len(p) for p in parts))]


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
        lines += _wrapped_row(r, widths)
    more = f" (showing {max_rows})" if len(rows) > max_rows else ""
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
    return "\n".join(lines) + "\n"


def _num(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def format_evaluation(ref: str, split: str, m: dict) -> str:
    """The evaluation of one head as a person reads it."""
    lines = [f"{ref} on the {split} split ({m['clips']} clips)",
             f"  recognition accuracy (4 classes)   {_num(m['recognition_accuracy'])}",
             f"  near-miss detection accuracy       {_num(m['detection_accuracy'])}",
             f"  near-miss AP (clip level)          {_num(m.get('near_miss_ap'))}"]
    t = m.get("temporal")
    if t:
        f5 = t["event_f1@0.5"]
        lines += [f"  event AP @ tIoU 0.3 / 0.5          {_num(t['ap@0.3'])} / {_num(t['ap@0.5'])}",
                  f"  event F1 @ tIoU 0.5                {_num(f5['f1'])} (P {_num(f5['precision'])}, "
                  f"R {_num(f5['recall'])}; {f5['tp']} of {f5['true']} events, {f5['predicted']} predicted)",
                  f"  peak time error (matched events)   {_num(t['peak_mae_s'], 2)} s"]
    a = m.get("anticipation")
    if a:
        lines += [f"  anticipation: video AP {_num(a['ap'])}, mTTA {_num(a['mtta_s'], 2)} s, "
                  f"TTA@R80 {_num(a['tta_r80_s'], 2)} s"]
    per = m["per_class"]
    rows = [(c, _num(v["precision"]), _num(v["recall"]), _num(v["f1"]), v["support"]) for c, v in per.items()]
    lines += ["", format_rows(["class", "precision", "recall", "f1", "clips"], rows, "table").rstrip()]
    cm = m["confusion_matrix"]
    header = ["true \\ predicted"] + cm["classes"]
    rows = [(c, *r) for c, r in zip(cm["classes"], cm["rows_true_cols_predicted"])]
    lines += ["", format_rows(header, rows, "table").rstrip()]
    return "\n".join(lines)
