"""The report's and the review page's score plot, drawn by matplotlib (axes, labels and legend kept right by
a well-kept library rather than hand-placed SVG). SVG with its text kept as text, so a page can be searched and a
test can read what the plot says."""
from __future__ import annotations

import io

import numpy as np

TTC_AXIS_S = 5.0  # the time-to-collision axis runs from 0 to this many seconds


def score_plot_svg(t: np.ndarray, s: np.ndarray, start: float, end: float, peak: float, duration: float,
                   label: tuple[float | None, float | None] | None = None,
                   ttc: tuple[np.ndarray, np.ndarray] | None = None, threshold: float = 0.5,
                   width_in: float = 8.0, height_in: float = 2.8) -> str:
    """Near-miss score over time: the incident shaded, its peak marked, the alarm level in force as a dotted line,
    the labelled event as a green band, and the named road user's time-to-collision on a second axis."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig = Figure(figsize=(width_in, height_in), dpi=100)
        ax = fig.add_subplot()
        span = max(float(duration or (t[-1] if len(t) else 1.0)), 1e-3)
        ax.axvspan(start, end, color="#f4a261", alpha=0.35, label="incident")
        if label is not None and label[0] is not None:
            ax.axvspan(label[0], label[1] if label[1] is not None else label[0] + 0.05, ymin=0.93, ymax=1.0,
                       color="#2a9d8f", label="labelled event")
        ax.plot(t, s, color="#c1121f", linewidth=1.8, label="near-miss score")
        ax.axhline(threshold, color="#555", linestyle=":", linewidth=1.2, label=f"alarm level {threshold:.2f}")
        ax.axvline(peak, color="#333", linestyle="--", linewidth=0.8, label=f"peak {peak:.1f} s")
        ax.set_xlim(0, span)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("time in the clip (s)")
        ax.set_ylabel("near-miss score")
        handles, names = ax.get_legend_handles_labels()
        if ttc is not None and len(ttc[0]):
            tx = ax.twinx()
            shown = np.clip(np.nan_to_num(np.asarray(ttc[1], np.float64), posinf=TTC_AXIS_S), 0, TTC_AXIS_S)
            tx.plot(ttc[0], shown, color="#1d4ed8", linestyle="--", linewidth=1.2, label="time-to-collision")
            tx.set_ylim(0, TTC_AXIS_S * 1.05)
            tx.set_ylabel(f"time-to-collision (s, {TTC_AXIS_S:g} = none)", color="#1d4ed8")
            h2, n2 = tx.get_legend_handles_labels()
            handles, names = handles + h2, names + n2
        ax.legend(handles, names, loc="lower left", bbox_to_anchor=(0, 1.01), fontsize=7, ncol=6, frameon=False)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
    return buf.getvalue()
