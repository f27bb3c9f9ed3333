"""What the command layer may ask of the running bot: the port `commands.Context` holds.

Handlers never see the composition root. They read the market from an in-memory `Snapshot` (scores of the
last cycle, its time, the traded universe) that the app publishes after each engine cycle, so `/top`,
`/score` and `/watchlist` never touch SQLite on the event loop; what has to come from the database (a
signal by id, recent signals, stats, a chart's history) is awaited and runs in a worker thread. Watchlists
are read and edited through the registry's own API (`bot.watchlists.WatchlistRegistry` fits `Watchlists`).

`bot.app.BotQueries` is the live implementation; tests may pass anything of this shape.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Protocol

if TYPE_CHECKING:
    from .watchlists import EditResult, Watchlist


@dataclass(frozen=True)
class Snapshot:
    """The market as of the last published cycle. Immutable: a new cycle publishes a new one."""
    ts: int | None = None                                      # the cycle's exchange time (ms); None: no cycle yet
    results: tuple[dict, ...] = ()                             # ranked: score desc, then symbol
    universe: frozenset[str] = frozenset()                     # traded symbols (empty until a cycle has run)
    _by_symbol: dict[str, dict] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_symbol", {r["symbol"]: r for r in self.results})

    def symbols(self) -> set[str]:
        """Known symbols: the universe, or before the first cycle the ones scored last."""
        return set(self.universe) or set(self._by_symbol)

    def result(self, symbol: str) -> dict | None:
        return self._by_symbol.get(symbol)


class MarketSnapshot:
    """Holds the current `Snapshot`; readers on any thread get a consistent one (one reference swap)."""

    def __init__(self) -> None:
        self._snap = Snapshot()
        self._lock = threading.Lock()

    def current(self) -> Snapshot:
        return self._snap

    def publish(self, ts: int | None, results: Iterable[dict], universe: Iterable[str] | None = None) -> Snapshot:
        """New scores (and the universe, if given). Scores older than the ones held are ignored."""
        with self._lock:
            cur = self._snap
            keep_scores = ts is not None and cur.ts is not None and ts < cur.ts
            self._snap = Snapshot(cur.ts if keep_scores else ts, cur.results if keep_scores else tuple(results),
                                  cur.universe if universe is None else frozenset(universe))
            return self._snap

    def set_universe(self, universe: Iterable[str]) -> Snapshot:
        with self._lock:
            cur = self._snap
            self._snap = Snapshot(cur.ts, cur.results, frozenset(universe))
            return self._snap


@dataclass(frozen=True)
class Stats:
    users: int                       # watchlists
    alerting: int                    # of them active with alerts on
    outbox: dict[str, int]           # status -> rows
    last_cycle: dict | None          # ts, duration_s, requests, weight, scored, failed


class Watchlists(Protocol):
    """The watchlist registry's read and edit API, as the commands and adapters use it."""

    def get(self, user_id: str) -> Watchlist | None: ...
    def items(self) -> list[tuple[str, Watchlist]]: ...
    def by_telegram_chat(self, chat_id: int) -> tuple[str, Watchlist] | None: ...
    def by_discord_user(self, user_id: int) -> tuple[str, Watchlist] | None: ...
    def load_all(self) -> list[str]: ...
    def export_yaml(self, user_id: str) -> str: ...
    async def ensure(self, user_id: str, **fields: Any) -> tuple[Watchlist, bool]: ...
    async def add_symbols(self, user_id: str, texts: list[str]) -> EditResult: ...
    async def remove_symbols(self, user_id: str, texts: list[str]) -> EditResult: ...
    async def set_fields(self, user_id: str, **fields: Any) -> Watchlist: ...
    async def mute(self, user_id: str, symbol_text: str, until: datetime) -> Watchlist: ...
    async def import_yaml(self, user_id: str, text: str) -> Watchlist: ...


class Queries(Protocol):
    """The port: market snapshot (in memory), watchlists, and the few database reads (off the loop)."""

    @property
    def watchlists(self) -> Watchlists: ...

    def snapshot(self) -> Snapshot: ...

    async def recent_signals(self, recipient: str, limit: int = 15) -> list[dict]: ...

    async def signal(self, signal_id: str) -> dict | None: ...

    async def stats(self) -> Stats: ...

    async def chart(self, symbol: str) -> bytes: ...

    async def liqmap(self, symbol: str, window: str) -> tuple[bytes, str]: ...   # PNG, text read + footnote (UserError)

    @property
    def public_key(self) -> str: ...                          # the key receipts are signed with (hex)

    async def last_seal(self) -> dict | None: ...             # the last sealed cycle's manifest row

    async def signal_proof(self, signal_id: str) -> tuple[dict, list] | None: ...   # (bundle, checks) or None

    async def public_signals(self, limit: int = 50, symbol: str | None = None,
                             since_ms: int | None = None) -> list[dict]: ...   # market-wide, newest first

    async def performance(self, symbol: str | None, days: int) -> dict: ...   # bot.outcomes.performance_report
