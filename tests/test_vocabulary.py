"""The bot's vocabulary (bands, regimes, bias) is defined once, in bot/vocabulary.py, and every place users write
it checks it the same way; config loads only the vocabulary and the YAML-error helpers (the
layering as a whole is the import-linter contract, tests/test_architecture.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot import vocabulary as v
from bot.config import AlertFilter, Bands, ConfigError, ScoreConfig, load_config
from bot.rules import ALERT_REGIMES, band_thresholds
from bot.score import REGIMES, ScoreInputs, score_all
from bot.watchlists import WatchlistError, parse_watchlist

ROOT = Path(__file__).resolve().parent.parent


def imported_bot_modules(module: str) -> set[str]:
    """The bot modules loaded by importing `module` in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('bot')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_config_loads_without_the_layers_above_it():
    # config sits below the core: it may use the vocabulary and the YAML-error helpers, nothing else
    assert imported_bot_modules("bot.config") == {"bot", "bot.config", "bot.vocabulary", "bot.yamlerrors"}


def test_one_definition_each():
    assert REGIMES is v.REGIMES and ALERT_REGIMES is v.ALERT_REGIMES
    assert set(v.ALERT_REGIMES) < set(v.REGIMES) and v.SQUEEZE_REGIMES < set(v.ALERT_REGIMES)
    assert tuple(Bands.model_fields) == v.BANDS          # one threshold per band, in order
    assert v.SCORE_BANDS == (v.NEUTRAL_BAND, *v.BANDS) and set(v.DEFAULT_BANDS) <= set(v.BANDS)
    assert set(v.DIRECTIONAL) < set(v.BIASES)
    f = AlertFilter()
    assert f.bands == list(v.DEFAULT_BANDS) and f.regimes == list(v.ALERT_REGIMES)
    wl = parse_watchlist("", "w.yaml")
    assert wl.bands == f.bands and wl.regimes == f.regimes
    cfg = ScoreConfig()
    assert band_thresholds(v.BANDS, cfg) == {cfg.bands.lean, cfg.bands.stretched, cfg.bands.stressed}


def test_the_score_speaks_the_vocabulary():
    rows = [ScoreInputs("AUSDT", 0.002, 8, 0.05, 0.1, 0.3, 0.01, -0.02, -0.05),
            ScoreInputs("BUSDT", -0.002, 8, 0.05, 0.1, 0.3, -0.01, 0.02, 0.05),
            ScoreInputs("CUSDT", 0.0001)]
    for r in score_all(rows, ScoreConfig()):
        assert r.band in v.SCORE_BANDS and r.bias in v.BIASES
        assert r.regime_label == v.REGIMES[r.regime_key]
        d = r.as_dict()
        assert d["regime_key"] == r.regime_key and d["regime"] == r.regime_label


@pytest.mark.parametrize("section, yaml_text, where", [
    ("console", "console:\n  bands: [stresed]\n", "console.bands[0]"),
    ("channel", "discord:\n  channels:\n    - id: 1\n      bands: [stresed]\n", "discord.channels[0].bands[0]"),
    ("webhook", "discord:\n  webhooks:\n    - name: a\n      bands: [stresed]\n", "discord.webhooks[0].bands[0]"),
])
def test_config_filters_reject_a_band_typo_like_a_watchlist_does(tmp_path, section, yaml_text, where):
    path = tmp_path / "bot.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    line = len(yaml_text.splitlines())
    message = 'unknown band "stresed" — did you mean stressed?'
    assert f"{path}:{line}: {where}: {message}" in str(e.value)
    with pytest.raises(WatchlistError) as w:
        parse_watchlist("bands: [stresed]\n", "w.yaml")
    assert str(w.value) == f"w.yaml:1: bands[0]: {message}"


@pytest.mark.parametrize("value, message", [
    ("moon", 'unknown regime "moon" (known: short_squeeze_risk, long_squeeze_risk, long_crowded, short_ramp, '
             'long_unwind, short_covering, net_long, net_short, balanced)'),
    ("long_crowed", 'unknown regime "long_crowed" — did you mean long_crowded?'),
    ('"12"', 'unknown regime "12" (known: short_squeeze_risk,'),
    (12, "unknown regime 12 (known: short_squeeze_risk,"),
])
def test_config_filters_reject_unknown_regimes(tmp_path, value, message):
    path = tmp_path / "bot.yaml"
    path.write_text(f"console:\n  regimes:\n    - long_crowded\n    - {value}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"{path}:4: console.regimes[1]: {message}" in str(e.value)


def test_valid_filters_still_load(tmp_path):
    path = tmp_path / "bot.yaml"
    path.write_text("console:\n  bands: [lean]\n  regimes: [net_long, short_squeeze_risk]\n"
                    "discord:\n  channels: [{id: 1, bands: [], regimes: []}]\n")
    cfg = load_config(path)
    assert cfg.console.bands == ["lean"] and cfg.console.regimes == ["net_long", "short_squeeze_risk"]
    assert cfg.discord.channels[0].bands == [] and cfg.discord.channels[0].regimes == []
