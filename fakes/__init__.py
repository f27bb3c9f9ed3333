"""Loopback fakes of the chat platforms, for tests and manual trials only.

``fakes.telegram_server`` speaks the Telegram Bot API, ``fakes.discord_server`` Discord's REST API,
gateway and webhooks. This folder is never packaged (``pyproject.toml`` packages ``bot*`` only) and
nothing under ``bot/`` imports it. Run a fake by hand from the repository root, e.g.
``python -m fakes.telegram_server --port 8082``.
"""
