"""Symbol names as users type them: `btc`, `BTC`, `btc/usdt`, `btcusdt`, `BTCUSDT` all mean BTCUSDT.

The one place symbols are normalised: chat commands, the CLI, config filters, watchlist files and edits and
Discord's autocomplete all go through `clean` (and `normalize` / `suggest` / `resolve_all` on top of it).
"""
from __future__ import annotations

import difflib
import re

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")     # the shape of an exchange symbol, after `clean`


def clean(text: str) -> str:
    """The exchange spelling of what was typed: trimmed, upper case, separators (/ - _) dropped."""
    return text.strip().upper().replace("/", "").replace("-", "").replace("_", "")


def with_quote(text: str, quote: str = "USDT") -> str:
    """`clean(text)` with the quote asset appended unless it is there already (btc -> BTCUSDT)."""
    s = clean(text)
    return s if s.endswith(quote) else s + quote


def normalize(text: str, universe: list[str] | set[str], quote: str = "USDT") -> str | None:
    """The universe symbol the user meant, or None."""
    s = clean(text)
    known = set(universe)
    for candidate in (s, s + quote, "1000" + s + quote):
        if candidate in known:
            return candidate
    return None


def suggest(text: str, universe: list[str] | set[str], quote: str = "USDT") -> str | None:
    """The closest known symbol, for 'did you mean …?' answers."""
    match = difflib.get_close_matches(with_quote(text, quote), sorted(universe), n=1, cutoff=0.6)
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
            u = clean(t)
            out |= {u} if u.endswith(quote) else {u, u + quote}
    return frozenset(out)
