"""Discord: channel alerts and slash commands (bot mode), channel alerts by webhook (webhook mode).

`adapter.DiscordAdapter` composes the parts: `client` (discord.py bot + slash commands), `senders` (channel and
DM alerts), `webhook` (webhook alerts), `routes` (route names, webhooks from the environment, dead routes) and
`format` (replies and digests as embeds).
"""
from .adapter import DiscordAdapter
from .client import CommandBridge, DiscordBot, discord_commands
from .format import (COLOURS, MAX_CONTENT, MAX_DESCRIPTION, MAX_EMBED_TOTAL, MAX_EMBEDS, digest_messages, embed_size,
                     reply_messages, signal_embed)
from .routes import CHANNEL, DM, WEBHOOK, RouteBook, WebhookGroup, WebhookTarget, webhook_groups
from .senders import BotSender
from .webhook import WebhookSender

__all__ = ["CHANNEL", "COLOURS", "DM", "MAX_CONTENT", "MAX_DESCRIPTION", "MAX_EMBEDS", "MAX_EMBED_TOTAL",
           "WEBHOOK", "BotSender", "CommandBridge", "DiscordAdapter", "DiscordBot", "RouteBook", "WebhookGroup",
           "WebhookSender", "WebhookTarget", "digest_messages", "discord_commands", "embed_size", "reply_messages",
           "signal_embed", "webhook_groups"]
