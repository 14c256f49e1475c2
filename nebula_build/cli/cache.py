"""`nebula-build cache push | pull | status`: the remote cache, moved explicitly."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nebula_build.cli.context import Context, ExitCode, prepared_project
from nebula_build.errors import UserError
from nebula_build.text import plural

if TYPE_CHECKING:
    from collections.abc import Callable

    from nebula_build.engine.prepare import Prepared
    from nebula_build.engine.remotesync import Sync
    from nebula_build.state.remote import Remote


def _how_to_name_one() -> str:
    from nebula_build.engine.remotecache import ENV_REMOTE

    return f"set [cache] remote (e.g. s3://bucket/prefix) or {ENV_REMOTE}"


def _remote(ctx: Context) -> tuple[Prepared, Remote]:
    from nebula_build.engine.remotecache import configured

    prepared = prepared_project(ctx)
    remote = configured(prepared.resolved, notice=ctx.notice)
    if remote is None:
        raise UserError(
            f"{prepared.project.display_manifest}: no remote cache: {_how_to_name_one()}"
        )
    return prepared, remote


def _progress(ctx: Context, verb: str) -> Callable[[int, int], None]:
    """A counter on stderr, where it is a terminal."""
    live = ctx.err.isatty() and not ctx.args.json

    def show(done: int, total: int) -> None:
        if live and total:
            ctx.err.write(f"\r{verb} {done}/{total}")
            if done == total:
                ctx.err.write("\n")
            ctx.err.flush()

    return show


def _report(ctx: Context, verb: str, sync: Sync, remote: Remote) -> int:
    if ctx.args.json:
        data = {
            "remote": remote.shown,
            verb: sync.moved,
            "present": sync.present,
            "failed": [{"generation_key": k, "error": why} for k, why in sync.failed],
            "skipped": [{"generation_key": k, "reason": why} for k, why in sync.skipped],
            "placeholders": sync.placeholders,
        }
        ctx.print_json(data)
    else:
        skipped = f", {len(sync.skipped)} left alone" if sync.skipped else ""
        ctx.print(
            f"{remote.shown}: {verb} {sync.moved}, {sync.present} already there{skipped}, "
            f"{len(sync.failed)} failed"
        )
        for key, why in sync.skipped:
            ctx.notice(f"{key[:12]}… left alone: {why}")
        if sync.placeholders:
            from nebula_build.engine.remotecache import placeholders_stay_local

            ctx.notice(placeholders_stay_local(sync.placeholders, "pushed"))
        for key, why in sync.failed:
            ctx.err.write(f"error: {key[:12]}…: {why}\n")
    return ExitCode.ERROR if sync.failed else ExitCode.OK


def _transfer(ctx: Context, verb: str) -> int:
    """`cache push` or `cache pull`, with a counter and the report."""
    from nebula_build.engine import remotesync
    from nebula_build.engine.remotesaid import remote_failure
    from nebula_build.state.remote import RemoteError

    prepared, remote = _remote(ctx)
    show = _progress(ctx, f"{verb}ing")
    try:
        if verb == "push":
            sync = remotesync.push(prepared, remote, show)
        else:
            sync = remotesync.pull(prepared, remote, show)
    except RemoteError as exc:
        raise UserError(remote_failure(exc)) from None
    return _report(ctx, f"{verb}ed", sync, remote)


def cmd_push(ctx: Context) -> int:
    return _transfer(ctx, "push")


def cmd_pull(ctx: Context) -> int:
    return _transfer(ctx, "pull")


def cmd_status(ctx: Context) -> int:
    """Where the project's generations are: the local cache, and the remote if any."""
    from nebula_build.engine.remotecache import configured
    from nebula_build.engine.remotesaid import remote_failure
    from nebula_build.engine.remotesync import status
    from nebula_build.state.remote import RemoteError

    prepared = prepared_project(ctx)
    remote = configured(prepared.resolved, notice=ctx.notice)
    try:
        found = status(prepared, remote)
    except RemoteError as exc:
        raise UserError(remote_failure(exc)) from None
    if ctx.args.json:
        url, writable = (remote.shown, remote.writable) if remote else (None, False)
        ctx.print_json({"remote": url, "writable": writable, **vars(found)})
        return ExitCode.OK
    counts = f"{plural(found.images, 'image')}, {plural(found.generations, 'generation')}"
    if remote is None:
        ctx.print(f"no remote cache: {_how_to_name_one()} to share generations")
        ctx.print(f"{counts}: {found.in_local} in the local cache")
        if found.in_neither:
            ctx.print(f"  {found.in_neither} not in it: an apply generates them")
        return ExitCode.OK
    mode = "read-write" if remote.writable else f"read-only: {remote.why_read_only}"
    ctx.print(f"remote cache: {remote.shown} ({mode})")
    ctx.print(
        f"{counts}: {found.in_local} in the local cache, {found.in_remote} in the remote cache"
    )
    if found.only_local and remote.writable:
        ctx.print(f"  {found.only_local} only here: `nebula-build cache push` shares them")
    elif found.only_local:
        ctx.print(f"  {found.only_local} only here (the remote is read-only here)")
    if found.earlier_only_local:
        earlier = plural(found.earlier_only_local, "earlier generation")
        if remote.writable:
            them = "it" if found.earlier_only_local == 1 else "them"
            ctx.print(f"  {earlier} only here: `nebula-build cache push` shares {them}")
        else:
            ctx.print(f"  {earlier} only here (the remote is read-only here)")
    if found.only_remote:
        them = "it" if found.only_remote == 1 else "them"
        ctx.print(
            f"  {found.only_remote} only in the remote: `nebula-build cache pull` fetches {them}"
        )
    if found.in_neither:
        ctx.print(f"  {found.in_neither} in neither: an apply generates them")
    return ExitCode.OK
