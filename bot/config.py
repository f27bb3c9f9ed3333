"""Typed configuration loaded from `config/bot.yaml` (yaml.safe_load + pydantic validation).

Every key has a default, so an empty file is valid. Validation errors name the file, the line, the key path
and what was expected; see `load_config`.

Layering: config sits below the core and imports only bot.vocabulary (band and regime names and their types)
and bot.yamlerrors (the file:line error format it shares with the watchlists), neither of which imports
anything from the bot.
"""
from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .vocabulary import ALERT_REGIMES, DEFAULT_BANDS, Band, RegimeKey
from .yamlerrors import compose, problems

DEFAULT_CONFIG_PATH = Path("config/bot.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExchangeConfig(_Strict):
    base_url: str = "https://fapi.binance.com"
    timeout_s: float = Field(10.0, gt=0)
    max_concurrency: int = Field(20, ge=1, le=200)
    max_retries: int = Field(4, ge=0, le=10)
    weight_limit: int = Field(2400, gt=0)
    weight_headroom: float = Field(0.8, gt=0, le=1)
    data_limit_per_5m: int = Field(1000, gt=0)
    funding_info_refresh_s: float = Field(3600, gt=0)
    max_retry_after_s: float = Field(300, gt=0)       # a Retry-After above this is read as this
    stop_after_refusals: int = Field(3, ge=1, le=100)  # refused/failed requests in a row that stop a cycle


class UniverseConfig(_Strict):
    quote_asset: str = "USDT"
    min_quote_volume: float = Field(1_000_000, ge=0)
    include: list[str] = []
    exclude: list[str] = []


class HistoryConfig(_Strict):
    backfill_hours: int = Field(24, ge=1, le=720)
    retention_hours: int = Field(49, ge=25)
    tolerance_minutes: dict[str, float] = {"1h": 10, "4h": 20, "24h": 60}
    fine_hours: float = Field(2, gt=1)                  # keep every cycle's OI point this long ...
    coarse_step_minutes: float = Field(5, gt=0, le=60)  # ... then one per this many minutes
    scores_fine_hours: float = Field(2, gt=0)           # every cycle's score rows kept this long, then one cycle a step
    scores_step_minutes: float = Field(15, gt=0, le=60) # ... of this many minutes (charts of 48h need no finer step)

    @property
    def scores_step_ms(self) -> int:
        return int(self.scores_step_minutes * 60_000)


class Contribution(_Strict):
    """One of the score's five signed inputs: weight × clip(input / full_scale, −1, +1) points."""
    weight: float = Field(ge=0)
    full_scale: float = Field(gt=0)


class RegimeConfig(_Strict):
    """The written conditions of the regimes (docs/methodology.md bounds them by the reference's rows)."""
    crowded_funding: float = Field(0.0005, gt=0)   # |funding per interval| that counts as high
    oi_rising_24h: float = 0.05                    # OI building: 24h change at or above this ...
    oi_rising_4h: float = 0.02                     # ... or, 24h unknown, the 4h change
    oi_falling_4h: float = -0.03                   # OI leaving: 4h change at or below this ...
    oi_falling_1h: float = -0.015                  # ... or, 4h unknown, the 1h change
    min_move: float = Field(0.002, ge=0)           # OI/price moves under this count as flat


class Bands(_Strict):
    """The score at which each band above neutral starts (one field per name in bot.vocabulary.BANDS)."""
    lean: int = 15
    stretched: int = 35
    stressed: int = 60

    @model_validator(mode="after")
    def _ordered(self) -> "Bands":
        if not 0 < self.lean < self.stretched < self.stressed <= 100:
            raise ValueError("bands must satisfy 0 < lean < stretched < stressed <= 100")
        return self


_CONTRIBUTIONS = ("oi_1h", "oi_4h", "oi_24h", "funding", "basis")


class ScoreConfig(_Strict):
    contributions: dict[str, Contribution] = {
        "oi_1h": Contribution(weight=12, full_scale=0.025),
        "oi_4h": Contribution(weight=16, full_scale=0.06),
        "oi_24h": Contribution(weight=28, full_scale=0.15),
        "funding": Contribution(weight=28, full_scale=0.0005),
        "basis": Contribution(weight=16, full_scale=0.0025),
    }
    bias_min_score: int = Field(12, ge=0, le=100)
    bands: Bands = Bands()
    regimes: RegimeConfig = RegimeConfig()

    @field_validator("contributions")
    @classmethod
    def _five_contributions(cls, v: dict[str, Contribution]) -> dict[str, Contribution]:
        if set(v) != set(_CONTRIBUTIONS):
            raise ValueError(f"must name exactly {', '.join(_CONTRIBUTIONS)}")
        if sum(t.weight for t in v.values()) > 100:
            raise ValueError("the weights must add up to at most 100 (the score is 0-100)")
        return {k: v[k] for k in _CONTRIBUTIONS}


class EngineConfig(_Strict):
    interval_minutes: float = Field(1, gt=0)
    misfire_grace_s: int = Field(60, ge=1)
    cycle_time_limit_min_s: float = Field(5.0, gt=0)   # a cycle is cut off at 90 % of its interval, never sooner
    table_every_cycles: int = Field(12, ge=1)
    clock_skew_warn_s: float | None = Field(120, gt=0)   # null: never warn (the demo's market runs fast on purpose)


class RulesConfig(_Strict):
    """Durations are minutes of exchange time, never cycles: a shorter cadence must not be noisier."""
    thresholds: list[int] = [35, 60]
    hysteresis: int = Field(5, ge=0, le=50)
    rearm_minutes: float = Field(5, ge=0, le=1440)     # ... and re-arms after the score stayed that far below this long
    cooldown_minutes: float = Field(60, ge=0)
    bias_flip_min_score: int = Field(35, ge=0, le=100)
    confirm_minutes: float = Field(5, ge=0, le=1440)   # a regime or a new bias counts once it has held this long

    @model_validator(mode="before")
    @classmethod
    def _cycles_are_gone(cls, data: object) -> object:
        if isinstance(data, dict) and "regime_confirm_cycles" in data:
            n = data["regime_confirm_cycles"]
            hint = f"{(n - 1) * 5:g}" if isinstance(n, int) and n >= 1 else "5"
            raise ValueError(f"regime_confirm_cycles ({n!r}) is replaced by confirm_minutes: confirmation is time, "
                             f"not cycles, so a shorter cadence is not noisier; {n!r} cycles at the old 5-minute "
                             f"cadence is `confirm_minutes: {hint}` (the default is 5)")
        return data


class StorageConfig(_Strict):
    db_path: str = "data/bot.db"
    # how long a delivery worker's claim on outbox rows lasts: a worker that dies mid-send leaves its rows to the
    # next worker after this (hosted roles; bot/outbox.py)
    outbox_lease_s: float = Field(default=60.0, gt=0)


class TelegramConfig(_Strict):
    api_base_url: str = "https://api.telegram.org"   # env TELEGRAM_API_BASE_URL overrides; the bot appends /bot<token>
    allowed_user_ids: list[int] = []                  # empty: anyone may use the bot
    admin_ids: list[int] = []                         # may run /stats and /reload
    poll_timeout_s: int = Field(20, ge=0, le=50)      # getUpdates long-poll timeout
    # the bot's message rate across all hosted delivery workers together (one schedule in the database)
    bot_messages_per_s: float = Field(30.0, gt=0)


class AlertFilter(_Strict):
    """Which alerts a channel or webhook gets (like a watchlist, without a person behind it).

    An unknown band or regime is a configuration error naming file, line and key (console.bands[0]),
    as in a watchlist: a typo must not silently turn alerts off."""
    symbols: list[str] = []                 # empty: any symbol
    min_score: int = Field(35, ge=0, le=100)
    bands: list[Band] = list(DEFAULT_BANDS)
    regimes: list[RegimeKey] = list(ALERT_REGIMES)
    bias_flips: bool = True
    cooldown_minutes: float = Field(60, ge=0)


class DiscordChannel(AlertFilter):
    id: int


class DiscordWebhook(AlertFilter):
    name: str = "default"
    url_env: str = "DISCORD_WEBHOOK_URL"    # the URL (a secret) comes from this environment variable


class DiscordConfig(_Strict):
    api_base_url: str = "https://discord.com/api/v10"   # env DISCORD_API_BASE_URL overrides (tests: loopback)
    gateway_url: str | None = None                       # env DISCORD_GATEWAY_URL; None: discord.py's default
    channels: list[DiscordChannel] = []                  # bot mode: channels that get alerts
    webhooks: list[DiscordWebhook] = [DiscordWebhook()]  # webhook mode
    dm_users: bool = True                                # DM users whose watchlist names a discord_user_id
    guild_id: int | None = None                          # sync slash commands to this guild (instant); None: global


# ---- closed signals: evaluation and fee model (bot.evaluation; docs/methodology.md "Closed signals") ----------
KLINE_INTERVALS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000}


class RulePlan(_Strict):
    """Overrides for the signals of one rule kind (threshold, regime, bias_flip); unset: the defaults."""
    tp_atr: float | None = Field(None, gt=0)
    sl_atr: float | None = Field(None, gt=0)
    timeout_hours: float | None = Field(None, gt=0)


class EvaluationConfig(_Strict):
    atr_candles: int = Field(14, ge=2, le=90)          # 1h candles before the entry the ATR is measured on
    walk_interval: str = "5m"                          # the candles a signal's life is walked on
    tp_atr: float = Field(1.5, gt=0)                   # TP1 at entry ± tp_atr × ATR
    sl_atr: float = Field(1.0, gt=0)                   # SL at entry ∓ sl_atr × ATR
    timeout_hours: float = Field(24, gt=0)             # TIMEOUT after this long
    per_kind: dict[str, RulePlan] = {}                 # by rule kind: threshold | regime | bias_flip
    taker_fee_bps: float = Field(5.0, ge=0)            # per side (Binance USDⓈ-M taker, VIP 0: 0.05 %)
    slippage_bps: float = Field(2.0, ge=0)             # per side
    max_symbols_per_cycle: int = Field(40, ge=1)       # symbols whose candles one cycle fetches (oldest first)
    move_period_hours: float = Field(4, gt=0)          # score vs next period's |move| (rank correlation, lift)

    @field_validator("walk_interval")
    @classmethod
    def _interval(cls, v: str) -> str:
        if v not in KLINE_INTERVALS:
            raise ValueError(f"must be one of {', '.join(KLINE_INTERVALS)}")
        return v

    @field_validator("per_kind")
    @classmethod
    def _kinds(cls, v: dict[str, RulePlan]) -> dict[str, RulePlan]:
        bad = set(v) - {"threshold", "regime", "bias_flip"}
        if bad:
            raise ValueError(f"unknown rule kind(s) {', '.join(sorted(bad))}: use threshold, regime, bias_flip")
        return v


class LeverageBand(_Strict):
    """One slice of the assumed leverage mix: its share of new positions and its maintenance-margin rate."""
    leverage: float = Field(gt=1, le=125)
    share: float = Field(gt=0, le=1)
    mmr: float = Field(ge=0, lt=0.5)     # maintenance margin rate (isolated); Binance's smallest bracket is 0.4 %

    @model_validator(mode="after")
    def _opens_at_all(self) -> "LeverageBand":
        if self.mmr >= 1 / self.leverage:
            raise ValueError(f"mmr {self.mmr:g} must be below 1/leverage ({1 / self.leverage:g}): "
                             "such a position would be liquidated at entry")
        return self


class LiqMapConfig(_Strict):
    """LiqMap: the estimated liquidation map (bot/liqmap; docs/methodology.md "LiqMap" states every assumption)."""
    symbols: list[str] = Field(["BTCUSDT", "ETHUSDT"], max_length=20)   # up to the 20 largest by open interest
    refresh_minutes: float = Field(2, gt=0)
    interval: str = "5m"                 # candle and open-interest step of the model
    history_days: float = Field(7, gt=0, le=30)     # candles, OI steps and realised prints kept this long
    stream_url: str = "wss://fstream.binance.com/ws"   # force-order stream root; the bot appends /!forceOrder@arr
    leverage_mix: list[LeverageBand] = [
        LeverageBand(leverage=5, share=0.15, mmr=0.02),
        LeverageBand(leverage=10, share=0.30, mmr=0.01),
        LeverageBand(leverage=25, share=0.25, mmr=0.005),
        LeverageBand(leverage=50, share=0.20, mmr=0.004),
        LeverageBand(leverage=100, share=0.10, mmr=0.004),
    ]
    half_life_hours: float = Field(24, gt=0)        # older estimates fade: half the notional left after this
    bin_fraction: float = Field(0.002, gt=0, le=0.05)   # price bins: this fraction of price wide (log-spaced)
    top_fraction: float = Field(0.25, gt=0, le=1)   # "large" cluster / top bands: the top quarter of bins by notional

    @field_validator("leverage_mix")
    @classmethod
    def _shares_add_up(cls, v: list[LeverageBand]) -> list[LeverageBand]:
        if not v:
            raise ValueError("name at least one leverage band")
        if abs(sum(b.share for b in v) - 1) > 1e-6:
            raise ValueError(f"the shares must add up to 1 (they add up to {sum(b.share for b in v):g})")
        return v

    @field_validator("symbols")
    @classmethod
    def _exchange_symbols(cls, v: list[str]) -> list[str]:
        out = [s.strip().upper() for s in v]
        bad = [s for s in out if not s.isalnum() or not s.endswith("USDT") or s == "USDT"]
        if bad:
            raise ValueError(f"write exchange symbols such as BTCUSDT, not {', '.join(bad)}")
        return list(dict.fromkeys(out))

    @field_validator("interval")
    @classmethod
    def _known_interval(cls, v: str) -> str:
        if v not in ("5m", "15m", "30m", "1h"):     # periods both klines and openInterestHist serve
            raise ValueError("one of 5m, 15m, 30m, 1h")
        return v


# ---- receipts: publication of each day's signed root (bot.publication; docs/receipts.md) ----------------------
class PublishConfig(_Strict):
    telegram_chat: int | str | None = None           # a channel "@name" or a numeric chat id; None: not published
    discord_webhook_url_env: str | None = None       # the environment variable holding the webhook URL (a secret)

    @field_validator("telegram_chat")
    @classmethod
    def _chat_shape(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, str) and not (v.startswith("@") and len(v) > 1):
            raise ValueError(f'a channel name such as "@my_channel" or a numeric chat id, got {v!r}')
        return v


class ReceiptsConfig(_Strict):
    publish: PublishConfig = PublishConfig()


class Config(_Strict):
    exchange: ExchangeConfig = ExchangeConfig()
    universe: UniverseConfig = UniverseConfig()
    history: HistoryConfig = HistoryConfig()
    score: ScoreConfig = ScoreConfig()
    engine: EngineConfig = EngineConfig()
    rules: RulesConfig = RulesConfig()
    storage: StorageConfig = StorageConfig()
    console: AlertFilter = AlertFilter()        # what the console shows when no watchlist exists yet
    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    evaluation: EvaluationConfig = EvaluationConfig()   # closed signals (bot.evaluation)
    liqmap: LiqMapConfig = LiqMapConfig()
    receipts: ReceiptsConfig = ReceiptsConfig()          # publication of the daily signed root


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and the problem."""


def format_validation_error(path: Path | str, err: ValidationError, text: str = "") -> str:
    """A header line, then one `file:line: key.path: what was expected` line per problem (as for watchlists)."""
    lines = [f"{path}: invalid configuration"]
    lines += [f"  {p}" for p in problems(err, str(path), compose(text), top_level="(top level)")]
    return "\n".join(lines)


@functools.lru_cache(maxsize=8)
def _parsed(text: str):
    """The same text parses to the same document (~12 ms for config/bot.yaml, pure-Python PyYAML): a process that
    reads the file again (each in-process `bot.cli.main`, as the tests run it) parses it once."""
    return yaml.safe_load(text)


def load_config(path: Path | str | None = None) -> Config:
    """Load and validate the config file; a missing file means all defaults."""
    path = Path(path or os.environ.get("BOT_CONFIG", DEFAULT_CONFIG_PATH))
    if not path.exists():
        return Config()
    text = path.read_text(encoding="utf-8")
    try:
        data = copy.deepcopy(_parsed(text)) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(path, e, text)) from e


def resolve_db_path(cli_value: str | None, cfg: Config) -> str:
    """--db (a SQLite path or a database URL), else DATABASE_URL, else BOT_DB_PATH, else storage.db_path."""
    return (cli_value or os.environ.get("DATABASE_URL", "").strip() or os.environ.get("BOT_DB_PATH")
            or cfg.storage.db_path)
