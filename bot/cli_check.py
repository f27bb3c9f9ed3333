"""`python -m bot check-config`: validate config/bot.yaml and every watchlist file, exit 0/1 (its parser: bot/cli.py).
It opens no database and no connection, so it imports neither layer."""
from __future__ import annotations

import sys
from pathlib import Path

from .config import Config, ConfigError, load_config
from .watchlists import check_watchlists


def cmd_check_config(args, cfg_unused: Config | None = None) -> int:
    problems = []
    try:
        load_config(args.config)
        print(f"ok  {args.config or 'config/bot.yaml'}")
    except ConfigError as e:
        problems.append(str(e))
    wl = check_watchlists(args.watchlists)
    problems += wl
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    count = len(list(Path(args.watchlists).glob("*.yaml"))) if Path(args.watchlists).is_dir() else 0
    print(f"{count} watchlist file(s) checked in {args.watchlists}, {len(problems)} problem(s)")
    return 1 if problems else 0
