"""The channel-agnostic command registry (freqtrade's RPC split): handlers take a Context and return a
plain Reply (text, table, image, document, buttons). Adapters (Telegram, Discord, console) only
translate. The registry also generates /help, Telegram's command list and Discord's slash commands.

Handlers reach the running bot only through `Context.queries` (the `bot.queries.Queries` port): the market
snapshot in memory, the watchlists' API, and awaited database reads that run off the event loop. What a
platform needs to know about a command (slow, personal, needs an attachment, offered there at all) is a
field of its `Command`, so adapters never test command names.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

from . import report
from .errors import UserError
from .queries import Queries
from .symbols import normalize, suggest


log = logging.getLogger(__name__)


@dataclass
class Table:
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    caption: str = ""             # e.g. the summary line above the table


@dataclass
class Button:
    label: str
    command: str                  # e.g. "top long" — what pressing it runs


@dataclass
class Reply:
    text: str = ""
    table: Table | None = None
    image: bytes | None = None    # PNG
    document: tuple[str, bytes] | None = None   # (file name, content)
    buttons: list[Button] = field(default_factory=list)
    bias: str | None = None       # LONG/SHORT/NEUTRAL: Discord colours embeds by it
    title: str | None = None
    error: bool = False


@dataclass
class Context:
    queries: Queries
    user_id: str                  # watchlist id: tg-<chat>, tg-g<group>, dc-<user>, or a file name
    platform: str                 # telegram | discord | console
    args: list[str] = field(default_factory=list)
    display_name: str = ""
    identity: dict = field(default_factory=dict)   # fields for a new watchlist, e.g. {"telegram_chat_id": 1}
    is_admin: bool = False        # bot admin (admin commands)
    can_edit: bool = True         # may change this watchlist (in groups: chat admins only)
    attachment: bytes | None = None   # /import: the YAML document replied to


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    required: bool = False
    choices: tuple[str, ...] = ()
    kind: str = "str"             # str | int | symbol (Discord autocompletes symbols)


Handler = Callable[[Context], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    handler: Handler
    params: tuple[Param, ...] = ()
    admin: bool = False
    edits: bool = False           # changes the caller's watchlist
    discord: bool = True          # offered as a Discord slash command
    slow: bool = False            # may take seconds (charts, database reads): acknowledge before answering
    personal: bool = False        # about the caller alone: in shared channels only the caller sees the answer
    needs_attachment: bool = False   # reads a document sent with the command (or the message it replies to)

    def offered_on(self, platform: str) -> bool:
        return self.discord or platform != "discord"

    @property
    def usage(self) -> str:
        return " ".join([f"/{self.name}", *(f"<{p.name}>" if p.required else f"[{p.name}]" for p in self.params)])


REGISTRY: dict[str, Command] = {}


def command(name: str, summary: str, *params: Param, admin: bool = False, edits: bool = False,
            discord: bool = True, slow: bool = False, personal: bool | None = None, needs_attachment: bool = False):
    """Register a handler. `personal` defaults to `edits`: an answer about your own watchlist is yours."""
    def deco(fn: Handler) -> Handler:
        REGISTRY[name] = Command(name, summary, fn, tuple(params), admin=admin, edits=edits, discord=discord,
                                 slow=slow, personal=edits if personal is None else personal,
                                 needs_attachment=needs_attachment)
        return fn
    return deco


async def dispatch(name: str, ctx: Context) -> Reply:
    """Run a command; user mistakes become a clear reply, never an exception."""
    cmd = REGISTRY.get(name.lower().lstrip("/"))
    if cmd is None:
        hint = suggest_command(name)
        return Reply(text=f"Unknown command /{name}." + (f" Did you mean /{hint}?" if hint else " Try /help."),
                     error=True)
    if cmd.admin and not ctx.is_admin:
        return Reply(text="That command is for the bot's admins.", error=True)
    if cmd.edits and not ctx.can_edit:
        return Reply(text="Only this group's admins can change its watchlist.", error=True)
    from .watchlists import EditError
    try:
        return await cmd.handler(ctx)
    except UserError as e:
        return Reply(text=str(e), error=True)
    except EditError as e:            # a refused watchlist edit: nothing changed, the message is for the user
        return Reply(text=f"Your watchlist was not changed:\n{e}", error=True)


def suggest_command(name: str) -> str | None:
    import difflib
    m = difflib.get_close_matches(name.lower().lstrip("/"), list(REGISTRY), n=1)
    return m[0] if m else None


def help_text(admin: bool = False, platform: str | None = None) -> str:
    """The commands offered on `platform` (every command when None); admin ones only for admins."""
    slash = platform == "discord"
    lines = ["Derivatives Pressure Bot — " + ("slash commands:" if slash else "commands:")]
    for c in REGISTRY.values():
        if (c.admin and not admin) or (platform is not None and not c.offered_on(platform)):
            continue
        lines.append(f"{c.usage} — {c.summary}")
    return "\n".join(lines)


def telegram_commands(admin: bool = False) -> list[tuple[str, str]]:
    """(command, description) pairs for setMyCommands."""
    return [(c.name, c.summary[:256]) for c in REGISTRY.values() if admin or not c.admin]


# ---- helpers -------------------------------------------------------------------------------
def _latest(ctx: Context) -> tuple[int | None, list[dict]]:
    snap = ctx.queries.snapshot()
    if not snap.results:
        raise UserError("No scores yet: the first cycle is still running. Try again in a minute.")
    return snap.ts, list(snap.results)


def _universe(ctx: Context) -> set[str]:
    return ctx.queries.snapshot().symbols()


def resolve_symbol(ctx: Context, text: str) -> str:
    universe = _universe(ctx)
    sym = normalize(text, universe)
    if sym is None:
        hint = suggest(text, universe)
        raise UserError(f"Unknown symbol {text!r}." + (f" Did you mean {hint}?" if hint else ""))
    return sym


def _need_args(ctx: Context, n: int, usage: str) -> None:
    if len(ctx.args) < n:
        raise UserError(f"Usage: {usage}")


def onboarding_hint(platform: str) -> str:
    """How a user without a watchlist gets one: /start where it exists, else the first /watch creates it."""
    start = REGISTRY.get("start")
    return "send /start first" if start is not None and start.offered_on(platform) else "/watch SYMBOL creates it"


async def _watchlist(ctx: Context):
    wl = ctx.queries.watchlists.get(ctx.user_id)
    if wl is None:
        raise UserError(f"You have no watchlist yet: {onboarding_hint(ctx.platform)}.")
    return wl


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+)\s*([mhdw])", text.strip().lower())
    if not m:
        raise UserError(f"Expected a duration like 30m, 2h, 1d or 1w, got {text!r}.")
    n, unit = int(m.group(1)), m.group(2)
    delta = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]
    if not timedelta(minutes=1) <= delta <= timedelta(days=90):
        raise UserError("A mute lasts between 1 minute and 90 days.")
    return delta


# ---- commands ------------------------------------------------------------------------------
@command("start", "register and see what to do next", discord=False)
async def cmd_start(ctx: Context) -> Reply:
    await _reactivate(ctx)
    _, created = await ctx.queries.watchlists.ensure(ctx.user_id, **ctx.identity)
    first = "Welcome! Your watchlist is set up." if created else "Welcome back — your watchlist is unchanged."
    return Reply(text=(
        f"{first}\n\n"
        "I score every Binance USDⓈ-M perpetual 0–100 for derivatives pressure (OI build, funding, basis) "
        "and alert you when a watched symbol crosses into stretched (35) or stressed (60), or enters a "
        "squeeze-risk, crowded or unwind regime.\n\n"
        "Next: /watch BTC ETH to add symbols · /top for the ranking · /score BTC for one symbol · "
        "/threshold 50 for your own alert level · /help for everything."))


async def _reactivate(ctx: Context) -> None:
    """/start from a chat marked inactive (the bot was blocked, then unblocked): alerts resume."""
    wl = ctx.queries.watchlists.get(ctx.user_id)
    if wl is not None and not wl.active and ctx.can_edit:
        try:
            await ctx.queries.watchlists.set_fields(ctx.user_id, active=True)
            log.info("%s active again after /start (%s)", ctx.user_id, ctx.platform)
        except Exception as e:             # e.g. a hand-broken file: /start still answers
            log.warning("could not reactivate %s: %s", ctx.user_id, e)


@command("help", "list the commands", personal=True)
async def cmd_help(ctx: Context) -> Reply:
    # on Discord the list is of slash commands, shown under its own title (the picker shows the rest)
    return Reply(text=help_text(ctx.is_admin, ctx.platform), title="Help" if ctx.platform == "discord" else None)


@command("top", "the ranked pressure table",
         Param("bias", "all, long or short", choices=("all", "long", "short")),
         Param("n", "how many rows (default 15, max 50)", kind="int"), slow=True)
async def cmd_top(ctx: Context) -> Reply:
    bias, limit = "all", 15
    for a in ctx.args:
        if a.lower() in ("all", "long", "short"):
            bias = a.lower()
        elif a.isdigit():
            limit = max(1, min(50, int(a)))
        else:
            raise UserError(f"Usage: /top [all|long|short] [N] — {a!r} is neither.")
    ts, results = _latest(ctx)
    rows = report.filter_bias(report.ranked(results), bias)[:limit]
    header = ("#", "Symbol", "Score", "Bias", "OI 1h", "OI 24h", "Funding", "Basis")
    table_rows = [(str(r["rank"]), r["symbol"], str(r["score"]), r["bias"], report.pct(r.get("oi_change_1h")),
                   report.pct(r.get("oi_change_24h")), report.pct(r.get("funding_rate"), 3), report.pct(r.get("basis")))
                  for r in rows]
    title = {"all": "All", "long": "Long bias", "short": "Short bias"}[bias]
    return Reply(title=f"Top {len(rows)} · {title}", table=Table(header, table_rows, report.summary(results, ts)),
                 buttons=[Button("All", f"top all {limit}"), Button("Long bias", f"top long {limit}"),
                          Button("Short bias", f"top short {limit}")])


@command("score", "one symbol explained: inputs, points, regime", Param("symbol", "e.g. BTC", True, kind="symbol"),
         slow=True)
async def cmd_score(ctx: Context) -> Reply:
    _need_args(ctx, 1, "/score SYMBOL (e.g. /score BTC)")
    sym = resolve_symbol(ctx, ctx.args[0])
    ts, results = _latest(ctx)
    r = next((x for x in results if x["symbol"] == sym), None)
    if r is None:
        raise UserError(f"{sym} has no score in the last cycle (not liquid enough, or its data failed).")
    return Reply(title=f"{sym} · {r['score']} {r['band']}", text=report.explain(r) + f"\n\nAs of {report.utc(ts)}",
                 bias=r["bias"])


@command("watch", "add symbols to your watchlist", Param("symbols", "e.g. BTC ETH SOL", True, kind="symbol"),
         edits=True)
async def cmd_watch(ctx: Context) -> Reply:
    _need_args(ctx, 1, "/watch SYMBOL [SYMBOL…]")
    await ctx.queries.watchlists.ensure(ctx.user_id, **ctx.identity)
    res = await ctx.queries.watchlists.add_symbols(ctx.user_id, ctx.args)
    return Reply(text=_edit_summary(res, "Added"))


@command("unwatch", "remove symbols from your watchlist", Param("symbols", "e.g. BTC", True, kind="symbol"),
         edits=True)
async def cmd_unwatch(ctx: Context) -> Reply:
    _need_args(ctx, 1, "/unwatch SYMBOL [SYMBOL…]")
    await _watchlist(ctx)
    res = await ctx.queries.watchlists.remove_symbols(ctx.user_id, ctx.args)
    return Reply(text=_edit_summary(res, "Removed"))


def _edit_summary(res, verb: str) -> str:
    parts = []
    changed = res.added if verb == "Added" else res.removed
    if changed:
        parts.append(f"{verb}: {', '.join(changed)}.")
    if res.already:
        parts.append(("Already watching: " if verb == "Added" else "Not in your list: ") + ", ".join(res.already) + ".")
    for text, hint in res.unknown.items():
        parts.append(f"Unknown symbol {text!r}" + (f" — did you mean {hint}?" if hint else "."))
    parts.append(f"Watching {len(res.watchlist.symbols)}: {', '.join(res.watchlist.symbols) or 'nothing yet'}.")
    return "\n".join(parts)


@command("watchlist", "your symbols and alert settings", personal=True)
async def cmd_watchlist(ctx: Context) -> Reply:
    wl = await _watchlist(ctx)
    snap = ctx.queries.snapshot()
    by = {s: r for s in wl.symbols if (r := snap.result(s)) is not None}
    rows = [(s, str(by[s]["score"]) if s in by else "—", by[s]["bias"] if s in by else "—",
             by[s]["regime"] if s in by else "no score") for s in wl.symbols]
    quiet = f"{wl.quiet_hours} {wl.timezone} ({wl.quiet_mode})" if wl.quiet_hours else "off"
    muted = [s for s in wl.muted if wl.is_muted(s, datetime.now(timezone.utc))]
    caption = (f"Alerts {'on' if wl.alerts else 'off'} · bands {', '.join(wl.bands) or 'none'} · "
               f"threshold {wl.min_score if wl.min_score is not None else '—'} · cooldown {wl.cooldown_minutes:g} min · "
               f"quiet hours {quiet}" + (f" · muted {', '.join(muted)}" if muted else ""))
    return Reply(title="Your watchlist", table=Table(("Symbol", "Score", "Bias", "Regime"), rows, caption),
                 text="" if rows else "Your watchlist is empty: /watch BTC ETH")


@command("threshold", "your own alert score (0-100)", Param("score", "e.g. 50", True, kind="int"), edits=True)
async def cmd_threshold(ctx: Context) -> Reply:
    _need_args(ctx, 1, "/threshold N (0-100)")
    if not ctx.args[0].isdigit() or not 0 <= int(ctx.args[0]) <= 100:
        raise UserError(f"Threshold must be a whole number 0-100, got {ctx.args[0]!r}.")
    await ctx.queries.watchlists.ensure(ctx.user_id, **ctx.identity)
    await ctx.queries.watchlists.set_fields(ctx.user_id, min_score=int(ctx.args[0]))
    return Reply(text=f"Your alert threshold is now {int(ctx.args[0])}: you are alerted when a watched symbol "
                      f"crosses it, and regime/bias alerts below it are skipped.")


@command("alerts", "turn your alerts on or off", Param("state", "on or off", True, choices=("on", "off")), edits=True)
async def cmd_alerts(ctx: Context) -> Reply:
    if not ctx.args or ctx.args[0].lower() not in ("on", "off"):
        raise UserError("Usage: /alerts on|off")
    await ctx.queries.watchlists.ensure(ctx.user_id, **ctx.identity)
    on = ctx.args[0].lower() == "on"
    await ctx.queries.watchlists.set_fields(ctx.user_id, alerts=on, active=True)
    return Reply(text=f"Alerts are {'on' if on else 'off'}.")


@command("quiet", "quiet hours, e.g. 23:00-07:00 Europe/Berlin, or off",
         Param("hours", "HH:MM-HH:MM or off", True), Param("timezone", "IANA zone, e.g. Europe/Berlin"),
         Param("mode", "digest (hold) or drop", choices=("digest", "drop")), edits=True)
async def cmd_quiet(ctx: Context) -> Reply:
    _need_args(ctx, 1, "/quiet 23:00-07:00 [Europe/Berlin] [digest|drop]  or  /quiet off")
    await ctx.queries.watchlists.ensure(ctx.user_id, **ctx.identity)
    if ctx.args[0].lower() == "off":
        await ctx.queries.watchlists.set_fields(ctx.user_id, quiet_hours=None)
        return Reply(text="Quiet hours off.")
    fields = {"quiet_hours": ctx.args[0]}
    for a in ctx.args[1:]:
        if a.lower() in ("digest", "drop"):
            fields["quiet_mode"] = a.lower()
        else:
            fields["timezone"] = a
    wl = await ctx.queries.watchlists.set_fields(ctx.user_id, **fields)
    held = "held and sent as one digest when they end" if wl.quiet_mode == "digest" else "dropped"
    return Reply(text=f"Quiet hours {wl.quiet_hours} {wl.timezone}: alerts in that window are {held}.")


@command("mute", "mute a symbol for a while, e.g. BTC 2h",
         Param("symbol", "e.g. BTC", True, kind="symbol"), Param("duration", "e.g. 30m, 2h, 1d", True), edits=True)
async def cmd_mute(ctx: Context) -> Reply:
    _need_args(ctx, 2, "/mute SYMBOL DURATION (e.g. /mute BTC 2h)")
    sym = resolve_symbol(ctx, ctx.args[0])
    until = datetime.now(timezone.utc) + parse_duration(ctx.args[1])
    await ctx.queries.watchlists.ensure(ctx.user_id, **ctx.identity)
    await ctx.queries.watchlists.mute(ctx.user_id, sym, until)
    return Reply(text=f"{sym} muted until {until.strftime('%Y-%m-%d %H:%M UTC')}.")


@command("signals", "recent signals, open and closed: outcome, net bps, receipt hash", slow=True, personal=True)
async def cmd_signals(ctx: Context) -> Reply:
    sigs = await ctx.queries.recent_signals(ctx.user_id, 15)
    title = "Your recent signals"
    if not sigs:
        sigs, title = await ctx.queries.public_signals(15), "Recent market-wide signals"
    if not sigs:
        return Reply(text="No signals yet: they appear here once an alert rule fires.")
    rows = [(g["id"], g["symbol"], g["rule"], o, f, h[:8]) for g, (_, _, _, _, _, o, f, _, h)
            in zip(sigs, report.feed_rows(sigs))]
    return Reply(title=title, table=Table(("Id", "Symbol", "Rule", "Outcome", "Follow bps", "Receipt"), rows,
                                          "Outcome: OPEN, TP1, SL or TIMEOUT; follow = trading the bias, after fees "
                                          "and funding. /signal ID: receipt, outcome and proof · /perf"))


@command("signal", "a signal's receipt, outcome and proof", Param("id", "signal id", True), slow=True)
async def cmd_signal(ctx: Context) -> Reply:
    _need_args(ctx, 1, "/signal ID")
    sig = await ctx.queries.signal(ctx.args[0])
    if sig is None:
        raise UserError(f"No signal {ctx.args[0]!r}. /signals lists yours.")
    text = report.receipt_text(sig)
    got = await ctx.queries.signal_proof(sig["id"])
    if got is not None and got[0]["manifest"] is not None:
        text += "\n\nProof:\n" + report.proof_text(*got)
    return Reply(title=f"Signal {sig['id']}", text=text, bias=sig["bias"])


PERF_WINDOWS = ("30", "90", "180")


@command("perf", "how closed signals did: per symbol and rule, follow and fade",
         Param("symbol", "one symbol (default: all)", kind="symbol"),
         Param("days", "window in days", choices=PERF_WINDOWS), slow=True)
async def cmd_perf(ctx: Context) -> Reply:
    args = list(ctx.args)
    days = next((a for a in args if a in PERF_WINDOWS), None) or "30"
    rest = [a for a in args if a != days]
    if any(a.isdigit() for a in rest):
        raise UserError(f"Windows are {', '.join(PERF_WINDOWS)} days: /perf [SYMBOL] [30|90|180]")
    symbol = resolve_symbol(ctx, rest[0]) if rest else None
    rep = await ctx.queries.performance(symbol, int(days))
    return Reply(title="Performance", text=report.perf_text(rep, top=10))


@command("verify", "check a signal's receipt: its hash, proof and signed seal",
         Param("id", "signal id (without: the public key and the last sealed cycle)"), slow=True)
async def cmd_verify(ctx: Context) -> Reply:
    if not ctx.args:
        return Reply(title="Receipts", text=report.seal_text(ctx.queries.public_key, await ctx.queries.last_seal()))
    got = await ctx.queries.signal_proof(ctx.args[0])
    if got is None:
        raise UserError(f"No signal {ctx.args[0]!r}. /signals lists yours.")
    bundle, checks = got
    ok = all(c.ok for c in checks)
    doc = (f"receipt-{bundle['signal']}.json", json.dumps(bundle, indent=1).encode()) if bundle["manifest"] else None
    return Reply(title=f"Receipt {bundle['signal']} · " + ("verifies" if ok else "does NOT verify"),
                 text=report.proof_text(bundle, checks), document=doc, error=not ok)


METHODOLOGY = """How to read the score (0-100) — the reference's published recipe
Five signed inputs, each worth weight x clip(input / full scale, -1, +1) points: OI change 1h (12 pts, full at 2.5 %), 4h (16, 6 %), 24h (28, 15 %), funding per the symbol's interval as the exchange reports it (28, 0.05 %) and the perp-index basis (16, 0.25 %). Rising OI counts toward LONG, falling OI toward SHORT; the inputs net out.
Score = |sum| rounded; direction = its sign, NEUTRAL under 12. A LONG at 70 means longs are heavily stacked.
Bands: 0-14 neutral · 15-34 lean · 35-59 stretched · 60-100 stressed.
Regimes: squeeze risk (OI building against high funding while price moves against the crowded side; any score), long crowded / short ramp (funding beyond ±0.05 % and OI up 5 %+ over 24h), long unwind / short covering (crowded funding, OI down 3 %+ over 4h), net long/short bias building, balanced (under 12).
What we add: the OI/price quadrant, and a warning when price contradicts the direction.
Every alert is a signal with a receipt: /signal ID; /verify ID checks its signed seal."""


@command("methodology", "bands, inputs and how to read the score")
async def cmd_methodology(ctx: Context) -> Reply:
    return Reply(title="Methodology", text=METHODOLOGY)


@command("export", "your watchlist as a YAML file", discord=False)
async def cmd_export(ctx: Context) -> Reply:
    await _watchlist(ctx)
    text = ctx.queries.watchlists.export_yaml(ctx.user_id)
    return Reply(text="Your watchlist. Edit it and reply /import to the file to apply it.",
                 document=(f"{ctx.user_id}.yaml", text.encode()))


@command("import", "reply to a YAML file to replace your watchlist", edits=True, discord=False,
         needs_attachment=True)
async def cmd_import(ctx: Context) -> Reply:
    if ctx.attachment is None:
        raise UserError("Reply /import to a YAML document (for example the file /export sent you).")
    try:
        text = ctx.attachment.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("That file is not UTF-8 text; send the YAML watchlist file.") from None
    await ctx.queries.watchlists.ensure(ctx.user_id, **ctx.identity)
    wl = await ctx.queries.watchlists.import_yaml(ctx.user_id, text)
    return Reply(text=f"Imported: watching {len(wl.symbols)} symbol(s): {', '.join(wl.symbols) or 'none'}.")


@command("chart", "score, OI and funding over the last 48h", Param("symbol", "e.g. BTC", True, kind="symbol"),
         slow=True)
async def cmd_chart(ctx: Context) -> Reply:
    _need_args(ctx, 1, "/chart SYMBOL")
    sym = resolve_symbol(ctx, ctx.args[0])
    png = await ctx.queries.chart(sym)
    return Reply(title=f"{sym} · last 48h", text=f"{sym}: score, open interest and funding, last 48h", image=png)


@command("stats", "users, alerts sent, last cycle", admin=True)
async def cmd_stats(ctx: Context) -> Reply:
    stats = await ctx.queries.stats()
    last = stats.last_cycle
    lines = [f"Users: {stats.users} ({stats.alerting} with alerts on)",
             "Outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(stats.outbox.items())) or "empty")]
    if last:
        lines.append(f"Last cycle: {report.utc(last['ts'])}, {last['scored']} scored, {len(last['failed'])} failed, "
                     f"{last['duration_s']:.1f}s, {last['requests']} requests")
    return Reply(text="\n".join(lines))


@command("reload", "reload every watchlist file now", admin=True)
async def cmd_reload(ctx: Context) -> Reply:
    errors = await asyncio.to_thread(ctx.queries.watchlists.load_all)
    return Reply(text=f"Reloaded {len(ctx.queries.watchlists.items())} watchlists."
                 + ("\nProblems (last good versions stay active):\n" + "\n".join(errors) if errors else ""))


LIQMAP_WINDOWS = ("1h", "4h", "12h", "24h", "1w")


@command("liqmap", "estimated liquidation heatmap, nearest clusters above/below", Param("symbol", "BTC or ETH", True,
         kind="symbol"), Param("window", "1h, 4h, 12h, 24h (default) or 1w", choices=LIQMAP_WINDOWS), slow=True)
async def cmd_liqmap(ctx: Context) -> Reply:
    _need_args(ctx, 1, "/liqmap SYMBOL [1h|4h|12h|24h|1w]")
    sym = resolve_symbol(ctx, ctx.args[0])
    window = ctx.args[1].lower() if len(ctx.args) > 1 else "24h"
    if window not in LIQMAP_WINDOWS:
        raise UserError(f"Unknown window {ctx.args[1]!r}: one of {', '.join(LIQMAP_WINDOWS)}.")
    png, text = await ctx.queries.liqmap(sym, window)
    return Reply(title=f"{sym} LiqMap (estimated) · last {window}", text=text, image=png)
