"""The LiqMap PNG: time × price heatmap of estimated liquidation notional (longs and shorts in their own colours),
the price path, realised liquidation prints, the current price and the accuracy footnote (matplotlib, Agg)."""
from __future__ import annotations

import io
import textwrap
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402

from .liqmap.view import View  # noqa: E402
from .liqmap.read import money, price_text  # noqa: E402

LONG_RGB, SHORT_RGB = (1.0, 0.45, 0.1), (0.2, 0.75, 1.0)      # long liquidations orange, short cyan
BACKGROUND = "#10141c"


def _ramp(rgb: tuple[float, float, float], name: str) -> LinearSegmentedColormap:
    """Transparent at zero, the full colour at the top: two layers can sit on one axis."""
    return LinearSegmentedColormap.from_list(name, [(*rgb, 0.0), (*rgb, 0.55), (*rgb, 1.0)])


def _dt(ms: int) -> float:
    return mdates.date2num(datetime.fromtimestamp(ms / 1000, timezone.utc))


def _prints(ax, v: View, bucket_ms: int) -> None:
    """Realised prints summed per time bucket and side, drawn at their notional-weighted price (at most ~100
    markers a side: a week of one-second prints would hide the price path)."""
    for side, rgb, marker, label in (("long", LONG_RGB, "v", "longs liquidated (prints, a floor)"),
                                     ("short", SHORT_RGB, "^", "shorts liquidated (prints, a floor)")):
        buckets: dict[int, list[float]] = {}
        for p in v.prints:
            if p.side == side:
                b = buckets.setdefault(p.ts // bucket_ms, [0.0, 0.0])
                b[0] += p.notional
                b[1] += p.notional * p.price
        if not buckets:
            continue
        keys = sorted(buckets)
        notional = np.array([buckets[k][0] for k in keys])
        ax.scatter([_dt(k * bucket_ms + bucket_ms // 2) for k in keys], [buckets[k][1] / buckets[k][0] for k in keys],
                   s=8 + 140 * np.sqrt(notional / notional.max()), marker=marker, color=rgb, edgecolors="white",
                   linewidths=0.5, alpha=0.9, label=label, zorder=3)


def render(v: View) -> bytes:
    with plt.rc_context({"text.parse_math": False}):     # "$" is a dollar here, not mathtext
        return _render(v)


def _render(v: View) -> bytes:
    m, steps, r, h = v.map, v.steps, v.reading, v.heatmap
    longs, shorts = h.longs, h.shorts
    both = np.concatenate([longs[longs > 0], shorts[shorts > 0]])
    top = float(np.percentile(both, 99)) if both.size else 1.0      # a few huge bins do not wash out the rest
    step_ms = steps[1].ts - steps[0].ts if len(steps) > 1 else 300_000
    x_edges = [_dt(t) for t in h.times] + [_dt(steps[-1].ts + step_ms)]
    y_edges = [(1 + m.params.bin_fraction) ** b for b in range(h.b_lo, h.b_hi + 2)]

    fig, ax = plt.subplots(figsize=(9, 6), dpi=100)
    fig.patch.set_facecolor("white")
    ax.set_facecolor(BACKGROUND)
    fig.suptitle(f"{v.symbol} — estimated liquidation levels, last {v.window} (UTC)")
    for grid, rgb, name in ((longs, LONG_RGB, "longs"), (shorts, SHORT_RGB, "shorts")):
        ax.pcolormesh(x_edges, y_edges, np.clip(grid / top, 0, 1), cmap=_ramp(rgb, name), vmin=0, vmax=1,
                      shading="flat")
    ax.plot([_dt(s.ts + step_ms) for s in steps], [s.close for s in steps], color="white", lw=1.1, label="price")
    _prints(ax, v, step_ms * max(1, len(steps) // 96))
    ax.axhline(r.price, color="white", ls="--", lw=0.8)
    for c, va, dy in ((r.below, "top", -3), (r.above, "bottom", 3)):
        if c is not None:
            ax.annotate(f"{price_text(c.price)} · {c.distance * 100:.1f}% · est. {money(c.notional)}",
                        xy=(x_edges[-1], c.price), xytext=(-6, dy), textcoords="offset points", ha="right",
                        va=va, fontsize=8, color="white")
    ax.annotate(f"now {price_text(r.price)}", xy=(1.0, r.price), xycoords=("axes fraction", "data"),
                xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylabel("price")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %H:%M"))
    ax.plot([], [], color=(*LONG_RGB, 0.8), lw=6, label="est. long liquidations")
    ax.plot([], [], color=(*SHORT_RGB, 0.8), lw=6, label="est. short liquidations")
    ax.legend(loc="upper left", fontsize=7, facecolor=BACKGROUND, labelcolor="white", framealpha=0.8)
    fig.autofmt_xdate()
    note = f"{r.bias}. {v.footnote}"
    fig.text(0.01, 0.01, "\n".join(textwrap.wrap(note, 150)), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
