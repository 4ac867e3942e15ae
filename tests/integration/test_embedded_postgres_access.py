"""The embedded PostgreSQL from a clone inside a private directory (mode 0700: ``mktemp -d``, /root).

As root the server runs as a system user that cannot cross such a directory: its binaries must be
run from a copy it can reach, and its data directory's parents opened to that user alone.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.pgaccess import (
    ACL_GROUP_OBJ,
    ACL_OTHER,
    ACL_USER,
    ACL_XATTR,
    CACHE_ROOT,
    decode_acl,
    server_install,
)
from devstack.ports import free_port
from devstack.postgres import SYSTEM_USER, EmbeddedPostgres, wheel_install_dir

pytestmark = pytest.mark.integration

AS_ROOT = os.geteuid() == 0


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A 0700 directory outside pytest's base temp (whose own parents are private too)."""
    path = Path(tempfile.mkdtemp(prefix="csat-private-"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_postgres_runs_with_install_and_data_behind_a_private_directory(private_dir: Path) -> None:
    (private_dir / "install").symlink_to(wheel_install_dir(), target_is_directory=True)
    pg = EmbeddedPostgres(
        data_dir=private_dir / "clone" / "var" / "pg",
        port=free_port(),
        durable=False,
        install_dir=private_dir / "install",
    )
    try:
        pg.start()  # initdb, the server, and a query through psql
        assert pg.pid is not None
        exe = os.readlink(f"/proc/{pg.pid}/exe")
    finally:
        pg.stop()
    mode = stat.S_IMODE(private_dir.stat().st_mode)
    assert mode & 0o007 == 0, f"opened to everyone: {mode:o}"
    if AS_ROOT:
        assert exe.startswith(f"{CACHE_ROOT}/"), exe
        pg_uid = pwd.getpwnam(SYSTEM_USER).pw_uid
        acl = decode_acl(os.getxattr(private_dir, ACL_XATTR))
        assert [(e.qualifier, e.perm) for e in acl if e.tag == ACL_USER] == [(pg_uid, 0o1)]
        assert {e.tag: e.perm for e in acl}[ACL_GROUP_OBJ] == 0
        assert {e.tag: e.perm for e in acl}[ACL_OTHER] == 0
    else:
        assert exe.startswith(str(private_dir)), exe  # the server runs as this user: nothing to copy
        assert mode == 0o700


@pytest.mark.skipif(not AS_ROOT, reason="the copy exists for a server run as another user (root only)")
def test_the_copy_is_root_owned_readable_by_all_and_made_once(private_dir: Path) -> None:
    cache = Path(tempfile.mkdtemp(prefix="csat-pgcache-"))
    try:
        os.umask(old := os.umask(0o077))  # a private umask must not leak into the copy
        try:
            installed = server_install(wheel_install_dir(), cache_root=cache)
        finally:
            os.umask(old)
        assert server_install(wheel_install_dir(), cache_root=cache) == installed
        assert [p.name for p in cache.iterdir()] == [installed.parents[1].name]  # one copy, no scratch left
        for path in [cache, *installed.parents[1].rglob("*")]:
            st = path.lstat()
            if not stat.S_ISLNK(st.st_mode):
                assert st.st_uid == 0 and st.st_mode & 0o004 and not st.st_mode & 0o022, path
        user = pwd.getpwnam(SYSTEM_USER)
        version = subprocess.run(
            [str(installed / "bin" / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
        )
        assert "PostgreSQL" in version.stdout
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.mark.skipif(not AS_ROOT, reason="only root can make another user's files")
def test_a_cache_writable_by_others_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chown(cache, pwd.getpwnam(SYSTEM_USER).pw_uid, -1)
    with pytest.raises(RuntimeError, match="refusing to run PostgreSQL's binaries"):
        server_install(wheel_install_dir(), cache_root=cache)
