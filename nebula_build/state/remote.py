"""The remote cache: paid generations shared through object storage (S3, GCS, Azure, a
shared folder), so a teammate or a clean CI runner restores instead of paying again.

Layout under the remote's prefix, Bazel's split of an action cache and a CAS:

- `v1/cas/<sha[:2]>/<sha256>`: an original's bytes, named by their SHA-256;
- `v1/ac/<key[:2]>/<key>.json`: the record of a generation key (`RemoteRecord`).

Both are written once, with put-if-absent: concurrent jobs never overwrite each
other, and the first record of a key wins. Nothing read back is trusted: a record
must name the key it is stored under and stay within its size, and the bytes must
hash to its digest (`RemoteMismatchError` otherwise); the engine then verifies them
as an image like any other original.

Credentials and endpoints come only from each store's standard environment
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `GOOGLE_APPLICATION_CREDENTIALS`, …), which
obstore reads; never from the manifest.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import MAX_BYTES
from nebula_build.text import made_with_problem, printable, redact, shown_url, url_secrets

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig

#: the remotes a manifest may name; a shared folder (file://) only from the environment
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "az", "azure", "abfs", "abfss"})
SCHEMES = OBJECT_STORE_SCHEMES | {"file"}
#: requests in flight at once for lookups and transfers
CONCURRENCY = 32
#: up to this many keys are looked up one HEAD each; more, by listing the records
_HEAD_LIMIT = 64
#: a remote estimated to hold up to this many records is listed in one go (4 pages)
_ONE_LISTING = 4000
#: a listing that goes on longer than this is a remote gone wrong (100 M images would
#: be needed for it): stop and say so
_LIST_LIMIT = 2_000_000
_LIST_SECONDS = 120.0
#: after this many failed requests the remote is given up on for the rest of the run,
#: so a hanging store costs one timeout, not one per image
_FAILURES_BEFORE_GIVING_UP = 3
#: room for the largest `made_with` record (`MADE_WITH_BYTES`)
_RECORD_LIMIT = 16 * 1024
_KEY_LENGTH = 64
_HEX = frozenset("0123456789abcdef")
_CLIENT: ClientConfig = {"connect_timeout": "3s", "timeout": "30s"}

Pushed = Literal["uploaded", "present", "other", "repaired"]


class RemoteError(Exception):
    """The remote could not be reached or refused a request (one line)."""


class RemoteMismatchError(Exception):
    """What the remote holds for a key is not what its record says (one line)."""


@dataclass(frozen=True, slots=True)
class RemoteRecord:
    """What a remote knows of one generation key."""

    key: str
    sha256: str
    size: int
    model: str
    backend: str
    seed: int | None
    #: when it was uploaded, ISO 8601 in UTC
    created: str
    #: the backend's provenance record (`GenerationResult.made_with`)
    made_with: Mapping[str, str] = field(default_factory=dict)


def url_problem(url: str, *, from_manifest: bool) -> str | None:
    """Why `url` cannot name a remote cache, or None."""
    if printable(url) != url or any(c.isspace() for c in url):
        return "must be one line without spaces"
    scheme = urlsplit(url).scheme.lower()
    if not scheme or scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(OBJECT_STORE_SCHEMES))
        return f"must start with one of {known} (or file:// from the environment)"
    if from_manifest and scheme == "file":
        return (
            "a shared folder (file://) can only be named by NEBULA_BUILD_CACHE_REMOTE: a "
            "manifest from a pull request must not make the tool write outside the project"
        )
    if urlsplit(url).username or urlsplit(url).password:
        return "must not carry credentials: they come from the store's own environment"
    if scheme == "file" and urlsplit(url).netloc not in ("", "localhost"):
        host = urlsplit(url).netloc  # file://shared/cache: a host named "shared"
        return (
            f"takes a folder's absolute path after three slashes (file:///srv/cache): "
            f"file://{host}/… names a host {host!r}"
        )
    return None


def _allows_http() -> bool:
    """Plain HTTP only where the store's own environment allows it (a local emulator):
    passing client options would otherwise override that setting."""
    names = ("AWS_ALLOW_HTTP", "GOOGLE_ALLOW_HTTP", "AZURE_ALLOW_HTTP")
    return any(os.environ.get(name, "").strip().lower() == "true" for name in names)


def is_key(text: str) -> bool:
    return len(text) == _KEY_LENGTH and set(text) <= _HEX


#: the stores' secrets, redacted from every message (with any user:password in a URL)
_SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
)
_USERINFO = re.compile(r"://[^/\s@]+@")


def _hint(exc: BaseException) -> str:
    """What to do about the store errors people meet first, where one applies."""
    text = str(exc)
    if "169.254.169.254" in text:  # no credentials in the environment: the SDK asked EC2's
        return (
            " (no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or configure OIDC in CI)"
        )
    if "builder error" in text and "http://" in text:
        return " (a plain http:// endpoint needs AWS_ALLOW_HTTP=true)"
    return ""


def _one_line(exc: BaseException, url: str) -> str:
    """The store's error, short, without the stores' secrets nor the parts of the
    remote's `url` that its name leaves out (a token in its path, as the store quotes
    the object's address)."""
    lines = str(exc).strip().splitlines()
    text = _USERINFO.sub("://[redacted]@", lines[0] if lines else type(exc).__name__)
    secrets = [os.environ.get(name, "") for name in _SECRET_VARIABLES] + url_secrets(url)
    return printable(redact(text, secrets), limit=300)


class Remote:
    """One remote cache, opened on first use."""

    def __init__(
        self,
        url: str,
        *,
        writable: bool,
        why_read_only: str = "",
    ) -> None:
        self.url = url
        #: the URL as every message names it (`shown_url`): never a token it may carry
        self.shown = shown_url(url)
        self.writable = writable
        #: what to tell someone who tries to write to a read-only remote
        self.why_read_only = why_read_only or "it was opened read-only"
        self._store: ObjectStore | None = None
        self._failures = 0
        self._failures_lock = threading.Lock()

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            try:
                from datetime import timedelta

                from obstore.store import from_url

                retry: RetryConfig = {"max_retries": 2, "retry_timeout": timedelta(seconds=10)}

                if urlsplit(self.url).scheme == "file":
                    self._store = from_url(self.url, mkdir=True)
                else:
                    client = _CLIENT | {"allow_http": _allows_http()}
                    self._store = from_url(self.url, client_options=client, retry_config=retry)
            except Exception as exc:
                raise RemoteError(
                    f"cannot open the remote cache {self.shown}: {_one_line(exc, self.url)}"
                ) from None
        return self._store

    @staticmethod
    def _record_path(key: str) -> str:
        return f"v1/ac/{key[:2]}/{key}.json"

    @staticmethod
    def _bytes_path(digest: str) -> str:
        return f"v1/cas/{digest[:2]}/{digest}"

    def _call(
        self,
        what: str,
        action: Any,
        *args: Any,
        answers: tuple[type[Exception], ...] = (FileNotFoundError,),
        **kwargs: Any,
    ) -> Any:
        """One request. The exceptions in `answers` are answers (not found, already
        there) and pass through; any other failure is a RemoteError naming `what`."""
        if not self.usable:
            raise RemoteError(f"remote cache {self.shown}: gave up after repeated failures")
        try:
            return action(self.store, *args, **kwargs)
        except answers:
            raise
        except Exception as exc:
            raise self._failure(what, exc) from None

    def _failure(self, what: str, exc: Exception) -> RemoteError:
        """A failed request, counted, as one line that says what to do where it can."""
        with self._failures_lock:
            self._failures += 1
        if isinstance(exc, RemoteError):
            return exc
        return RemoteError(
            f"remote cache {self.shown}: {what}: {_one_line(exc, self.url)}{_hint(exc)}"
        )

    def give_up(self) -> None:
        """Ask nothing more of this remote for the rest of the run."""
        with self._failures_lock:
            self._failures = max(self._failures, _FAILURES_BEFORE_GIVING_UP)

    @property
    def usable(self) -> bool:
        """False once the remote failed repeatedly (or was given up on)."""
        return self._failures < _FAILURES_BEFORE_GIVING_UP

    # --- lookups ------------------------------------------------------------

    def lookup(self, keys: Collection[str]) -> set[str]:
        """Which of `keys` have a record. Few keys: one HEAD each. Many: the records are
        listed, which costs a few round trips, not one per key. One shard's listing
        (1/256 of the keys) estimates the remote's size, as DVC does: a small remote
        is listed in one go, a large one in 16 ranges side by side (by first hex
        digit). Requests run `CONCURRENCY` at a time."""
        from concurrent.futures import ThreadPoolExecutor

        wanted = {key for key in keys if is_key(key)}
        if not wanted:
            return set()
        self.store  # noqa: B018 (opened once, before the threads share it)
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            if len(wanted) <= _HEAD_LIMIT:
                found = pool.map(lambda key: key if self._exists(key) else None, wanted)
                return {key for key in found if key is not None}
            if urlsplit(self.url).scheme == "file":  # a folder lists in no order: walk it once
                return wanted.intersection(self._listed())
            sample = islice(self._listed("v1/ac/00"), _ONE_LISTING // 256 + 1)
            if sum(1 for _ in sample) * 256 <= _ONE_LISTING:
                return wanted.intersection(self._listed())
            digits = sorted({key[0] for key in wanted})
            listed = pool.map(lambda digit: wanted.intersection(self._listed_from(digit)), digits)
            return set().union(*listed)

    def _exists(self, key: str) -> bool:
        import obstore

        try:
            self._call("looking up a key", obstore.head, self._record_path(key))
        except FileNotFoundError:
            return False
        return True

    def _listed(self, prefix: str = "v1/ac", *, offset: str | None = None) -> Iterator[str]:
        """The keys recorded under `prefix` (after `offset`, in order)."""
        import obstore

        stream = self._call("listing", obstore.list, prefix, offset=offset, chunk_size=1000)
        deadline, seen = time.monotonic() + _LIST_SECONDS, 0
        try:
            for chunk in stream:
                seen += len(chunk)
                if seen > _LIST_LIMIT or time.monotonic() > deadline:
                    raise RemoteError(
                        f"remote cache {self.shown}: listing: over {_LIST_LIMIT:,} records or "
                        f"{_LIST_SECONDS:g} s; stopped"
                    )
                for meta in chunk:
                    name = meta["path"].rpartition("/")[2]
                    if name.endswith(".json") and is_key(name[:-5]):
                        yield name[:-5]
        except Exception as exc:
            raise self._failure("listing", exc) from None

    def _listed_from(self, digit: str) -> Iterator[str]:
        """The keys starting with the hex `digit`: one range of an object store's listing
        (which is in key order), so that 16 of them run side by side."""
        for key in self._listed(offset=f"v1/ac/{digit}"):
            if key[0] != digit:
                return
            yield key

    # --- transfers ----------------------------------------------------------

    def _get(self, path: str, limit: int) -> bytes | None:
        import obstore

        try:
            result = self._call("downloading", obstore.get, path)
        except FileNotFoundError:
            return None
        if result.meta["size"] > limit:
            raise RemoteMismatchError(f"{path} is {result.meta['size']} bytes, over {limit}")
        try:
            data = bytes(result.bytes())
        except Exception as exc:
            raise self._failure("downloading", exc) from None
        if len(data) > limit:
            raise RemoteMismatchError(f"{path} is over {limit} bytes")
        return data

    def record(self, key: str) -> RemoteRecord | None:
        """The record of `key`, checked for shape; None if there is none."""
        raw = self._get(self._record_path(key), _RECORD_LIMIT)
        if raw is None:
            return None
        return _parse_record(key, raw)

    def sound(self, key: str) -> bool:
        """Whether the record of `key` is well formed and its bytes are there, at their
        size (a HEAD, not a download)."""
        import obstore

        try:
            record = self.record(key)
        except RemoteMismatchError:
            return False
        if record is None:
            return False
        try:
            meta = self._call("looking up", obstore.head, self._bytes_path(record.sha256))
        except FileNotFoundError:
            return False
        return bool(meta["size"] == record.size)

    def fetch(self, key: str) -> tuple[RemoteRecord, bytes] | None:
        """The record and bytes of `key`, the bytes checked against the record's digest;
        None if the remote has no record (or no bytes) for it."""
        record = self.record(key)
        if record is None:
            return None
        data = self._get(self._bytes_path(record.sha256), min(record.size, MAX_BYTES))
        if data is None:
            return None
        if len(data) != record.size or sha256_bytes(data) != record.sha256:
            raise RemoteMismatchError("its bytes do not match the digest of its record")
        return record, data

    def push(self, record: RemoteRecord, data: bytes) -> Pushed:
        """Upload one generation, write-once: "uploaded", "present" (the same result was
        there already), "other" (another sound result for the key was recorded first:
        kept) or "repaired" (the key's record was broken: replaced by this one)."""
        if not self.writable:
            raise RemoteError(f"remote cache {self.shown} is read-only here: {self.why_read_only}")
        self._put_once(self._bytes_path(record.sha256), data)
        text = json.dumps(asdict(record), sort_keys=True).encode()
        if self._put_once(self._record_path(record.key), text):
            return "uploaded"
        try:
            theirs = self.fetch(record.key)
        except RemoteMismatchError:
            theirs = None
        if theirs is None:  # a record without its bytes, or one that fails its check
            self._call("uploading", _put, self._record_path(record.key), text, "overwrite")
            return "repaired"
        return "present" if theirs[0].sha256 == record.sha256 else "other"

    def _put_once(self, path: str, data: bytes) -> bool:
        """Put-if-absent; False when the object was there already."""
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        there = (AlreadyExistsError, PreconditionError)
        try:
            self._call("uploading", _put, path, data, "create", answers=there)
        except there:
            return False
        return True


def _put(store: ObjectStore, path: str, data: bytes, mode: Literal["create", "overwrite"]) -> None:
    import obstore

    obstore.put(store, path, data, mode=mode)


def _parse_record(key: str, raw: bytes) -> RemoteRecord:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise RemoteMismatchError("its record is not JSON") from None
    if not isinstance(data, dict) or data.get("key") != key:
        raise RemoteMismatchError("its record names another key")
    digest, size, seed = data.get("sha256"), data.get("size"), data.get("seed")
    texts = [data.get(name) for name in ("model", "backend", "created")]
    if not (isinstance(digest, str) and is_key(digest)):
        raise RemoteMismatchError("its record has no valid digest")
    if type(size) is not int or not 0 < size <= MAX_BYTES:
        raise RemoteMismatchError("its record has no valid size")
    if seed is not None and (type(seed) is not int or seed < 0):
        raise RemoteMismatchError("its record has an invalid seed")
    made_with = data.get("made_with", {})
    problem = made_with_problem(made_with)
    if problem is not None:
        raise RemoteMismatchError(f"its record's `made_with` {problem}")
    if not all(isinstance(t, str) and len(t) <= 300 for t in texts):
        raise RemoteMismatchError("its record is malformed")
    model, backend, created = (printable(str(t)) for t in texts)
    return RemoteRecord(key, digest, size, model, backend, seed, created, dict(made_with))
