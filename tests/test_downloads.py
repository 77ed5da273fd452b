"""Every registered dataset downloads from its URL (a loopback server holding official-format fixtures): pinned
files are verified against their sha256; files upstream publishes no checksum for are checked for structure and
their sha256 recorded at the first download, and a later change is a clear error naming both hashes. With the
network blocked, every experiment fails with the same "could not download <URL>" error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import DECOY_POEM, DOWNLOAD_FIXTURES, registered_sources
from rnnlab.cli import main
from rnnlab.data import sources
from rnnlab.data.sources import fetch, record_path, sha256sum
from rnnlab.errors import RnnlabError

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_dataset_has_a_download_fixture():
    assert set(registered_sources()) == set(DOWNLOAD_FIXTURES)


@pytest.mark.parametrize("name", sorted(DOWNLOAD_FIXTURES))
def test_every_dataset_downloads_is_checked_and_unpinned_files_are_recorded(mirror, tmp_path, name, monkeypatch):
    paths = fetch(name, root=tmp_path / "data", local_dir=tmp_path / "no-local-copies")
    source = sources.get_source(name)
    assert set(paths) == {r.name for r in source.files}
    for remote in source.files:
        path = paths[remote.name]
        assert path == tmp_path / "data" / source.dir / remote.name and path.is_file()
        if remote.sha256 is None:
            assert record_path(path).read_text().split() == [sha256sum(path), path.name]
        else:
            assert sha256sum(path) == remote.sha256 and not record_path(path).exists()
    # the second read is from the cache, checked against the pin or the record: no download
    monkeypatch.setattr("pooch.retrieve", lambda *a, **k: pytest.fail("downloaded twice"))
    assert fetch(name, root=tmp_path / "data", local_dir=tmp_path / "no-local-copies") == paths


def test_a_file_that_changed_after_its_first_download_is_a_clear_error_naming_both_hashes(mirror, tmp_path):
    path = fetch("eng_fra", root=tmp_path / "data")["data.zip"]
    first = sha256sum(path)
    with open(path, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(RnnlabError) as err:
        fetch("eng_fra", root=tmp_path / "data")
    msg = str(err.value)
    assert "changed since it was downloaded" in msg and first in msg and sha256sum(path) in msg
    assert "Delete both files" in msg


def test_a_download_that_fails_its_structural_check_is_not_kept(mirror, tmp_path, monkeypatch):
    (mirror / "junk.txt").write_text("not a zip\n")
    source = sources.get_source("icwb2")
    url = source.files[0].url.rsplit("/", 2)[0] + "/junk.txt"
    monkeypatch.setitem(
        sources._REGISTRY, "icwb2", dataclasses.replace(source, files=(dataclasses.replace(source.files[0], url=url),))
    )
    with pytest.raises(RnnlabError, match="is not usable") as err:
        fetch("icwb2", root=tmp_path / "data")
    assert url in str(err.value)
    assert not (tmp_path / "data" / "icwb2" / "icwb2-data.zip").exists()
    assert not record_path(tmp_path / "data" / "icwb2" / "icwb2-data.zip").exists()


def test_the_tang_poems_come_from_a_pinned_commit():
    from rnnlab.data.poetry import COMMIT

    url = registered_sources()["chinese_poetry"].files[0].url
    assert url == f"https://github.com/chinese-poetry/chinese-poetry/archive/{COMMIT}.tar.gz" and len(COMMIT) == 40


def test_the_tang_poems_are_read_from_their_folder_of_the_repository_archive_only(mirror, tmp_path):
    from rnnlab.data.poetry import read_tang

    poems = read_tang(fetch("chinese_poetry", root=tmp_path / "data")["chinese-poetry-tang.tar.gz"])
    assert poems and all(p["paragraphs"] != DECOY_POEM for p in poems), "全唐诗/error/ or strains/ was read"


def test_the_tatoeba_zip_is_downloaded_and_its_member_kept(mirror, tmp_path):
    path = fetch("cmn_eng", root=tmp_path / "data")["cmn.txt"]
    assert path.read_text(encoding="utf-8").count("\t") > 100
    assert not (tmp_path / "data" / "cmn_eng" / "cmn-eng.zip").exists(), "the archive is removed after extraction"


def test_pinned_only_refuses_unpinned_files_and_still_downloads_pinned_ones(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLAB_PINNED_ONLY", "1")
    with pytest.raises(RnnlabError, match="RNNLAB_PINNED_ONLY is set"):
        fetch("eng_fra", root=tmp_path / "data")
    assert fetch("tinyshakespeare", root=tmp_path / "data")["input.txt"].is_file()


EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
NO_DOWNLOAD = {  # statsmodels ships macrodata, scikit-learn the digit scans
    "rnnlab.data.timeseries.TimeSeriesDataModule",
    "rnnlab.data.captions.DigitScenesDataModule",
}


def test_with_the_network_blocked_every_experiment_fails_naming_the_url(tmp_path, monkeypatch, capsys):
    """No local copies, no cache, and every connection refused (a proxy nobody listens on): each experiment that
    needs a download stops with exit code 2 and ``could not download <official URL>``, as IMDB does."""
    import yaml

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "empty"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    official = {r.url for s in registered_sources().values() for r in s.files}
    checked = 0
    for name in EXPERIMENTS:
        if yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["data"]["class_path"] in NO_DOWNLOAD:
            continue
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["fit", "--config", str(ROOT / "configs" / f"{name}.yaml"), "--trainer.fast_dev_run=true"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2, (name, err[-500:])
        line = next((l for l in err.splitlines() if l.startswith("error: could not download ")), None)
        assert line is not None, (name, err[-500:])
        assert line.split()[4] in official and "RNNLAB_LOCAL_DATA" in line, line
        checked += 1
    assert checked >= 30
