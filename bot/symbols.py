"""Symbol names as users type them: `btc`, `BTC`, `btcusdt`, `BTCUSDT` all mean BTCUSDT."""
from __future__ import annotations

import difflib


def normalize(text: str, universe: list[str] | set[str], quote: str = "USDT") -> str | None:
    """The universe symbol the user meant, or None."""
    s = text.strip().upper().replace("/", "").replace("-", "").replace("_", "")
    known = set(universe)
    for candidate in (s, s + quote, "1000" + s + quote):
        if candidate in known:
            return candidate
    return None


def suggest(text: str, universe: list[str] | set[str], quote: str = "USDT") -> str | None:
    """The closest known symbol, for 'did you mean …?' answers."""
    s = text.strip().upper()
    if not s.endswith(quote):
        s += quote
    match = difflib.get_close_matches(s, sorted(universe), n=1, cutoff=0.6)
    return match[0] if match else None


def resolve_all(texts, universe=(), quote: str = "USDT") -> frozenset[str]:
    """Symbols as written in config (btc, BTC, BTCUSDT) -> exchange symbols. With the universe not known
    yet (or a delisted name), both spellings are kept: harmless, and right once the universe is known."""
    known = set(universe)
    out = set()
    for t in texts:
        s = normalize(t, known, quote) if known else None
        if s:
            out.add(s)
        else:
            u = t.strip().upper().replace("/", "").replace("-", "").replace("_", "")
            out |= {u} if u.endswith(quote) else {u, u + quote}
    return frozenset(out)
