"""Logging: one line per event, and secrets never reach a log line.

httpx logs every request URL at INFO, and a Telegram URL holds the bot token; discord webhook URLs hold
theirs. Two defences: the chatty HTTP loggers are raised to WARNING, and every log record is redacted
when it is created (a record factory, so it holds for every handler, pytest's caplog included): known
secrets from the environment, and anything shaped like a Telegram token or webhook token, become '***'.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from urllib.parse import quote

SECRET_ENV = ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "DISCORD_WEBHOOK_URL")
_PATTERNS = [
    re.compile(r"bot\d{3,}(?::|%3[Aa])[A-Za-z0-9_-]{6,}"),       # .../bot123456:ABC-DEF/... (%3A: file downloads)
    re.compile(r"(webhooks/\d+/)[A-Za-z0-9_.-]{6,}"),            # discord webhook token
]


class Redactor:
    def __init__(self, extra: list[str] | None = None):
        self.extra = list(extra or [])

    def secrets(self) -> list[str]:
        values = []
        for name in SECRET_ENV:
            for v in os.environ.get(name, "").split(","):
                v = v.strip()
                if len(v) >= 6:
                    values.append(v)
                    if quote(v, safe="") != v:     # PTB URL-encodes file-download paths (':' -> '%3A')
                        values.append(quote(v, safe=""))
        return values + self.extra

    def redact(self, text: str) -> str:
        for s in self.secrets():
            text = text.replace(s, "***")
        text = _PATTERNS[0].sub("bot***", text)
        return _PATTERNS[1].sub(r"\1***", text)

    def clean(self, record: logging.LogRecord) -> logging.LogRecord:
        try:
            msg = record.getMessage()
        except Exception:   # a broken format string: keep the raw parts, still redacted
            msg = f"{record.msg} {record.args}"
        record.msg, record.args = self.redact(msg), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record


REDACTOR = Redactor()
_installed = False


def install_redaction() -> Redactor:
    """Redact every log record at creation (idempotent)."""
    global _installed
    if not _installed:
        base = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            return REDACTOR.clean(base(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _installed = True
    return REDACTOR


def setup_logging(level: str = "INFO", stream=None) -> Redactor:
    install_redaction()
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "telegram.ext.Updater", "apscheduler",
                  "aiohttp.access", "discord.gateway", "discord.http"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return REDACTOR
