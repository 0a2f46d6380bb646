"""Help text shown as written: rich markup off for every difftk command.

Typer renders help through rich, which reads ``[word]`` as a style tag and drops it, so
"TOML recipe whose [model] to measure" printed as "recipe whose  to measure". Help strings
and docstrings here are plain text: these command classes escape them (once per built
command) before typer's rich formatter sees them, keeping typer's panels and layout. They
also join each paragraph's lines: typer keeps the single line breaks of every paragraph but
the first, so a docstring wrapped at 90 columns broke mid-sentence at the terminal's width.
"""

from __future__ import annotations

import inspect

from rich.markup import escape
from typer import core


def _rich_markup_active(command) -> bool:
    return core.HAS_RICH and getattr(command, "rich_markup_mode", None) == "rich"


def flowing(text: str) -> str:
    """``text`` with each paragraph on one line (click's ``\\b`` marks one to keep as is)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split("\n"))
                       for p in paragraphs)


def escape_help_once(command) -> None:
    """Escape the command's own help, short help and its parameters' help for rich."""
    if getattr(command, "_difftk_help_escaped", False) or not _rich_markup_active(command):
        return
    if command.help:
        command.help = escape(flowing(command.help))
    if command.short_help:
        command.short_help = escape(command.short_help)
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)
    command._difftk_help_escaped = True


class PlainTextCommand(core.TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        escape_help_once(self)
        super().format_help(ctx, formatter)


class PlainTextGroup(core.TyperGroup):
    def format_help(self, ctx, formatter) -> None:
        escape_help_once(self)
        for name in self.list_commands(ctx):  # the one-line summaries in the command table
            sub = self.get_command(ctx, name)
            if sub is not None:
                escape_help_once(sub)
        super().format_help(ctx, formatter)
