"""``bionemo-lite keys``: make, list, disable and remove the HTTP service's API keys.

    bionemo-lite keys add alice --file keys.json --requests-per-minute 120   # prints the key, once
    bionemo-lite keys list --file keys.json
    bionemo-lite keys disable alice --file keys.json                          # 403 from now on
    bionemo-lite keys remove alice --file keys.json

The file (``$BIONEMO_LITE_API_KEYS`` when ``--file`` is not given) keeps each
key's SHA-256, never the key; a running ``bionemo-lite serve --api-keys`` picks
changes up without a restart. `bionemo_lite.cli` mounts `keys_app` and wraps
each command of `KEYS_COMMANDS` in its error handling.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from .cli_style import MARKUP_MODE

keys_app = typer.Typer(help="API keys of the HTTP service: add (prints the key once), list, disable, remove.",
                       no_args_is_help=True, rich_markup_mode=MARKUP_MODE)

KeysFileOpt = typer.Option(..., "--file", "-f", envvar="BIONEMO_LITE_API_KEYS", metavar="KEYS",
                           help="The key file (created 0600 by `add`; holds hashes only).")
NameArg = typer.Argument(..., metavar="NAME", help="The key's name (who or what uses it).")


def keys_add_command(
    name: str = NameArg,
    file: Path = KeysFileOpt,
    requests_per_minute: Optional[int] = typer.Option(
        None, "--requests-per-minute", min=0, help="This key's rate limit (0: none) [default: the server's]."
    ),
    max_in_flight: Optional[int] = typer.Option(
        None, "--max-in-flight", min=0, help="This key's concurrent requests (0: none) [default: the server's]."
    ),
) -> None:
    """Make a key for NAME and print it, once: the file keeps only its hash."""
    from bionemo_lite.server.keyfile import new_key, update_key_file

    key = new_key()
    keyfile = update_key_file(file, lambda keys: keys.added(name, key, requests_per_minute=requests_per_minute,
                                                            max_in_flight=max_in_flight), missing_ok=True)
    typer.echo(key)  # alone on stdout, so `KEY=$(bionemo-lite keys add ...)` works
    typer.echo(f"API key {name!r} added to {keyfile.path}; it is shown only this once: store it now.", err=True)


def keys_list_command(
    file: Path = KeysFileOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the keys: names, dates, states, limits (never keys or hashes)."""
    from bionemo_lite.server.keyfile import read_key_file

    from .cli import _print_table  # at call time: `cli` imports this module

    keyfile = read_key_file(file)
    entries = [{"name": name, **record.model_dump(exclude={"hash"})} for name, record in keyfile.keys.items()]
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return

    def shown(value: int | None) -> str:
        return "default" if value is None else (str(value) if value else "none")

    _print_table(["name", "created", "state", "requests_per_minute", "max_in_flight"],
                 [[e["name"], e["created"], "disabled" if e["disabled"] else "enabled", shown(e["requests_per_minute"]),
                   shown(e["max_in_flight"])] for e in entries])


def keys_remove_command(name: str = NameArg, file: Path = KeysFileOpt) -> None:
    """Delete the key NAME (its requests get 401 from then on)."""
    from bionemo_lite.server.keyfile import update_key_file

    update_key_file(file, lambda keys: keys.removed(name))
    typer.echo(f"API key {name!r} removed from {file}", err=True)


def _set_disabled(name: str, file: Path, disabled: bool) -> None:
    from bionemo_lite.server.keyfile import update_key_file

    update_key_file(file, lambda keys: keys.with_disabled(name, disabled))
    typer.echo(f"API key {name!r} {'disabled' if disabled else 'enabled'} in {file}", err=True)


def keys_disable_command(name: str = NameArg, file: Path = KeysFileOpt) -> None:
    """Keep the key NAME but refuse it (403) until `keys enable`."""
    _set_disabled(name, file, True)


def keys_enable_command(name: str = NameArg, file: Path = KeysFileOpt) -> None:
    """Accept the disabled key NAME again."""
    _set_disabled(name, file, False)


KEYS_COMMANDS: dict[str, Callable[..., Any]] = {
    "add": keys_add_command, "list": keys_list_command, "remove": keys_remove_command,
    "disable": keys_disable_command, "enable": keys_enable_command,
}
