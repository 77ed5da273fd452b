import functools
import http.server
import logging
import threading

import pytest

from conftest import write_imdb_archive
from rnnlab.data import sources
from rnnlab.data.imdb import check_archive
from rnnlab.data.sources import RemoteFile, Source, fetch, register, sha256sum
from rnnlab.errors import RnnlabError

CLOSED_URL = "http://127.0.0.1:9/nothing-listens-here/file.bin"


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _register(name, url, sha256, check=None):
    return register(Source(name=name, files=(RemoteFile("file.bin", url, sha256),), check=check))


def test_download_verifies_checksum_and_caches(served, tmp_path):
    www, base = served
    (www / "file.bin").write_bytes(b"hello rnnlab")
    _register("t_dl", f"{base}/file.bin", sha256sum(www / "file.bin"))
    paths = fetch("t_dl", root=tmp_path / "data", local_dir=tmp_path / "nolocal")
    assert paths["file.bin"] == tmp_path / "data" / "t_dl" / "file.bin"
    assert paths["file.bin"].read_bytes() == b"hello rnnlab"
    (www / "file.bin").unlink()  # second call must not need the server
    assert fetch("t_dl", root=tmp_path / "data")["file.bin"].read_bytes() == b"hello rnnlab"


def test_download_with_wrong_checksum_is_a_clear_error(served, tmp_path):
    www, base = served
    (www / "file.bin").write_bytes(b"tampered")
    _register("t_bad", f"{base}/file.bin", "0" * 64)
    with pytest.raises(RnnlabError, match="corrupt or changed upstream") as err:
        fetch("t_bad", root=tmp_path / "data")
    assert "RNNLAB_LOCAL_DATA/t_bad/file.bin" in str(err.value)


def test_missing_file_without_network_names_url_path_and_fix(tmp_path):
    _register("t_missing", CLOSED_URL, "0" * 64)
    with pytest.raises(RnnlabError) as err:
        fetch("t_missing", root=tmp_path / "data", local_dir=tmp_path / "empty")
    msg = str(err.value)
    assert CLOSED_URL in msg and str(tmp_path / "data" / "t_missing" / "file.bin") in msg
    assert "RNNLAB_LOCAL_DATA" in msg


def test_local_copy_with_official_checksum_is_used_in_place_without_network(tmp_path, monkeypatch):
    local = tmp_path / "local" / "t_local" / "file.bin"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"official bytes")
    _register("t_local", CLOSED_URL, sha256sum(local))
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "local"))
    monkeypatch.setattr(sources, "_download", lambda *a: pytest.fail("no download may be attempted"))
    assert fetch("t_local", root=tmp_path / "data")["file.bin"] == local


def test_repacked_local_copy_is_accepted_after_structural_check_with_warning(tmp_path, caplog):
    archive = write_imdb_archive(tmp_path / "local" / "t_imdb" / "file.bin")
    _register("t_imdb", CLOSED_URL, "f" * 64, check=check_archive)
    with caplog.at_level(logging.WARNING):
        path = fetch("t_imdb", root=tmp_path / "data", local_dir=tmp_path / "local")["file.bin"]
    assert path == archive
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "not the official" in warning[0] and "train/pos 40" in warning[0]


@pytest.mark.parametrize("content", [b"this is not an archive", None])
def test_wrong_local_file_is_refused_with_a_clear_error(tmp_path, content):
    bad = tmp_path / "local" / "t_wrong" / "file.bin"
    bad.parent.mkdir(parents=True)
    if content is None:  # a real tar.gz, but not the IMDB layout
        write_imdb_archive(bad, n_train=0, n_test=0, extra={"aclImdb/README": "x"})
    else:
        bad.write_bytes(content)
    _register("t_wrong", CLOSED_URL, "f" * 64, check=check_archive)
    with pytest.raises(RnnlabError) as err:
        fetch("t_wrong", root=tmp_path / "data", local_dir=tmp_path / "local")
    assert str(bad) in str(err.value) and "aclImdb_v1.tar.gz" in str(err.value)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(RnnlabError, match="known datasets: .*imdb"):
        sources.get_source("imbd")
