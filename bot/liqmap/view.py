"""One map for one window: the model run over the stored steps, the read, the accuracy footnote (pure)."""
from __future__ import annotations

from dataclasses import dataclass

from .model import LiqMap, Params, Print, Step, run
from .read import Reading, footnote, read

WINDOWS_MS = {"1h": 3_600_000, "4h": 4 * 3_600_000, "12h": 12 * 3_600_000, "24h": 24 * 3_600_000,
              "1w": 7 * 24 * 3_600_000}
MAX_COLUMNS = 300                # heatmap columns at most (a week of 5-minute steps is drawn every 7th step)
WARM_UP_MS = 24 * 3_600_000      # the model starts this long before the window: positions opened earlier count


@dataclass(frozen=True)
class View:
    symbol: str
    window: str
    map: LiqMap
    frames: list[tuple[int, dict]]      # inside the window: (step time, {(side, bin): notional})
    steps: list[Step]                   # inside the window
    prints: list[Print]                 # realised, inside the window
    reading: Reading
    footnote: str


def window_ms(label: str) -> int:
    try:
        return WINDOWS_MS[label.lower()]
    except KeyError:
        raise ValueError(f"unknown window {label!r}: one of {', '.join(WINDOWS_MS)}") from None


def build(symbol: str, window: str, steps: list[Step], prints: list[Print], params: Params,
          top_fraction: float = 0.25) -> View:
    """`steps` ascending (warm-up included); `prints` of the symbol. The window ends at the last step."""
    if not steps:
        raise ValueError(f"{symbol}: no candles and open interest stored yet for the LiqMap")
    start = steps[-1].ts - window_ms(window)
    inside = [p for p in prints if p.ts >= start]
    shown = [s for s in steps if s.ts >= start]
    m, frames = run(steps, params, inside, top_fraction=top_fraction, frames_from_ms=start,
                    snapshot_every=max(1, len(shown) // MAX_COLUMNS))
    return View(symbol, window, m, frames, shown, inside,
                read(m, symbol, steps[-1].close), footnote(m, f"Last {window}"))
