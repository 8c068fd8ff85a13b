"""A full disk under `state_dir` during a checkout: a clear reason, nothing half-written, and the mirror
intact, so the same release checks out once there is room (a real, small tmpfs and real git)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hooksvc.config import AppConfig, Secret
from hooksvc.errors import GitError
from tests.helpers.git import GitOrigin, git
from workers.git import GitMirror

#: Room for the mirror (a few MiB of objects) but not for a second copy of the big file.
TMPFS_SIZE = "12m"
BIG_FILE_BYTES = 4 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `TMPFS_SIZE` (needs root, as the test command runs)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_checkout_on_a_full_disk_fails_cleanly_and_the_mirror_survives(
    small_disk: Path, make_git_origin: object,
) -> None:
    """The checkout of a release that does not fit fails saying the disk is out of space, leaves no partial
    release, and the mirror passes `git fsck`; with room again the same sha checks out."""
    origin: GitOrigin = make_git_origin("big")  # type: ignore[operator]
    origin.commit("small", {"README": "hello\n"})
    sha = origin.commit("big", {"blob.bin": os.urandom(BIG_FILE_BYTES)})
    lines: list[str] = []
    app = AppConfig(name="shop", host="github", host_kind="github", repo="acme/shop", clone_url=origin.url,
                    secret=Secret("s"))
    state_dir = small_disk / "state"
    mirror = GitMirror(app, state_dir, lines.append)
    mirror.fetch()

    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * max(0, free - BIG_FILE_BYTES // 2))  # leave less than the big file needs
    with pytest.raises(GitError) as failed:
        mirror.checkout_release(sha)
    assert "disk" in str(failed.value).lower() and "space" in str(failed.value).lower(), failed.value
    assert not mirror.release_dir(sha).exists()
    assert not list(state_dir.rglob("release-*"))
    git("fsck", "--no-progress", cwd=mirror.mirror_dir)

    filler.unlink()
    release = mirror.checkout_release(sha)
    assert (release / "blob.bin").stat().st_size == BIG_FILE_BYTES
