"""How PostgreSQL's system user reaches its binaries and its data when the launcher runs as root.

PostgreSQL refuses to run as root, so as root the server runs as a system user (devstack.postgres),
and that user must cross every directory on the way to the binaries and to the data. A clone inside
a private directory (``mktemp -d``, a root home: mode 0700) stops it. Rather than opening the user's
directories to everyone:

- the binaries are copied once per build into a root-owned 0755 cache outside any private tree
  (``/var/cache/csat-devstack``) and run from there;
- each directory on the way to the data that the server's user cannot cross gets an ACL entry giving
  that one user search permission (x, not read); only a file system without ACLs gets ``o+x`` instead.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

CACHE_ROOT = Path("/var/cache/csat-devstack")
_INSTALL_PARTS = ("bin", "lib", "share")  # include/ (headers) is not needed to run a server
_COMPLETE = ".complete"

ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
_SEARCH = 0o1
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")


class AclEntry(NamedTuple):
    tag: int
    perm: int
    qualifier: int = ACL_UNDEFINED_ID


def decode_acl(raw: bytes) -> tuple[AclEntry, ...]:
    """Entries of a ``system.posix_acl_access`` value (the kernel's little-endian xattr layout)."""
    (version,) = _HEADER.unpack_from(raw)
    if version != _ACL_VERSION or (len(raw) - _HEADER.size) % _ENTRY.size:
        raise ValueError(f"not a POSIX ACL (version {version}, {len(raw)} bytes)")
    return tuple(AclEntry(*_ENTRY.unpack_from(raw, at)) for at in range(_HEADER.size, len(raw), _ENTRY.size))


def encode_acl(entries: Iterable[AclEntry]) -> bytes:
    """The xattr value; the kernel wants the entries sorted by tag, then by user or group id."""
    ordered = sorted(entries, key=lambda e: (e.tag, e.qualifier))
    return _HEADER.pack(_ACL_VERSION) + b"".join(_ENTRY.pack(*e) for e in ordered)


def acl_from_mode(mode: int) -> tuple[AclEntry, ...]:
    """The ACL a directory without one behaves as: its owner, group and other permission bits."""
    return (
        AclEntry(ACL_USER_OBJ, (mode >> 6) & 7),
        AclEntry(ACL_GROUP_OBJ, (mode >> 3) & 7),
        AclEntry(ACL_OTHER, mode & 7),
    )


def with_user_search(entries: tuple[AclEntry, ...], uid: int) -> tuple[AclEntry, ...]:
    """``entries`` plus search permission for ``uid``: nobody else gains anything but search."""
    # The mask (the cap on every named entry and on the owning group) only gains x: an existing mask
    # keeps its other bits, a new one copies the owning group's permission, so the group's effective
    # rights stay what they were.
    named = {e.qualifier: e.perm for e in entries if e.tag == ACL_USER}
    masks = [e.perm for e in entries if e.tag == ACL_MASK]
    if named.get(uid, 0) & _SEARCH and masks and masks[0] & _SEARCH:
        return entries
    named[uid] = named.get(uid, 0) | _SEARCH
    group = next(e.perm for e in entries if e.tag == ACL_GROUP_OBJ)
    mask = (masks[0] if masks else group) | _SEARCH
    kept = [e for e in entries if e.tag not in (ACL_USER, ACL_MASK)]
    users = [AclEntry(ACL_USER, perm, qualifier) for qualifier, perm in named.items()]
    return tuple(sorted([*kept, *users, AclEntry(ACL_MASK, mask)], key=lambda e: (e.tag, e.qualifier)))


def _grant_search(directory: Path, uid: int, mode: int) -> None:
    try:
        raw = os.getxattr(directory, ACL_XATTR)
    except OSError as exc:
        if exc.errno == errno.ENOTSUP:
            directory.chmod(mode | stat.S_IXOTH)
            return
        if exc.errno != errno.ENODATA:
            raise
        raw = b""
    entries = decode_acl(raw) if raw else acl_from_mode(mode)
    updated = with_user_search(entries, uid)
    if updated == entries:
        return
    try:
        os.setxattr(directory, ACL_XATTR, encode_acl(updated))
    except OSError as exc:
        if exc.errno != errno.ENOTSUP:
            raise
        directory.chmod(mode | stat.S_IXOTH)


def let_user_cross(path: Path, uid: int) -> None:
    """Let ``uid`` reach what is inside ``path``: search permission on it and its parents, for that user."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == uid or st.st_mode & stat.S_IXOTH:
            continue
        _grant_search(directory, uid, stat.S_IMODE(st.st_mode))


def _check_trusted(directory: Path) -> None:
    """Refuse a cache another user could write to: its binaries run with the server's rights."""
    me = os.geteuid()
    for d in [directory, *directory.parents]:
        st = d.stat()
        shared_sticky = d != directory and st.st_mode & stat.S_ISVTX
        if st.st_uid not in (0, me) or (st.st_mode & 0o022 and not shared_sticky):
            raise RuntimeError(
                f"{d} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}: refusing to "
                f"run PostgreSQL's binaries from {directory}"
            )


def _build_key(source: Path) -> str:
    digest = hashlib.sha256()
    with (source / "bin" / "postgres").open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _open_to_all(tree: Path) -> None:
    """Directories 0755, files 0644 or 0755: the copy does not inherit a private umask of the source."""
    tree.chmod(0o755)
    for parent, dirs, files in os.walk(tree):
        for name in dirs:
            Path(parent, name).chmod(0o755)
        for name in files:
            f = Path(parent, name)
            st = f.lstat()
            if not stat.S_ISLNK(st.st_mode):
                f.chmod(0o755 if st.st_mode & 0o111 else 0o644)


def server_install(source: Path, *, cache_root: Path = CACHE_ROOT) -> Path:
    """A copy of the PostgreSQL install ``source`` that any user can run, made once per build."""
    # The wheel's binaries find their shared libraries through $ORIGIN/../../../<package>.libs
    # (auditwheel): the copy keeps that layout, <copy>/<package>/pginstall beside <copy>/<package>.libs.
    source = source.resolve()
    package = source.parent.name
    cache_root.mkdir(mode=0o755, parents=True, exist_ok=True)
    if cache_root.stat().st_uid == os.geteuid():
        cache_root.chmod(0o755)  # whatever the umask: the server's user must enter it
    _check_trusted(cache_root)
    target = cache_root / f"pginstall-{_build_key(source)}"
    installed = target / package / source.name
    if (target / _COMPLETE).exists():
        return installed
    scratch = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=cache_root))
    try:
        for part in _INSTALL_PARTS:
            shutil.copytree(source / part, scratch / package / source.name / part, symlinks=True)
        libs = source.parent.parent / f"{package}.libs"
        if libs.is_dir():
            shutil.copytree(libs, scratch / libs.name, symlinks=True)
        _open_to_all(scratch)
        (scratch / _COMPLETE).touch()
        try:
            scratch.rename(target)  # atomic: a reader sees no copy or a whole one
        except OSError:
            if not (target / _COMPLETE).exists():  # not a concurrent launcher that finished first
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return installed
