"""`python -m bot watchlists import DIR` / `export DIR`: move the per-user YAML documents between a folder of files
and the database (DATABASE_URL, or --db): byte for byte, comments included; each document checked first."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import Config, resolve_db_path
from .errors import UserError


def cmd_watchlists(args, cfg: Config) -> int:
    # the database layer and the watchlist documents: only when it runs, not for every command's parser
    from .store import Store
    from .watchlists import DatabaseDocuments, FileDocuments, Limits, copy_documents
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


def register(sub: argparse._SubParsersAction) -> None:
    wl = sub.add_parser("watchlists", help="move watchlists between a folder of YAML files and the database")
    wl.add_argument("action", choices=["import", "export"], help="import: folder -> database; export: database -> "
                                                                 "folder")
    wl.add_argument("directory", help="the folder of <user id>.yaml files")
    wl.add_argument("--db", default=None, help="database URL or SQLite path (default: DATABASE_URL, BOT_DB_PATH)")
    wl.set_defaults(func=cmd_watchlists)
