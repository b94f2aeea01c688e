"""One import namespace, and a core that points at nothing above it.

The repository keeps its ``model_zoo/`` and ``server/`` folders, installed as
``bionemo_lite.zoo`` and ``bionemo_lite.server``: no generic top-level name like
``server`` can clash with another package. The core (registry, specs, verbs,
results, batching, I/O, jobs) imports no family and no front door.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bionemo_lite"
ABOVE_THE_CORE = ("bionemo_lite.zoo", "bionemo_lite.server", "bionemo_lite.cli", "bionemo_lite.triton")
# Front doors and backends that live in the package folder but are not the core.
NOT_CORE = {"cli.py", "cli_output.py", "cli_style.py", "cli_keys.py", "triton"}


def test_the_distribution_installs_one_top_level_name():
    names = {top for top, dists in packages_distributions().items() if "bionemo-lite" in dists}
    assert names == {"bionemo_lite"}
    assert distribution("bionemo-lite").read_text("top_level.txt").split() == ["bionemo_lite"]
    for entry in distribution("bionemo-lite").entry_points.select(group="bionemo_lite.models"):
        assert entry.value.startswith("bionemo_lite.zoo."), entry


def test_importing_the_core_loads_no_front_door_and_no_family():
    code = ("import json, sys, bionemo_lite as bl; bl.list_models(); bl.get_spec('esm2_t6_8M_UR50D'); "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert not [m for m in loaded if m.startswith(("bionemo_lite.server", "bionemo_lite.cli", "bionemo_lite.triton"))]
    assert not {"server", "model_zoo", "fastapi", "typer", "torch", "tritonclient"} & set(loaded)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module:  # relative: resolve against the module's package
            package = ".".join(("bionemo_lite", *path.relative_to(PACKAGE).parent.parts))
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            names.add(f"{base}.{node.module}")
    return names


def test_no_core_module_imports_a_family_or_a_front_door():
    core = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in NOT_CORE]
    assert len(core) > 15
    offenders = {str(p.relative_to(PACKAGE)): sorted(n for n in _imports(p) if n.startswith(ABOVE_THE_CORE)
                                                     or n.split(".")[0] in ("server", "model_zoo"))
                 for p in core}
    assert {k: v for k, v in offenders.items() if v} == {}
