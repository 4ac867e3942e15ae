"""The POSIX ACL that lets PostgreSQL's system user cross a private directory, and nobody else."""

from __future__ import annotations

import pytest

from devstack.pgaccess import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER,
    ACL_USER_OBJ,
    AclEntry,
    acl_from_mode,
    decode_acl,
    encode_acl,
    with_user_search,
)

PG = 999


def test_a_private_directory_gains_search_for_that_user_only() -> None:
    got = with_user_search(acl_from_mode(0o700), PG)
    assert got == (
        AclEntry(ACL_USER_OBJ, 0o7),
        AclEntry(ACL_USER, 0o1, PG),
        AclEntry(ACL_GROUP_OBJ, 0o0),
        AclEntry(ACL_MASK, 0o1),
        AclEntry(ACL_OTHER, 0o0),
    )


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # an existing entry for the user keeps its other rights
        (
            (
                AclEntry(ACL_USER_OBJ, 7),
                AclEntry(ACL_USER, 4, PG),
                AclEntry(ACL_GROUP_OBJ, 5),
                AclEntry(ACL_MASK, 4),
                AclEntry(ACL_OTHER, 0),
            ),
            (
                AclEntry(ACL_USER_OBJ, 7),
                AclEntry(ACL_USER, 5, PG),
                AclEntry(ACL_GROUP_OBJ, 5),
                AclEntry(ACL_MASK, 5),
                AclEntry(ACL_OTHER, 0),
            ),
        ),
        # other named entries stay; a restrictive mask only gains search, not the group's read
        (
            (
                AclEntry(ACL_USER_OBJ, 7),
                AclEntry(ACL_USER, 7, 1000),
                AclEntry(ACL_GROUP_OBJ, 7),
                AclEntry(ACL_GROUP, 6, 50),
                AclEntry(ACL_MASK, 0),
                AclEntry(ACL_OTHER, 0),
            ),
            (
                AclEntry(ACL_USER_OBJ, 7),
                AclEntry(ACL_USER, 1, PG),
                AclEntry(ACL_USER, 7, 1000),
                AclEntry(ACL_GROUP_OBJ, 7),
                AclEntry(ACL_GROUP, 6, 50),
                AclEntry(ACL_MASK, 1),
                AclEntry(ACL_OTHER, 0),
            ),
        ),
    ],
)
def test_existing_entries_are_kept(before: tuple[AclEntry, ...], after: tuple[AclEntry, ...]) -> None:
    assert with_user_search(before, PG) == after


def test_nothing_changes_when_the_user_can_already_search() -> None:
    acl = with_user_search(acl_from_mode(0o750), PG)
    assert with_user_search(acl, PG) is acl


def test_xattr_layout_round_trips_in_the_kernels_order() -> None:
    acl = with_user_search(acl_from_mode(0o711), PG)
    raw = encode_acl(reversed(acl))
    assert raw[:4] == b"\x02\x00\x00\x00"  # version 2, little endian
    assert raw[4:12] == b"\x01\x00\x07\x00\xff\xff\xff\xff"  # the owner first, no qualifier
    assert decode_acl(raw) == acl


def test_a_value_that_is_no_acl_is_refused() -> None:
    with pytest.raises(ValueError, match="not a POSIX ACL"):
        decode_acl(b"\x01\x00\x00\x00")
