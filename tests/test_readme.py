"""The README's commands run as written, so it cannot rot.

Every ```bash block runs, in order, as one shell session (a server started in
one block answers the next), and every ```python block runs, in order, as one
Python session, the way a reader pastes them. Nothing in the text is rewritten:
the blocks read weights from ``~/models/`` and the test points ``HOME`` at a
folder whose ``models/`` holds tiny random-weight checkpoints in the official
formats under the official file names. A block preceded by
``<!-- readme-test: skip: REASON -->`` is not run (downloads, the test suite itself).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"(?:<!--\s*readme-test:\s*skip:\s*(?P<reason>[^>]*?)\s*-->\s*\n)?```(?P<lang>\w+)\n(?P<body>.*?)\n```",
                   re.S)
# Files a checkout has that `make serve` needs: the scratch checkout links to them.
CHECKOUT_FILES = ("Makefile", "pyproject.toml", "requirements.txt", ".venv")


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    skip_reason: str | None


def readme_blocks() -> list[Block]:
    return [Block(m["lang"], m["body"], m["reason"]) for m in FENCE.finditer(README.read_text())]


def test_every_skipped_block_says_why_and_every_door_is_run():
    blocks = readme_blocks()
    run = [b for b in blocks if b.lang in ("bash", "python") and b.skip_reason is None]
    assert all(b.skip_reason.strip() for b in blocks if b.skip_reason is not None)
    assert {b.lang for b in blocks} <= {"bash", "python", "toml", "text", "json"}
    ran = "\n".join(b.body for b in run)
    for door in ("bl.load(", "bionemo-lite embed", "bionemo-lite score", "make serve", "curl "):
        assert door in ran, f"no README block that runs uses {door!r}"


@pytest.fixture(scope="module")
def home(tmp_path_factory, esm2_fair_checkpoint) -> Path:
    """A HOME whose ``models/`` holds what the README loads, and a scratch checkout to run `make` in."""
    from bionemo_lite.zoo.esmfold.testing import write_tiny_esmfold_dir
    from megamolbart_fixtures import NemoLayout, random_nemo_state, write_nemo_archive

    home = tmp_path_factory.mktemp("home")
    models = home / "models"
    models.mkdir()
    for file in esm2_fair_checkpoint.parent.glob(esm2_fair_checkpoint.stem + "*.pt"):
        (models / file.name).symlink_to(file)
    write_tiny_esmfold_dir(models / "esmfold_v1")
    layout = NemoLayout()
    write_nemo_archive(models / "megamolbart.nemo", layout, random_nemo_state(layout))
    return home


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIONEMO_LITE_")}
    # "activate first": the venv's bin leads PATH, as `source .venv/bin/activate` does.
    env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               BIONEMO_LITE_TORCH_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _run_session(argv: list[str], script: str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run one session in its own process group; whatever it started in the background dies with it.

    Output goes to a file, not a pipe: a server the session leaves running keeps its
    copy of the output open, and a pipe would never reach end-of-file.
    """
    log = cwd / f"session-{Path(argv[0]).name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                text=True, start_new_session=True)
        try:
            proc.stdin.write(script)
            proc.stdin.close()
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"README session timed out after {timeout} s; output:\n{log.read_text()[-4000:]}")
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, f"README session failed ({proc.returncode}); output:\n{text[-6000:]}"
    return text


@pytest.mark.slow
def test_readme_shell_blocks_run(home, tmp_path):
    # `make serve` below must find the install done (as after `make test`), not reinstall from a scratch folder.
    stale = subprocess.run(["make", "-q", "-C", str(REPO), "install"], capture_output=True).returncode
    assert stale == 0, "the venv is older than pyproject.toml/requirements.txt/Makefile: run `make install`"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in CHECKOUT_FILES:
        (checkout / name).symlink_to(REPO / name)
    blocks = [b.body for b in readme_blocks() if b.lang == "bash" and b.skip_reason is None]
    script = "set -euo pipefail\n" + "\n".join(blocks) + "\n"
    out = _run_session(["bash", "-s"], script, checkout, _environment(home), timeout=600)
    # Each curl prints its JSON answer: none may be an error body.
    assert not re.search(r"\"error\": ?\"", out), out[-6000:]  # an error body names its code; a job's "error": null is not one
    assert '"embeddings"' in out


@pytest.mark.slow
def test_readme_python_blocks_run(home, tmp_path):
    blocks = [b.body for b in readme_blocks() if b.lang == "python" and b.skip_reason is None]
    _run_session([sys.executable, "-"], "\n\n".join(blocks) + "\n", tmp_path, _environment(home), timeout=600)
