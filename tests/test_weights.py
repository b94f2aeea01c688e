"""Weight resolution, downloads (from a real HTTP server on loopback) and safe loading."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import pickle
import stat
import threading

import pytest
import torch

from bionemo_lite import DownloadError, ModelSpec, WeightFile, WeightSource, WeightsNotFoundError
from bionemo_lite.errors import CheckpointError
from bionemo_lite.weights import cache_home, model_cache_dir, pull, resolve_weights, safe_torch_load, weights_available


@pytest.fixture
def file_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving `tmp_path/www`."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def make_spec(url_base: str, sha: str | None = None, extra_optional: bool = False) -> ModelSpec:
    files = [WeightFile("tiny.pt", f"{url_base}/tiny.pt", sha256=sha)]
    if extra_optional:
        files.append(WeightFile("tiny-extra.pt", f"{url_base}/missing.pt", required=False))
    return ModelSpec(
        name="tiny_test_model",
        family="test",
        verbs={"embed"},
        loader="builtins:print",
        weights=(WeightSource("test", tuple(files), entry="tiny.pt", homepage="https://example.org/tiny"),),
    )


def test_cache_home_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BIONEMO_LITE_HOME", str(tmp_path / "h"))
    assert cache_home() == tmp_path / "h"


def test_missing_weights_error_names_file_place_and_remedy():
    spec = make_spec("http://127.0.0.1:9")
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights(spec)
    msg = str(err.value)
    assert "tiny.pt" in msg and str(model_cache_dir(spec)) in msg
    assert "bionemo-lite weights pull tiny_test_model" in msg and "https://example.org/tiny" in msg
    assert not weights_available(spec)


def test_explicit_path_must_exist(tmp_path):
    spec = make_spec("http://127.0.0.1:9")
    with pytest.raises(WeightsNotFoundError, match="nothing.pt"):
        resolve_weights(spec, tmp_path / "nothing.pt")
    (tmp_path / "ok.pt").write_bytes(b"x")
    assert resolve_weights(spec, tmp_path / "ok.pt") == tmp_path / "ok.pt"


def test_pull_downloads_checks_sha_and_resolves(file_server):
    root, base = file_server
    payload = b"weights" * 1000
    (root / "tiny.pt").write_bytes(payload)
    spec = make_spec(base, sha=hashlib.sha256(payload).hexdigest(), extra_optional=True)
    path = pull(spec, progress=False)
    assert path.read_bytes() == payload
    assert resolve_weights(spec) == path  # the optional file's 404 did not fail the pull


def test_pulled_weights_follow_the_umask(file_server):
    root, base = file_server
    (root / "tiny.pt").write_bytes(b"weights")
    old = os.umask(0o022)
    try:
        path = pull(make_spec(base), progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp's 0600 would hide them from other users


def test_pull_with_wrong_sha_leaves_nothing(file_server):
    root, base = file_server
    (root / "tiny.pt").write_bytes(b"tampered")
    spec = make_spec(base, sha="0" * 64)
    with pytest.raises(DownloadError, match="sha256"):
        pull(spec, progress=False)
    folder = model_cache_dir(spec)
    assert not (folder / "tiny.pt").exists()
    assert not list(folder.glob("*.part"))


def test_pull_offline_is_a_clean_error():
    spec = make_spec("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(DownloadError, match="could not download"):
        pull(spec, progress=False)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_safe_load_refuses_arbitrary_objects(tmp_path, capsys):
    bad = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, bad)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        safe_torch_load(bad)
    assert "this must never run" not in capsys.readouterr().out


def test_safe_load_reads_tensors_and_allowed_types(tmp_path):
    import argparse

    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2), "cfg": argparse.Namespace(a=1)}, good)
    with pytest.raises(CheckpointError):
        safe_torch_load(good)
    data = safe_torch_load(good, [argparse.Namespace])
    assert data["cfg"].a == 1 and torch.equal(data["w"], torch.ones(2))


def test_safe_loads_in_threads_keep_their_own_allowed_types(tmp_path):
    """torch's allow-list is process-wide: loads running at once (a server preloading two models)
    must not drop each other's allowed types on the way out."""
    import argparse
    from concurrent.futures import ThreadPoolExecutor

    with_namespace, plain = tmp_path / "namespace.pt", tmp_path / "plain.pt"
    torch.save({"w": torch.ones(64, 64), "cfg": argparse.Namespace(a=1)}, with_namespace)
    torch.save({"w": torch.ones(64, 64)}, plain)

    def load(i: int):
        return safe_torch_load(with_namespace, [argparse.Namespace]) if i % 2 else safe_torch_load(plain)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(load, range(400)))
    assert all(r["cfg"].a == 1 for r in results[1::2])


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(CheckpointError):
        safe_torch_load(junk)


def test_random_bytes_are_not_called_a_refused_pickle(tmp_path):
    junk = tmp_path / "noise.pt"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        safe_torch_load(junk)


def test_pull_falls_back_to_the_next_source(file_server):
    root, base = file_server
    (root / "mirror.pt").write_bytes(b"from the mirror")
    first = WeightSource("primary", (WeightFile("tiny.pt", "http://127.0.0.1:9/tiny.pt"),), entry="tiny.pt")
    mirror = WeightSource("mirror", (WeightFile("tiny.pt", f"{base}/mirror.pt"),), entry="tiny.pt")
    spec = ModelSpec(name="tiny_mirrored", family="test", verbs={"embed"}, loader="builtins:print", weights=(first, mirror))
    assert pull(spec, progress=False).read_bytes() == b"from the mirror"


def test_failed_pull_says_how_to_get_weights_and_leaves_no_folder():
    spec = make_spec("http://127.0.0.1:9")
    with pytest.raises(DownloadError) as err:
        pull(spec, progress=False)
    assert "https://example.org/tiny" in str(err.value) and "--weights" in str(err.value)
    assert not model_cache_dir(spec).exists()
