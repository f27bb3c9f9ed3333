"""`python -m bot watchlists import DIR` / `export DIR`: move the per-user YAML documents between a folder of files
and the database (DATABASE_URL, or --db): byte for byte, comments included; each document checked first. Its
parser: bot/cli.py."""
from __future__ import annotations

import sys
from pathlib import Path

from .config import Config, resolve_db_path
from .errors import UserError
from .store import Store
from .watchlists import DatabaseDocuments, FileDocuments, Limits, copy_documents


def cmd_watchlists(args, cfg: Config) -> int:
    target = resolve_db_path(args.db, cfg)
    folder = Path(args.directory)
    if args.action == "import" and not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    limits = Limits()
    store = Store(target)
    try:
        files, db = FileDocuments(folder, limits), DatabaseDocuments(store, limits)
        source, dest = (files, db) if args.action == "import" else (db, files)
        copied, problems = copy_documents(source, dest, limits)
    finally:
        store.close()
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    where = store.describe()
    direction = f"from {folder} into {where}" if args.action == "import" else f"from {where} into {folder}"
    print(f"{len(copied)} watchlist(s) copied {direction}" + (f": {', '.join(copied)}" if copied else "")
          + f"; {len(problems)} problem(s)")
    return 1 if problems else 0
