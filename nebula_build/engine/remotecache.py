"""The remote cache in a build: which generations a remote can supply, restoring from
it (verified like any cached original), and uploading what was paid for.

The remote comes from `NEBULA_BUILD_CACHE_REMOTE` (which wins; set but empty turns
it off) or `[cache] remote` in the manifest. Writing to it is the environment's
decision: a remote the manifest alone names is read-only (a pull request must not
choose where paid generations are uploaded with CI's credentials), and
`NEBULA_BUILD_CACHE_READONLY=1` makes any remote read-only. A remote that fails is a
warning, then the build goes on as if there were none.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from nebula_build.core.plan import NOT_CACHED, NOT_HERE, Action, ActionKind, Plan
from nebula_build.core.resolve import Resolved
from nebula_build.core.spec import AssetSpec
from nebula_build.engine.remotesaid import remote_failure
from nebula_build.engine.verify import Restored, Verified, verify
from nebula_build.errors import UserError
from nebula_build.imaging import ImageError
from nebula_build.outputs.encode import encoding_for
from nebula_build.state.cache import Store
from nebula_build.state.remote import (
    Remote,
    RemoteError,
    RemoteMismatchError,
    RemoteRecord,
    url_problem,
)
from nebula_build.text import made_by_stand_in, plural, shown_url

ENV_REMOTE = "NEBULA_BUILD_CACHE_REMOTE"
ENV_READONLY = "NEBULA_BUILD_CACHE_READONLY"

Notice = Callable[[str], None]


def configured(
    resolved: Resolved, *, offline: bool = False, notice: Notice | None = None
) -> Remote | None:
    """The project's remote cache, or None (none named, or `--offline`)."""
    if offline:
        return None
    url = os.environ.get(ENV_REMOTE)
    if url == "" and resolved.cache_remote and notice is not None:
        notice(f"{ENV_REMOTE} is set but empty: the manifest's remote cache is off")
    why_read_only = ""
    if url is None:
        url = resolved.cache_remote
        why_read_only = (
            f"the manifest names it; set {ENV_REMOTE}{_to_copy(url)} where uploads should happen"
        )
    elif url:
        problem = url_problem(url, from_manifest=False)
        if problem is not None:
            raise UserError(f"{ENV_REMOTE}: {problem}")
    if not url:
        return None
    if os.environ.get(ENV_READONLY, "").strip().lower() not in ("", "0", "false", "no"):
        why_read_only = f"{ENV_READONLY} is set"
    return Remote(url, writable=not why_read_only, why_read_only=why_read_only)


def _to_copy(url: str | None) -> str:
    """The manifest's remote as a hint to set the variable names it: `=URL` where that
    says no more than its name does (`shown_url`), else as where it is written."""
    return f"={url}" if url and shown_url(url) == url else " to the manifest's [cache] remote"


def placeholders_stay_local(count: int, verb: str) -> str:
    """Why `count` of a stand-in's generations were never `verb` (uploaded, pushed)."""
    they, images, stay = ("it", "image", "stays") if count == 1 else ("they", "images", "stay")
    return (
        f"{plural(count, 'placeholder')} not {verb}: made by the stand-in for the API "
        f"(a dry run), {they} would be taken for the real {images}: {they} {stay} in the "
        "local cache only"
    )


def unshared(remote: Remote | None, generated: int, placeholders: int = 0) -> list[str]:
    """What to say when a run generated images a read-only remote did not take, or
    placeholders a stand-in for the API made, which no remote takes."""
    if remote is None:
        return []
    if not remote.writable:
        if not generated:
            return []
        return [
            f"{plural(generated, 'new generation')} not uploaded: the remote cache is "
            f"read-only here ({remote.why_read_only})"
        ]
    if not placeholders:
        return []
    return [placeholders_stay_local(placeholders, "uploaded")]


def mark(plan: Plan, remote: Remote | None, notice: Notice) -> Plan:
    """`plan` with the generations the remote holds marked as restores from it: one
    batched lookup for all of them. A plan that generates nothing asks nothing."""
    wanted = {a.spec.generation_key for a in plan.actions if _could_restore(a) and a.spec}
    if remote is None or not wanted:
        return plan
    try:
        found = remote.lookup(wanted)
    except RemoteError as exc:
        notice(f"{remote_failure(exc)}; going on without the remote cache")
        remote.give_up()
        return plan
    if not found:
        return plan

    def marked(action: Action) -> Action:
        spec, entry = action.spec, action.entry
        if not (_could_restore(action) and spec and spec.generation_key in found):
            return action
        if entry is not None and entry.generation_key == spec.generation_key:
            # the locked generation, only missing here: a restore, as from the local cache
            reason = (
                action.reason.replace(NOT_HERE, "")
                .replace(" and not cached", "")
                .replace(NOT_CACHED, "")
            )
            return replace(action, kind=ActionKind.RESTORE, reason=reason, from_remote=True)
        return replace(action, from_remote=True)

    return replace(plan, actions=tuple(marked(a) for a in plan.actions))


def _could_restore(action: Action) -> bool:
    return action.generates and not action.fresh


def restore_remote(
    remote: Remote, store: Store, spec: AssetSpec
) -> tuple[Restored | None, str | None]:
    """The original for `spec` from the remote, verified and kept in the local cache; or
    None, with why not (nothing there, the remote failed, its entry was refused)."""
    key = spec.generation_key
    try:
        fetched = remote.fetch(key)
        if fetched is None:
            return None, "the remote cache no longer has it"
        record, data = fetched
        if made_by_stand_in(record.made_with):  # never uploaded by this version
            return None, "the remote cache's entry was refused (a stand-in's placeholder)"
        verified = verify(data, encoding_for(spec), digest=record.sha256)
    except RemoteError as exc:
        return None, remote_failure(exc)
    except (RemoteMismatchError, ImageError) as exc:
        return None, f"the remote cache's entry was refused ({exc})"
    with contextlib.suppress(OSError):  # only a help for the next build: this one has the bytes
        store.put(
            key,
            verified.data,
            seed=record.seed,
            digest=verified.digest,
            image=spec.name,
            made_with=record.made_with,
        )
    restored = Restored(
        verified.data, seed=record.seed, made_with=dict(record.made_with), verified=verified
    )
    return restored, None


def new_record(
    key: str,
    *,
    backend: str,
    model: str,
    data: bytes,
    digest: str,
    seed: int | None,
    made_with: Mapping[str, str] | None = None,
) -> RemoteRecord:
    """The record of an upload made now."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    record = dict(made_with or {})
    return RemoteRecord(key, digest, len(data), model, backend, seed, created, record)


def upload(
    remote: Remote,
    spec: AssetSpec,
    verified: Verified,
    seed: int | None,
    made_with: Mapping[str, str],
) -> str | None:
    """Share a paid generation; the warning to give if the remote would not take it (none
    once the remote was given up on: that was said once). A stand-in's placeholder is
    never shared (the caller counts it, for `placeholders_unshared`)."""
    if not remote.usable or made_by_stand_in(made_with):
        return None
    try:
        record = new_record(
            spec.generation_key,
            backend=spec.backend,
            model=spec.model,
            data=verified.data,
            digest=verified.digest,
            seed=seed,
            made_with=made_with,
        )
        remote.push(record, verified.data)
    except RemoteError as exc:
        return f"{remote_failure(exc)}; the generation is kept in the local cache only"
    return None
