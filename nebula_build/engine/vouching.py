"""Whether a file the lock records is one nebula-build wrote there: the test a file
passes before the plan removes it or moves it away.

A lock is untrusted (a pull request's): it may record, as an image's, any file whose
digest its author knows (a logo drawn by hand and committed), and a digest that
matches proves only that the file is still what the lock says. So a file is vouched
for by what only nebula-build puts there: the record it writes into every file of an
output (`outputs.metadata.written_for`), which travels with the file into a fresh CI
checkout, or, for a file written without it (`metadata = false`), the marker this
account's cache keeps for each file it writes. Only the few files a plan would remove
or move are read, each once.
"""

from __future__ import annotations

from nebula_build.core.plan import CarriesRecord, Vouched
from nebula_build.errors import UnsafePathError
from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import MAX_BYTES
from nebula_build.outputs.metadata import written_for
from nebula_build.state.cache import Store
from nebula_build.state.guard import Guard
from nebula_build.state.lockfile import LockEntry

__all__ = ["record_carried", "vouching"]


def vouching(guard: Guard, store: Store) -> Vouched:
    """The plan's test of a file a lock entry records (`core.plan.Vouched`)."""
    answers: dict[tuple[str, str, str], bool] = {}

    def vouched(path: str, digest: str, entry: LockEntry) -> bool:
        asked = (path, digest, entry.output_key)
        if asked not in answers:
            answers[asked] = store.wrote_before(path, digest) or _carries_record(
                guard, path, digest, entry.output_key
            )
        return answers[asked]

    return vouched


def record_carried(guard: Guard) -> CarriesRecord:
    """The plan's test of a file that would be a hand edit: whether it carries the
    record of the output key it is to hold (`core.plan.CarriesRecord`)."""
    answers: dict[tuple[str, str, str], bool] = {}

    def carries(path: str, digest: str, output_key: str) -> bool:
        asked = (path, digest, output_key)
        if asked not in answers:
            answers[asked] = _carries_record(guard, path, digest, output_key)
        return answers[asked]

    return carries


def _carries_record(guard: Guard, path: str, digest: str, output_key: str) -> bool:
    try:
        data = guard.read(path, what="output", limit=MAX_BYTES)
    except (OSError, UnsafePathError):  # gone, a link out, or too large, since hashed
        return False
    # the bytes read are those the lock names, not a file put there since
    return sha256_bytes(data) == digest and written_for(data, output_key)
