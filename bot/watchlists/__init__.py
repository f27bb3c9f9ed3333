"""Per-user watchlists: one YAML file per user, validated with file:line errors, hot-reloaded, and safely
editable from chat. docs/watchlists.md is the user-facing reference.

    model.py      the schema (`Watchlist`), parsing one file with file:line errors, the commented TEMPLATE
    quiet.py      quiet hours on the user's own clock (zoneinfo, DST-safe)
    files.py      reading one file (symlinks leaving the folder refused; every error that file's problem only)
                  and the cross-process folder lock around edits
    editing.py    round-trip edits that keep comments (ruamel.yaml), atomic writes, per-user locks
    documents.py  where the YAML documents live: files in a folder (default) or rows of the database
    registry.py   the directory of watchlists: loading, hot reload keeping the last good version, lookups

Everything other modules use is importable from `bot.watchlists` itself.
"""
from ..vocabulary import ALERT_REGIMES as DEFAULT_REGIMES   # (old names, kept for importers)
from ..vocabulary import BANDS
from ..yamlerrors import Problem
from .documents import DatabaseDocuments, Documents, FileDocuments, copy_documents
from .editing import EditError, EditResult
from .model import IDENTITY_FIELDS, TEMPLATE, Limits, Watchlist, WatchlistError, parse_watchlist
from .registry import DEFAULT_DIRECTORY, WatchlistRegistry, check_watchlists

__all__ = [
    "DEFAULT_DIRECTORY", "BANDS", "DEFAULT_REGIMES", "IDENTITY_FIELDS", "TEMPLATE",
    "Limits", "Watchlist", "Problem", "WatchlistError", "EditError", "EditResult",
    "WatchlistRegistry", "parse_watchlist", "check_watchlists",
    "Documents", "FileDocuments", "DatabaseDocuments", "copy_documents",
]
