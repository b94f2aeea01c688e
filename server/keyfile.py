"""The API-key file: names, SHA-256 hashes of the keys, creation dates, per-key limits.

    {
      "version": 1,
      "keys": {
        "alice": {"hash": "sha256:9f86d0...", "created": "2026-12-02T03:40:00Z", "disabled": false,
                  "requests_per_minute": 120, "max_in_flight": 4}
      }
    }

The key itself is shown once, by `bionemo-lite keys add`, and never stored. A
key is 256 random bits, so one unsalted SHA-256 is enough (no password-style
slow hash: there is nothing to guess). The file is written atomically with
mode 0600. `KeyStore` re-reads it when it changes, so keys added, removed or
disabled take effect without a restart.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bionemo_lite.errors import BionemoLiteError
from bionemo_lite.io.atomic import atomic_path

logger = logging.getLogger(__name__)

KEY_PREFIX = "bnl_"  # recognisable in logs, configs and secret scanners
_HASH_PREFIX = "sha256:"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class KeyFileError(BionemoLiteError):
    """The key file cannot be read or written, is malformed, or lacks (or already has) a name."""


class KeyRecord(BaseModel):
    """One key's entry: never the key, only its hash.

    Attributes:
        hash: ``sha256:`` and the hex digest of the key.
        created: when the key was made (UTC, ISO 8601).
        disabled: a disabled key is known but refused (HTTP 403).
        requests_per_minute: this key's rate limit; None uses the server's default, 0 is unlimited.
        max_in_flight: this key's concurrent requests; None uses the server's default, 0 is unlimited.
    """

    model_config = ConfigDict(extra="forbid")

    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    created: str = Field(min_length=1)
    disabled: bool = False
    requests_per_minute: int | None = Field(None, ge=0)
    max_in_flight: int | None = Field(None, ge=0)


class KeyFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    keys: dict[str, KeyRecord] = Field(default_factory=dict)


def new_key() -> str:
    """A fresh key: the prefix and 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return _HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise KeyFileError(f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
                           "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class KeyFile:
    """The parsed contents of a key file (immutable: edits return a new one)."""

    path: Path
    keys: dict[str, KeyRecord]

    def match(self, key: str) -> tuple[str, KeyRecord] | None:
        """The entry whose hash is the key's, comparing every hash in constant time."""
        digest = hash_key(key).encode()
        found = None
        for name, record in self.keys.items():  # no early exit: the time does not depend on which entry matches
            if hmac.compare_digest(digest, record.hash.encode()):
                found = (name, record)
        return found

    def require(self, name: str) -> KeyRecord:
        if name not in self.keys:
            close = difflib.get_close_matches(name, list(self.keys), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f" (keys: {', '.join(self.keys) or 'none'})"
            raise KeyFileError(f"no key named {name!r} in {self.path}{hint}")
        return self.keys[name]

    def added(self, name: str, key: str, *, requests_per_minute: int | None = None,
              max_in_flight: int | None = None) -> KeyFile:
        check_name(name)
        if name in self.keys:
            raise KeyFileError(f"a key named {name!r} already exists in {self.path}: choose another name, "
                               f"or `bionemo-lite keys remove {name}` first")
        created = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        record = KeyRecord(hash=hash_key(key), created=created, requests_per_minute=requests_per_minute,
                           max_in_flight=max_in_flight)
        return KeyFile(self.path, {**self.keys, name: record})

    def removed(self, name: str) -> KeyFile:
        self.require(name)
        return KeyFile(self.path, {k: v for k, v in self.keys.items() if k != name})

    def with_disabled(self, name: str, disabled: bool) -> KeyFile:
        record = self.require(name).model_copy(update={"disabled": disabled})
        return KeyFile(self.path, {**self.keys, name: record})

    def to_json(self) -> str:
        body = KeyFileModel(keys=self.keys).model_dump(exclude_none=True)
        return json.dumps(body, indent=2) + "\n"


def read_key_file(path: str | os.PathLike, *, missing_ok: bool = False) -> KeyFile:
    """Parse a key file; a missing one is empty when `missing_ok`.

    Raises:
        KeyFileError: the file is missing (unless `missing_ok`), unreadable, not JSON or not in this format.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return KeyFile(path, {})
        raise KeyFileError(f"API key file {path} does not exist: create it with "
                           f"`bionemo-lite keys add NAME --file {path}`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read API key file {path}: {exc}") from None
    try:
        model = KeyFileModel.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise KeyFileError(f"API key file {path} is not valid: {problems}") from None
    for name in model.keys:
        try:
            check_name(name)
        except KeyFileError as exc:
            raise KeyFileError(f"API key file {path} is not valid: {exc}") from None
    return KeyFile(path, dict(model.keys))


def write_key_file(keyfile: KeyFile) -> None:
    """Replace the file in one step, readable by its owner only."""
    try:
        with atomic_path(keyfile.path) as tmp:
            os.chmod(tmp, 0o600)  # before a byte is written
            tmp.write_text(keyfile.to_json(), encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot write API key file {keyfile.path}: {exc}") from None


def update_key_file(path: str | os.PathLike, change: Callable[[KeyFile], KeyFile], *,
                    missing_ok: bool = False) -> KeyFile:
    """Read, change and write the file under an exclusive lock on its folder, so two
    `bionemo-lite keys` commands at once cannot lose each other's edit."""
    path = Path(path).expanduser()
    try:
        if missing_ok:
            path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError as exc:
        if not missing_ok:
            read_key_file(path)  # a missing file: the error says how to make one
        raise KeyFileError(f"cannot open the folder of API key file {path}: {exc}") from None
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        keyfile = change(read_key_file(path, missing_ok=missing_ok))
        write_key_file(keyfile)
        return keyfile
    finally:
        os.close(folder)  # releases the lock


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    # An atomic replace changes the inode even within one mtime tick.
    return st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev


class KeyStore:
    """The keys a running server accepts, re-read whenever the file changes.

    A file that becomes unreadable or malformed while the server runs is
    logged and the last good keys stay in force, so a half-finished edit
    neither locks every client out nor lets anyone in.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self._signature = _signature(self.path)
        self._keys = read_key_file(self.path)  # at start-up a bad file is fatal
        if not self._keys.keys:
            logger.warning("API key file %s holds no keys: every request but health and docs will be refused",
                           self.path)

    def current(self) -> KeyFile:
        signature = _signature(self.path)
        if signature != self._signature:
            self._signature = signature
            try:
                self._keys = read_key_file(self.path)
                logger.info("API key file %s re-read: %d keys", self.path, len(self._keys.keys))
            except KeyFileError as exc:
                logger.error("%s; keeping the %d keys read before", exc, len(self._keys.keys))
        return self._keys
