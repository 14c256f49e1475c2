"""The account's seal key: one key, whoever asks for it first and however many at once."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

from nebula_build.state import seal

_TAG_WHEN_TOLD = """
import os, sys, time
from nebula_build.state import seal
while not os.path.exists(sys.argv[1]):
    time.sleep(0.001)
print(seal.tag(b"x"))
"""


def _ask(path: Path, start: threading.Barrier, keys: list[bytes | None]) -> None:
    start.wait()
    keys.append(seal._key.__wrapped__(path))


def test_threads_asking_first_at_once_all_get_the_one_key(tmp_path: Path):
    """A first apply stores its candidates from several threads: each entry must be
    sealed with the same key, or the ones sealed with a key nobody keeps (or with none)
    are not this account's, and `pick` says they were made in another checkout."""
    for attempt in range(20):
        path = tmp_path / str(attempt) / "nebula-build" / "state.key"
        start = threading.Barrier(8)
        keys: list[bytes | None] = []

        threads = [threading.Thread(target=_ask, args=(path, start, keys)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert None not in keys and len(set(keys)) == 1, attempt
        assert keys[0] == path.read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert os.listdir(path.parent) == ["state.key"]  # nothing staged is left


def test_processes_asking_first_at_once_all_get_the_one_key(tmp_path: Path):
    env = os.environ | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    go = tmp_path / "go"
    command = [sys.executable, "-c", _TAG_WHEN_TOLD, str(go)]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE) for _ in range(8)]
    time.sleep(1.0)  # all of them imported and waiting
    go.touch()
    tags = {run.communicate()[0] for run in runs}
    assert len(tags) == 1 and b"None" not in next(iter(tags))


def test_a_key_another_process_links_in_after_our_read_is_the_one_we_use(tmp_path: Path):
    """The window the processes' race falls into: nothing was there when this process
    read, and another process's key is there by the time it would make one."""
    path = tmp_path / "nebula-build" / "state.key"
    path.parent.mkdir()
    theirs = os.urandom(32)
    path.write_bytes(theirs)
    path.chmod(0o600)
    assert seal._made(path) == theirs
    assert path.read_bytes() == theirs


def test_without_links_a_key_another_process_claimed_first_is_the_one_we_use(
    tmp_path: Path, monkeypatch
):
    """A file system without hard links: keys are claimed by the name, and the process
    that finds the name taken uses the key there."""
    path = tmp_path / "nebula-build" / "state.key"
    theirs = os.urandom(32)

    def claimed_meanwhile(source: object, target: Path) -> None:
        target.write_bytes(theirs)
        target.chmod(0o600)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(seal.os, "link", claimed_meanwhile)
    assert seal._made(path) == theirs
    assert os.listdir(path.parent) == ["state.key"]


def test_a_key_file_that_came_with_a_checkout_is_never_used(tmp_path: Path):
    path = tmp_path / "nebula-build" / "state.key"
    path.parent.mkdir()
    path.write_bytes(b"k" * 32)
    path.chmod(0o644)
    assert seal._key.__wrapped__(path) is None
    assert path.read_bytes() == b"k" * 32
