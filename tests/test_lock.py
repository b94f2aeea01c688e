"""The environment the suite runs in is the one `requirements.txt` pins (what `make install` installs)."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[1] / "requirements.txt"


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned and re.fullmatch(r"[\w.+!-]+", pinned), f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = pinned
    return pins


def test_every_locked_package_is_installed_at_its_pinned_version():
    wrong = {}
    for name, pinned in locked().items():
        try:
            have = version(name)
        except PackageNotFoundError:
            have = None
        if have is None or have.split("+")[0] != pinned:
            wrong[name] = (pinned, have)
    assert wrong == {}, "run `make install` (or `make lock` after changing pyproject.toml)"


def test_every_dependency_of_the_project_and_its_extras_is_locked():
    pins = locked()
    missing = {str(r) for r in map(Requirement, requires("bionemo-lite") or []) if canonicalize_name(r.name) not in pins}
    assert missing == set(), "dependencies missing from requirements.txt: run `make lock`"


def test_the_pep_751_lock_holds_the_same_versions():
    """pylock.toml (written by `make lock` with `pip lock`, hashes included) agrees with requirements.txt."""
    import tomllib

    data = tomllib.loads((LOCK.parent / "pylock.toml").read_text())
    assert data["lock-version"] == "1.0"
    packages = {canonicalize_name(p["name"]): p for p in data["packages"]}
    for name, pinned in locked().items():
        assert name in packages, f"{name} is in requirements.txt but not in pylock.toml: run `make lock`"
        assert packages[name]["version"].split("+")[0] == pinned, name
        assert all(w["hashes"]["sha256"] for w in packages[name].get("wheels", [])), name
