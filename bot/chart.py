"""/chart: a PNG of a symbol's score, open interest and funding over the last 48h (matplotlib, Agg)."""
from __future__ import annotations

import io
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from .store import Store  # noqa: E402

WINDOW_MS = 48 * 3_600_000


def _funding_series(store: Store, symbol: str, since_ms: int) -> list[tuple[int, float]]:
    """Funding in %/8h from the stored cycle results."""
    return [(ts, r["funding_rate"] * 8 / (r.get("funding_interval_hours") or 8) * 100)
            for ts, r in store.score_payloads(symbol, since_ms)]


def render_chart(store: Store, symbol: str) -> bytes:
    last = store.last_cycle()
    end = last["ts"] if last else 0
    since = end - WINDOW_MS
    scores = store.score_series(symbol, since)
    oi = store.oi_series(symbol, since)
    funding = _funding_series(store, symbol, since)
    dt = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc)  # noqa: E731

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(8, 6.5), sharex=True, dpi=100)
    fig.suptitle(f"{symbol} — derivatives pressure, last 48h (UTC)")
    if scores:
        ax1.plot([dt(t) for t, _, _ in scores], [s for _, s, _ in scores], color="#c0392b")
    for y, c in ((35, "#e67e22"), (60, "#c0392b")):
        ax1.axhline(y, color=c, lw=0.8, ls="--")
    ax1.set_ylim(0, 100)
    ax1.set_ylabel("score")
    if oi:
        ax2.plot([dt(p.ts) for p in oi], [p.oi for p in oi], color="#2c3e50")
    ax2.set_ylabel("open interest\n(contracts)")
    if funding:
        ax3.plot([dt(t) for t, _ in funding], [f for _, f in funding], color="#16a085")
    ax3.axhline(0.01, color="grey", lw=0.8, ls=":")
    ax3.set_ylabel("funding\n(%/8h)")
    ax3.xaxis.set_major_formatter(mdates.DateFormatter("%d %H:%M"))
    if not (scores or oi):
        ax1.text(0.5, 0.5, "no history yet", transform=ax1.transAxes, ha="center")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
