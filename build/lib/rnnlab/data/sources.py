"""Registry of public datasets: official URLs, checksums, expected files; checksummed download or a local copy.

``fetch(name)`` returns the paths of a dataset's files. Resolution order, per file:

1. a local copy under ``local_dir`` or ``$RNNLAB_LOCAL_DATA`` laid out as ``<dataset>/<file name>`` (or, for an
   archive, its ``extracted`` folder) -- used in place, no network access. If its sha256 is not the official one (many mirrors re-pack archives) the dataset's structural
   check runs instead (expected members and counts) and a one-line warning is printed;
2. a previous download in ``<root>/<dataset>/`` whose checksum matches;
3. a download from the official URL with ``pooch`` (progress bar): verified against the sha256 this project pins;
   where upstream publishes none, the dataset's structural check runs on the download and its sha256 is recorded
   beside it (``<file>.sha256``), so every later read detects a changed file. ``RNNLAB_PINNED_ONLY=1`` downloads
   pinned files only.

Every failure raises :class:`~rnnlab.errors.RnnlabError` naming the URL, the expected path and the fix.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from filelock import FileLock

from rnnlab.errors import RnnlabError

log = logging.getLogger(__name__)

LOCAL_DATA_ENV = "RNNLAB_LOCAL_DATA"


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name (kept locally and in mirrors), URL and sha256 (None when upstream publishes none)."""

    name: str
    url: str
    sha256: str | None = None
    extracted: str | None = None  # a folder inside the archive that a local copy may hold already extracted
    member: str | None = None  # the URL is a zip of which only this member (by file name) is kept, as ``name``


@dataclass(frozen=True)
class Source:
    """A dataset: its files and an optional structural check for copies whose checksum is not the official one.

    ``check(path)`` must raise :class:`RnnlabError` if the file is not a usable copy, and may return a short summary
    of what it found (e.g. member counts) for the warning line.
    """

    name: str
    files: tuple[RemoteFile, ...]
    homepage: str = ""
    check: Callable[[Path], str | None] | None = None
    license: str = ""
    folder: str = ""  # the folder under the cache / local copies (default: ``name``), shared by editions of one dataset

    @property
    def dir(self) -> str:
        return self.folder or self.name


_REGISTRY: dict[str, Source] = {}


def register(source: Source) -> Source:
    _REGISTRY[source.name] = source
    return source


def get_source(name: str) -> Source:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RnnlabError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_REGISTRY))}") from None


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def local_data_dir(local_dir: str | os.PathLike | None = None) -> Path | None:
    """The local-copy folder: the explicit argument, else ``$RNNLAB_LOCAL_DATA``, else None."""
    value = local_dir if local_dir is not None else os.environ.get(LOCAL_DATA_ENV)
    return Path(value).expanduser() if value else None


def _verify_local(source: Source, remote: RemoteFile, path: Path) -> None:
    if path.is_dir() or remote.sha256 is None:  # nothing to compare with: the structure must be right
        if source.check is not None:
            source.check(path)
        return
    digest = sha256sum(path)
    if digest == remote.sha256:
        return
    if source.check is None:
        raise RnnlabError(
            f"{path}: sha256 {digest[:12]}... differs from the official {remote.sha256[:12]}... of {remote.url}, and "
            f"{source.name!r} has no structural check to accept it. Replace it with the official file."
        )
    summary = source.check(path)  # raises RnnlabError with the reason if the copy is unusable
    log.warning(
        "%s: local copy %s has sha256 %s..., not the official %s...; structure checked%s, using it.",
        source.name,
        path,
        digest[:12],
        remote.sha256[:12],
        f" ({summary})" if summary else "",
    )


def _unsafe_reason(name: str, link: bool) -> str | None:
    if link:
        return "a link"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        return "a path outside the archive's folder"
    return None


def _refuse(path: Path, name: str, reason: str) -> None:
    raise RnnlabError(
        f"{path}: refusing archive member {name!r} ({reason}): official archives hold neither; the file "
        f"is damaged or not the official one -- replace it with the official download"
    )


def tar_files(tar: tarfile.TarFile, path: Path) -> Iterator[tarfile.TarInfo]:
    """The regular-file members of an open tar archive; any link, device or member whose path escapes the archive's
    folder (absolute, ``..``) is refused with an error -- the project reads members in memory and never extracts,
    but a crafted archive is refused all the same."""
    for member in tar:
        reason = _unsafe_reason(member.name, member.issym() or member.islnk())
        if reason is None and not (member.isfile() or member.isdir()):
            reason = "a device or special file"
        if reason:
            _refuse(path, member.name, reason)
        if member.isfile():
            yield member


def zip_names(z: zipfile.ZipFile, path: Path) -> list[str]:
    """The member names of an open zip archive, refusing links and paths that escape it (as :func:`tar_files`)."""
    names = []
    for info in z.infolist():
        link = stat.S_ISLNK(info.external_attr >> 16)
        if reason := _unsafe_reason(info.filename, link):
            _refuse(path, info.filename, reason)
        names.append(info.filename)
    return names


PINNED_ONLY_ENV = "RNNLAB_PINNED_ONLY"  # "1": download only files whose sha256 this project pins (no first-use record)
USER_AGENT = "Mozilla/5.0 (compatible; rnnlab; +https://github.com/rnnlab/rnnlab)"  # some hosts refuse none


def record_path(path: Path) -> Path:
    """Where the sha256 of a download without a published checksum is recorded (``sha256sum -c`` format)."""
    return path.with_name(path.name + ".sha256")


def _recorded(path: Path) -> str | None:
    record = record_path(path)
    return record.read_text().split()[0] if record.is_file() else None


def _record(path: Path) -> str:
    digest = sha256sum(path)
    record_path(path).write_text(f"{digest}  {path.name}\n")
    return digest


def _verify_recorded(source: Source, remote: RemoteFile, path: Path) -> None:
    """A cached download that upstream publishes no checksum for: its sha256 must be the one recorded when it was
    first downloaded (and checked). A copy placed in the cache by hand is checked and recorded now."""
    recorded, digest = _recorded(path), sha256sum(path)
    if recorded is None:
        if source.check is not None:
            source.check(path)
        _record(path)
        return
    if digest != recorded:
        raise RnnlabError(
            f"{path} changed since it was downloaded: sha256 {digest} now, {recorded} recorded in "
            f"{record_path(path)} at the first download of {remote.url}. Delete both files to download it again, or "
            f"restore the file."
        )


def _download(source: Source, remote: RemoteFile, target_dir: Path) -> Path:
    """Download ``remote`` into ``target_dir``: verified against its pinned sha256, or -- where upstream publishes
    none -- checked for structure and its sha256 recorded beside it, so later reads detect a changed file."""
    import pooch  # imported lazily: only needed when nothing local exists

    if remote.sha256 is None and os.environ.get(PINNED_ONLY_ENV, "") not in ("", "0"):
        raise RnnlabError(
            f"{remote.url} has no published checksum that this project can pin, and {PINNED_ONLY_ENV} is set, so it "
            f"is not downloaded. Download it yourself, check it, and place it at $RNNLAB_LOCAL_DATA/{source.dir}/"
            f"{remote.name} (or {target_dir / remote.name}); its structure is checked before use. Unset "
            f"{PINNED_ONLY_ENV} to download it and record its sha256 at the first download."
        )
    target = target_dir / remote.name
    target.parent.mkdir(parents=True, exist_ok=True)  # names may hold folders
    # a zip to take one member from is saved beside its member under its own name (names may hold folders)
    fname = str(PurePosixPath(remote.name).with_name(PurePosixPath(remote.url).name)) if remote.member else remote.name
    try:
        path = Path(
            pooch.retrieve(
                remote.url,
                known_hash=f"sha256:{remote.sha256}" if remote.sha256 and not remote.member else None,
                fname=fname,
                path=target_dir,
                downloader=pooch.HTTPDownloader(
                    progressbar=_progressbar(), headers={"User-Agent": USER_AGENT}, timeout=60
                ),
            )
        )
    except ValueError as err:  # pooch's checksum mismatch
        raise RnnlabError(
            f"download of {remote.url} is corrupt or changed upstream ({err}). Delete {target} and "
            f"retry, or place a good copy at $RNNLAB_LOCAL_DATA/{source.dir}/{remote.name}."
        ) from None
    except Exception as err:  # network errors come in many types (requests, socket, HTTP status)
        raise RnnlabError(
            f"could not download {remote.url} ({type(err).__name__}: {err}). Without network access, place the file "
            f"at {target} or at $RNNLAB_LOCAL_DATA/{source.dir}/{remote.name} "
            f"(set {LOCAL_DATA_ENV} to the folder that holds '{source.dir}/')."
        ) from None
    if remote.member:  # the file is one member of the downloaded zip
        path = _extract_member(path, remote, target)
    if remote.sha256 is None or remote.member:
        try:
            summary = source.check(path) if source.check is not None else None
        except RnnlabError as err:
            path.unlink(missing_ok=True)  # never keep a download that failed its check
            raise RnnlabError(f"the download of {remote.url} is not usable: {err}") from None
        if remote.sha256 is not None and sha256sum(path) != remote.sha256:
            path.unlink(missing_ok=True)
            raise RnnlabError(
                f"download of {remote.url} is corrupt or changed upstream: {remote.member} does not "
                f"have the pinned sha256 {remote.sha256}"
            )
        digest = _record(path) if remote.sha256 is None else remote.sha256
        log.warning(
            "%s: downloaded %s (%s); upstream publishes no checksum, so its sha256 %s is recorded in %s and "
            "checked on every later read.",
            source.name,
            remote.url,
            summary or "structure checked",
            digest,
            record_path(path),
        )
    return path


def _extract_member(archive: Path, remote: RemoteFile, target: Path) -> Path:
    try:
        with zipfile.ZipFile(archive) as z:
            names = zip_names(z, archive)
            found = [n for n in names if PurePosixPath(n).name == remote.member]
            if not found:
                raise RnnlabError(f"{archive} ({remote.url}) holds no {remote.member} (it has {names[:5]})")
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(z.read(found[0]))
            os.replace(tmp, target)
    except zipfile.BadZipFile as err:
        raise RnnlabError(f"{remote.url} is not a zip archive ({err}); download it again") from None
    finally:
        archive.unlink(missing_ok=True)
    return target


def _progressbar() -> bool:
    try:
        import tqdm  # noqa: F401

        return True
    except ImportError:  # pragma: no cover
        return False


def fetch(name: str, root: str | os.PathLike = "data", local_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Make every file of dataset ``name`` available and return ``{file name: path}``.

    Safe to call from several processes at once (a file lock in ``<root>/<name>/`` serialises downloads).
    """
    source = get_source(name)
    target_dir = Path(root) / source.dir
    target_dir.mkdir(parents=True, exist_ok=True)
    local = local_data_dir(local_dir)
    paths: dict[str, Path] = {}
    with FileLock(str(target_dir / ".fetch.lock")):
        for remote in source.files:
            if local is not None and (candidate := local / source.dir / remote.name).is_file():
                _verify_local(source, remote, candidate)
                paths[remote.name] = candidate
                continue
            if local is not None and remote.extracted and (folder := local / source.dir / remote.extracted).is_dir():
                _verify_local(source, remote, folder)
                paths[remote.name] = folder
                continue
            cached = target_dir / remote.name
            if cached.is_file() and remote.sha256 is None:
                _verify_recorded(source, remote, cached)
                paths[remote.name] = cached
                continue
            if cached.is_file() and sha256sum(cached) == remote.sha256:
                paths[remote.name] = cached
                continue
            if local is not None:
                log.warning("%s: %s not found under %s/%s/, downloading it.", name, remote.name, local, source.dir)
            paths[remote.name] = _download(source, remote, target_dir)
    return paths
