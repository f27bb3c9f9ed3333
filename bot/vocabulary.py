"""The bot's words, each defined once: bands, regimes, the regimes that alert, bias, with the pydantic types
that check them wherever users write them (config filters, Discord channels and webhooks, `console:`,
watchlists).

Layering: this module imports nothing from the bot. It is the lowest piece of the core layer (score, rules,
symbols, vocabulary, typed records) and the only core piece config may import: config -> vocabulary and
config -> yamlerrors are the two imports config makes. Everything above (score, rules, watchlists, adapters)
takes these names from here.

One meaning per name:
  band          where a score stands: neutral < lean < stretched < stressed. `score.bands` in the config sets
                the score at which each band above neutral starts; those three are what filters name (BANDS).
  regime_key    a regime's stable key, e.g. "short_squeeze_risk": rules, filters, stored state and rule ids
                ("regime:short_squeeze_risk") use it.
  regime_label  the text shown for it, e.g. "Short squeeze risk · OI building into ...": REGIMES[regime_key].
                (Result dicts and receipts carry both: "regime_key", and "regime" = the label, for display.)
  alert regime  a regime whose entry produces an alert (ALERT_REGIMES); the others are accepted in filters
                but never fire.
  bias          LONG | SHORT | NEUTRAL; a flip between the two DIRECTIONAL ones can alert.
"""
from __future__ import annotations

import difflib
import json
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

__all__ = [
    "NEUTRAL_BAND", "LEAN", "STRETCHED", "STRESSED", "BANDS", "SCORE_BANDS", "DEFAULT_BANDS",
    "SHORT_SQUEEZE_RISK", "LONG_SQUEEZE_RISK", "LONG_CROWDED", "SHORT_RAMP", "LONG_UNWIND", "SHORT_COVERING",
    "NET_LONG", "NET_SHORT", "BALANCED", "REGIMES", "REGIME_CODES", "ALERT_REGIMES", "SQUEEZE_REGIMES",
    "LONG", "SHORT", "NEUTRAL", "BIASES", "DIRECTIONAL",
    "Band", "ScoreBand", "RegimeKey", "Bias", "check_band", "check_regime",
]

# ------------------------------------------------------------------------------------------------------ bands
NEUTRAL_BAND, LEAN, STRETCHED, STRESSED = "neutral", "lean", "stretched", "stressed"
BANDS = (LEAN, STRETCHED, STRESSED)           # the bands with an entry score (config score.bands), lowest first
SCORE_BANDS = (NEUTRAL_BAND, *BANDS)           # every band a score can be in
DEFAULT_BANDS = (STRETCHED, STRESSED)          # band entries that alert unless a filter says otherwise

# ---------------------------------------------------------------------------------------------------- regimes
SHORT_SQUEEZE_RISK, LONG_SQUEEZE_RISK = "short_squeeze_risk", "long_squeeze_risk"
LONG_CROWDED, SHORT_RAMP = "long_crowded", "short_ramp"
LONG_UNWIND, SHORT_COVERING = "long_unwind", "short_covering"
NET_LONG, NET_SHORT, BALANCED = "net_long", "net_short", "balanced"

# regime_key -> regime_label, in the classifier's priority order. Keys are stable (rules and stored state use
# them); labels follow the reference page.
REGIMES: dict[str, str] = {
    SHORT_SQUEEZE_RISK: "Short squeeze risk · OI building into negative funding as price rises",
    LONG_SQUEEZE_RISK: "Long squeeze risk · OI building into positive funding as price falls",
    LONG_CROWDED: "Long crowded · high funding + rising OI",
    SHORT_RAMP: "Short ramp · rising OI + negative funding",
    LONG_UNWIND: "Long unwind · OI falling out of crowded longs",
    SHORT_COVERING: "Short covering · OI falling out of crowded shorts",
    NET_LONG: "Net long bias building",
    NET_SHORT: "Net short bias building",
    BALANCED: "Balanced · low derivatives stress",
}
# The reference API's regime codes. Its published items show the code naming the family and the label the finer
# reading ("LONG_CROWDED" labelled "Net long bias building", "SHORT_RAMP" labelled "Net short bias building"), so
# the net regimes carry their side's family code.
REGIME_CODES: dict[str, str] = {
    SHORT_SQUEEZE_RISK: "SHORT_SQUEEZE", LONG_SQUEEZE_RISK: "LONG_SQUEEZE",
    LONG_CROWDED: "LONG_CROWDED", SHORT_RAMP: "SHORT_RAMP",
    LONG_UNWIND: "LONG_UNWIND", SHORT_COVERING: "SHORT_COVERING",
    NET_LONG: "LONG_CROWDED", NET_SHORT: "SHORT_RAMP", BALANCED: "BALANCED",
}
# Regime entries that produce alerts (the stress regimes), in REGIMES order; also every filter's default.
ALERT_REGIMES = (SHORT_SQUEEZE_RISK, LONG_SQUEEZE_RISK, LONG_CROWDED, SHORT_RAMP, LONG_UNWIND, SHORT_COVERING)
SQUEEZE_REGIMES = frozenset({SHORT_SQUEEZE_RISK, LONG_SQUEEZE_RISK})

# ------------------------------------------------------------------------------------------------------- bias
LONG, SHORT, NEUTRAL = "LONG", "SHORT", "NEUTRAL"
BIASES = (LONG, SHORT, NEUTRAL)
DIRECTIONAL = (LONG, SHORT)                    # the biases a flip goes between


# ------------------------------------------------------------------------------------------- pydantic types
def _quoted(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v if len(v) <= 40 else v[:37] + "...", ensure_ascii=False)
    return "a list" if isinstance(v, (list, tuple)) else "a mapping" if isinstance(v, dict) else repr(v)


def _unknown(what: str, v: Any, known) -> ValueError:
    close = difflib.get_close_matches(v, list(known), n=1, cutoff=0.75) if isinstance(v, str) else []
    hint = f" — did you mean {close[0]}?" if close else f" (known: {', '.join(known)})"
    return ValueError(f"unknown {what} {_quoted(v)}{hint}")


def check_band(v: Any) -> str:
    """`v` if it names a band a filter can ask for (one of BANDS); ValueError otherwise."""
    if not isinstance(v, str) or v not in BANDS:
        raise _unknown("band", v, BANDS)
    return v


def check_regime(v: Any) -> str:
    """`v` if it is a regime key; ValueError otherwise."""
    if not isinstance(v, str) or v not in REGIMES:
        raise _unknown("regime", v, REGIMES)
    return v


# Field types for what users write. Their messages name the offending value and what is known; bot.yamlerrors
# adds the file, line and key path.
Band = Annotated[str, BeforeValidator(check_band)]             # a band a filter names: one of BANDS
RegimeKey = Annotated[str, BeforeValidator(check_regime)]      # a key of REGIMES
# Annotations for values the bot computes (the tuples above, as types; a tuple subscript is Literal[*tuple]).
ScoreBand = Literal[SCORE_BANDS]                               # the band of a score
Bias = Literal[BIASES]
