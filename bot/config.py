"""Typed configuration loaded from `config/bot.yaml` (yaml.safe_load + pydantic validation).

Every key has a default, so an empty file is valid. Validation errors name the file, the line, the key path
and what was expected; see `load_config`.

Layering: config sits below the core and imports only bot.vocabulary (band and regime names and their types)
and bot.yamlerrors (the file:line error format it shares with the watchlists), neither of which imports
anything from the bot.
"""
from __future__ import annotations

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


class TelegramConfig(_Strict):
    api_base_url: str = "https://api.telegram.org"   # env TELEGRAM_API_BASE_URL overrides; the bot appends /bot<token>
    allowed_user_ids: list[int] = []                  # empty: anyone may use the bot
    admin_ids: list[int] = []                         # may run /stats and /reload
    poll_timeout_s: int = Field(20, ge=0, le=50)      # getUpdates long-poll timeout


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


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and the problem."""


def format_validation_error(path: Path | str, err: ValidationError, text: str = "") -> str:
    """A header line, then one `file:line: key.path: what was expected` line per problem (as for watchlists)."""
    lines = [f"{path}: invalid configuration"]
    lines += [f"  {p}" for p in problems(err, str(path), compose(text), top_level="(top level)")]
    return "\n".join(lines)


def load_config(path: Path | str | None = None) -> Config:
    """Load and validate the config file; a missing file means all defaults."""
    path = Path(path or os.environ.get("BOT_CONFIG", DEFAULT_CONFIG_PATH))
    if not path.exists():
        return Config()
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(path, e, text)) from e


def resolve_db_path(cli_value: str | None, cfg: Config) -> str:
    """--db, else BOT_DB_PATH, else storage.db_path."""
    return cli_value or os.environ.get("BOT_DB_PATH") or cfg.storage.db_path
