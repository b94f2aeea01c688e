"""How the command line presents itself: usage lines and help, shared by ``bionemo-lite`` and its sub-apps.

Typer writes required arguments as ``{model} {input}`` in usage lines; the
usual ``MODEL INPUT`` (optional ones in brackets) is what `Command` prints.
Help text is rendered without Rich markup (``rich_markup_mode=None`` on each
app), so square brackets in help, such as the ``[default: ...]`` of every
option, are shown as written instead of being eaten as markup tags.
"""

from __future__ import annotations

from typing import Any

from typer import Context
from typer.core import TyperCommand

MARKUP_MODE: Any = None


class Command(TyperCommand):
    """A typer command whose usage line names its arguments ``MODEL INPUT``."""

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(f"{name}..." if param.nargs != 1 else name)
        return pieces
