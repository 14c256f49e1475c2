"""The commands that plan and build: validate, plan, status, apply, gc."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from nebula_build.cli import markdownfile
from nebula_build.cli.context import Context, ExitCode, prepared_project
from nebula_build.errors import ApplyError, NebulaBuildError, first_line
from nebula_build.text import human_size, plural, printable, shell_operands
from nebula_build.ui.style import Style, wants_color

if TYPE_CHECKING:
    from nebula_build.cli.savedplan import SavedPlan
    from nebula_build.core.plan import Plan
    from nebula_build.engine.apply import Applier
    from nebula_build.engine.cost import Estimate
    from nebula_build.engine.gc import BackupsRemoved, Unreferenced
    from nebula_build.engine.lockmerge import LockMerge
    from nebula_build.engine.prepare import Prepared
    from nebula_build.engine.round import RoundResult
    from nebula_build.state.guard import BackupFolder
    from nebula_build.state.project import Project
    from nebula_build.ui.progress import Progress


def cmd_validate(ctx: Context) -> int:
    prepared = prepared_project(ctx)
    manifest, images = prepared.project.display_manifest, len(prepared.specs)
    rest = _outside_images(prepared)
    # under --backend every image uses the one named: no backend's settings lie idle
    warnings = [] if ctx.args.backend else _idle_conflicts(ctx, prepared, rest)
    warnings += _style_prompts_unused(prepared, rest)
    for warning in warnings:
        ctx.warn(warning)
    notes = _left_out(prepared)
    if ctx.args.json:
        data = {"manifest": manifest, "images": images, "valid": True, "warnings": warnings}
        ctx.print_json(data | {"notes": notes})
    else:
        for note in notes:
            ctx.notice(note, annotate=False)
        ctx.print(f"{manifest}: {plural(images, 'image')}, valid")
    return ExitCode.OK


def _left_out(prepared: Prepared) -> list[str]:
    """The parameters a style or [defaults] sets that an image's model does not take,
    left out: one note for all the images each is about. Without them, a parameter
    added for models that take none changes nothing, and nothing says why."""
    from nebula_build.core.plan import dropped_notes
    from nebula_build.outputs.atlas import some_names

    about: dict[str, list[str]] = {}
    for name, spec in prepared.specs.items():
        if spec.dropped:
            for note in dropped_notes(spec):
                about.setdefault(note, []).append(name)
    return [
        f"{note}: {plural(len(names), 'image')} ({some_names(names)})"
        for note, names in about.items()
    ]


def _outside_images(prepared: Prepared) -> Mapping[str, Any] | None:
    """The manifest's tables but its images, read from the text outside the image
    tables where it can be cut safely (the spec cache spared the whole parse)."""
    from nebula_build.core import chunks
    from nebula_build.core.manifest import read_bytes

    project = prepared.project
    data = read_bytes(project.manifest_path, project.display_manifest)  # bounded, no FIFO
    cut = chunks.cut(data.decode("utf-8-sig", errors="replace"))
    return chunks.parse_rest(cut.rest) if cut is not None else None


def _style_prompts_unused(prepared: Prepared, rest: Mapping[str, Any] | None) -> list[str]:
    """A style's `prompt` where every image of the style sets its own: never used (a
    prompt is replaced, not added to: `prompt_prefix` and `prompt_suffix` add). `rest`:
    the manifest's tables but its images, where they could be read apart (`chunks`)."""
    from nebula_build.core.manifest import load

    styles = rest.get("styles", {}) if rest is not None else None
    if isinstance(styles, dict) and not any(
        isinstance(style, dict) and "prompt" in style for style in styles.values()
    ):
        return []  # no style sets a prompt: the images need not be read again
    project = prepared.project
    manifest = load(project.manifest_path, project.display_manifest)
    model = manifest.model
    found = []
    for name, style in model.styles.items():
        users = [d for d in model.images.values() if (d.style or model.defaults.style) == name]
        if style.prompt is not None and users and all(d.prompt is not None for d in users):
            message = (
                "every image of this style sets its own prompt, which replaces this one: to "
                "add words to theirs, write them as prompt_prefix or prompt_suffix"
            )
            found.append(str(manifest.problem(("styles", name, "prompt"), message)))
    return found


def _idle_conflicts(ctx: Context, prepared: Prepared, rest: Mapping[str, Any] | None) -> list[str]:
    """Conflicting options in the settings of backends no image uses, located. The
    `[backends]` tables come from `rest`, the text outside the image tables where it
    can be cut safely (the spec cache spared the whole parse); else from the whole
    parse."""
    from nebula_build.core.manifest import load
    from nebula_build.core.resolve import idle_conflicts

    project = prepared.project
    manifest = None
    if rest is None:
        manifest = load(project.manifest_path, project.display_manifest)
        backends: Mapping[str, Any] = manifest.model.backends
    else:
        backends = rest.get("backends", {}) if isinstance(rest.get("backends"), dict) else {}
    used = {spec.backend for spec in prepared.specs.values()}
    found = idle_conflicts(backends, ctx.registry(), used)
    if found and manifest is None:  # its problems say where they are written
        manifest = load(project.manifest_path, project.display_manifest)
    return [str(manifest.problem(loc, message)) for loc, message in found] if manifest else []


def cmd_plan(ctx: Context) -> int:
    args = ctx.args
    whole = not (args.json or args.target or args.replace or args.more or args.force)
    # the snapshot that answers a plan with nothing to do has no plan to write out
    quick = whole and not args.markdown and not args.out
    if quick and _answered_from_snapshot(ctx):
        return ExitCode.OK
    import time

    from nebula_build.cli import savedplan
    from nebula_build.engine import noop
    from nebula_build.engine.cost import planned
    from nebula_build.engine.lockmerge import settled
    from nebula_build.engine.planning import plan_for
    from nebula_build.engine.prepare import current_lock, prepare
    from nebula_build.engine.remotecache import configured
    from nebula_build.ui.report import lock_merge_json, plan_json, plan_text, status_summary
    from nebula_build.ui.statuslines import status_rows

    started = time.time()
    notices: list[str] = []

    def notice(message: str) -> None:
        notices.append(message)
        ctx.notice(message)

    project = ctx.project()
    markdownfile.refuse_project_files(ctx, project)
    root = str(project.root)
    first = [os.path.relpath(path, root) for path in (project.manifest_path, project.lock_path)]
    observed = noop.observe(root, first)  # before reading them
    prepared = prepare(project, ctx.registry(), backend=args.backend)
    observed |= noop.observe(root, noop.read_first(prepared))
    asked = noop.consulted(prepared.store)
    lock, merge = settled(prepared, current_lock(project, notice), notice)
    plan = plan_for(
        prepared,
        lock,
        targets=args.target,
        replace=args.replace,
        more=args.more,
        force=args.force,
        remote=configured(prepared.resolved, offline=args.offline, notice=notice),
        notice=notice,
    )
    markdownfile.refuse_outputs(ctx, project, plan, prepared.resolved, lock)
    prepared.files.save()
    # a note the fast path would not repeat, or an answer from the cache: never skipped
    if whole and not notices and not asked:
        status = (status_rows(plan), status_summary(plan, {}))
        noop.record(prepared, plan, args.backend, started=started, observed=observed, status=status)
    elif whole:
        noop.forget(project.state_dir)
    estimate = planned(prepared, plan)
    if ctx.args.json:
        data = plan_json(plan, estimate) | {"lock_merge": lock_merge_json(merge)}
        ctx.print_json(data)
    else:
        ctx.print(plan_text(plan, ctx.style, estimate, merge=merge))
        _say_what_apply_lacks(ctx, prepared, plan)
    title = f"nebula-build plan ({project.display_manifest})"
    _summarize(ctx, title, plan, estimate=estimate, notes=notices, merge=merge)
    savedplan.write(ctx, plan, estimate)
    if ctx.args.detailed_exitcode and (conflicts := _conflicts(plan)):
        from nebula_build.core.handedits import acceptable

        # apply would refuse them: a pull request must not pass, and must say why
        _say_conflicts(ctx, conflicts, project, acceptable(plan))
        return ExitCode.ERROR
    if ctx.args.detailed_exitcode and _pending(plan, merge is not None):
        return ExitCode.CHANGES_PENDING
    return ExitCode.OK


def _say_what_apply_lacks(ctx: Context, prepared: Prepared, plan: Plan) -> None:
    """A secret apply would stop for here before its first generation (a key not set):
    the plan needs none, so it only says so, after the plan, with no annotation (a pull
    request's plan runs without the key, rightly). Only the backends that take a
    secret are asked: a local backend's checks read paths a pull request names."""
    resolved = prepared.resolved
    for name in sorted({a.spec.backend for a in plan.generations if a.spec}):
        backend, settings = resolved.backends[name], resolved.settings[name]
        try:
            if not backend.secret_names(settings):
                continue
            backend.preflight(settings, prepared.project.root)
        except NebulaBuildError as exc:
            said = f"apply here would stop before generating: {first_line(exc)}"
            ctx.notice(said, annotate=False)


def _pending(plan: Plan, merged: bool) -> bool:
    """Whether apply would change anything, the committed lock alone included: write it
    resolved (a lock with merge conflicts, `merged`), without an ended pin, or with a
    draw the cache holds (`--more`)."""
    from nebula_build.ui.report import lock_changes

    return plan.has_changes or merged or lock_changes(plan) is not None


def _conflicts(plan: Plan) -> dict[str, tuple[str, str]]:
    """The files in the way that apply would refuse to overwrite without --force (or at
    all), by the image, atlas or asset manifest they are the output of: (file, why)."""
    from nebula_build.core.plan import ActionKind, FileState

    found = {
        a.image: (a.output or "", a.reason) for a in plan.actions if a.kind is ActionKind.CONFLICT
    }
    found |= {f.label: (f.output, f.reason) for f in plan.files if f.state is FileState.CONFLICT}
    return found


def _in_conflict(plan: Plan) -> bool:
    """A file in the way that apply would refuse to overwrite without --force."""
    return bool(_conflicts(plan))


def _say_conflicts(
    ctx: Context,
    conflicts: Mapping[str, tuple[str, str]],
    project: Project,
    acceptable: Sequence[str],
) -> None:
    """Why `plan --detailed-exitcode` exits 1: an error line, and under GitHub Actions
    an annotation, with its reason, on the line that declares each output in the way."""
    outputs = [output for output, _ in conflicts.values()]
    files = ", ".join(printable(output, limit=200) for output in outputs[:5])
    more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
    them = "it" if len(conflicts) == 1 else "them"
    if all("changed by hand" in why for _, why in conflicts.values()):
        accept = ""
        if set(conflicts) <= set(acceptable):
            names = shell_operands(*list(conflicts)[:3])
            accept = f"keep {them} as the output with `nebula-build accept {names}`, "
        ctx.err.write(
            f"error: {plural(len(conflicts), 'output')} changed by hand ({files}{more}), "
            f"which apply would refuse to overwrite: {accept}move {them} elsewhere "
            f"(apply then puts back what it made), or replace {them} with `nebula-build apply "
            "--force` (which keeps a backup)\n"
        )
    else:  # another image's output, a link out, a folder in the way: the plan says which
        ctx.err.write(
            f"error: {plural(len(conflicts), 'output')} in conflict ({files}{more}), which "
            "apply would refuse to overwrite: the plan says why, and what `nebula-build "
            "apply --force` would do\n"
        )
    if os.environ.get("GITHUB_ACTIONS") != "true" or ctx.args.json:
        return
    from nebula_build.core.manifest import source_text
    from nebula_build.ui import github
    from nebula_build.ui.runnerlog import write_command

    messages = [
        (name, f"{output}: {why}; apply would refuse to overwrite it")
        for name, (output, why) in conflicts.items()
    ]
    source = source_text(project.manifest_path)
    for line in github.image_annotations("error", messages, project.display_manifest, source):
        write_command(ctx.out, line)


def _summarize(
    ctx: Context,
    title: str,
    plan: Plan,
    *,
    result: RoundResult | None = None,
    estimate: Estimate | None = None,
    notes: Sequence[str] = (),
    merge: LockMerge | None = None,
) -> None:
    """The plan (and what the apply did), with the notes the run printed, in the job
    summary under GitHub Actions and in the `--markdown` file; `merge`: the lock a plan
    read still has a merge's conflict markers."""
    if result is None:
        _write_summaries(ctx, title, plan, estimate=estimate, notes=notes, merge=merge)
    else:
        _write_summaries(
            ctx,
            title,
            plan,
            generated=result.generated,
            generated_refused=result.applied.refused if result.applied else 0,
            failures=result.failures,
            estimate=result.estimate,
            notes=notes,
        )


def _summarize_stop(ctx: Context, listener: ApplyListener, why: str, manifest: str) -> None:
    """Why an apply stopped, with its plan, in the job summary and the `--markdown` file:
    a guard refused the plan, the run failed, or the saved plan (`--plan`) moved."""
    title = f"nebula-build apply ({manifest})"
    if listener.planned is not None:
        listener.estimated(listener.planned.estimate)
        started = listener.progress is not None  # images may have been made, and paid
        _summarize_refusal(ctx, title, listener.planned, why, listener.notes, started=started)
    elif listener.compared is not None:
        _write_summaries(ctx, title, listener.compared, refused=why, notes=listener.notes)


def _summarize_refusal(
    ctx: Context,
    title: str,
    refused: RoundResult,
    why: str,
    notes: Sequence[str] = (),
    *,
    started: bool = False,
) -> None:
    """The plan a guard refused to start (or an error stopped once it had `started`
    generating), and why, in the job summary and the `--markdown` file: a failed
    job's summary must not be empty, nor its comment keep the plan before."""
    plan, estimate = refused.plan, refused.estimate
    _write_summaries(ctx, title, plan, estimate=estimate, refused=why, started=started, notes=notes)


def _write_summaries(ctx: Context, title: str, plan: Plan, **details: Any) -> None:
    ctx.summarized = True
    on_github = os.environ.get("GITHUB_ACTIONS") == "true"
    if not on_github and markdownfile.requested(ctx) is None:
        return
    from nebula_build.ui import github, markdown

    if on_github and (unwritten := github.append_summary(markdown.summary(title, plan, **details))):
        ctx.warn(unwritten)
    if markdownfile.requested(ctx) is not None:
        budget, listed = markdownfile.limit(ctx), markdownfile.listed(ctx)
        markdownfile.write(
            ctx, markdown.summary(title, plan, budget=budget, listed=listed, **details)
        )


def _answered_from_snapshot(ctx: Context) -> bool:
    """Whether nothing a plan reads changed since the last one that found nothing to
    do (see engine/noop.py), and this plan is answered as the full path would answer,
    job summary included."""
    from nebula_build.engine import noop

    found = fast_path_root(ctx)
    images = None if found is None else noop.unchanged(*found, ctx.args.backend)
    if found is None or images is None:
        return False
    ctx.print(f"No changes: {plural(images, 'image')} up to date.")
    _summarize_up_to_date(ctx, "plan", found, images)
    return True


def fast_path_root(ctx: Context) -> tuple[str, str] | None:
    """(project root, manifest) where the no-op snapshot may answer. Under GitHub
    Actions too: a plan or an apply answered from it writes the job summary its full
    path would (`_summarize_up_to_date`), and a plan that printed a note, which would
    be an annotation, leaves no snapshot."""
    from nebula_build.engine import noop

    return noop.find_root(ctx.start, ctx.args.file)


def _summarize_up_to_date(ctx: Context, command: str, found: tuple[str, str], images: int) -> None:
    """Under GitHub Actions, the job summary the full path writes for a `command` that
    found `images` up to date, from the no-op snapshot's count; `found`: (project root,
    manifest)."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    from pathlib import Path

    from nebula_build.state.project import Project
    from nebula_build.ui import github, markdown

    root = Path(found[0])
    shown = Project(root, root / found[1]).display_manifest  # as the full path shows it
    title = f"nebula-build {command} ({shown})"
    summary = markdown.up_to_date(title, images, applied=command == "apply")
    if unwritten := github.append_summary(summary):
        ctx.warn(unwritten)


def _status_since_last_plan(ctx: Context) -> str | None:
    """`status` of a project unchanged since the last plan that found nothing to do:
    what the full path prints, from the snapshot's lines."""
    from nebula_build.engine import noop
    from nebula_build.ui.statuslines import status_lines

    found = fast_path_root(ctx)
    kept = None if found is None else noop.status(*found, ctx.args.backend)
    return None if kept is None else status_lines(kept[0], kept[1], ctx.style)


def cmd_status(ctx: Context) -> int:
    if not (ctx.args.json or ctx.args.target) and (text := _status_since_last_plan(ctx)):
        ctx.print(text)
        return ExitCode.OK  # nothing pending, in conflict or failed
    from nebula_build.engine.lockmerge import settled
    from nebula_build.engine.planning import plan_for
    from nebula_build.engine.prepare import current_lock
    from nebula_build.engine.remotecache import configured
    from nebula_build.engine.runstate import read_failures, read_file_failures
    from nebula_build.ui.report import (
        lock_merge_json,
        plan_json,
        status_failed,
        status_summary,
        status_text,
    )

    prepared = prepared_project(ctx)
    lock, merge = settled(prepared, current_lock(prepared.project, ctx.notice), ctx.notice)
    # as plan does: what the remote cache holds is restored, not generated
    remote = configured(prepared.resolved, offline=ctx.args.offline, notice=ctx.notice)
    plan = plan_for(prepared, lock, targets=ctx.args.target, remote=remote, notice=ctx.notice)
    prepared.files.save()
    failed = status_failed(plan, read_failures(prepared.project, prepared.specs))
    failed |= read_file_failures(prepared.project, plan.files)
    if ctx.args.json:
        data = plan_json(plan) | {
            "failed": failed,
            "status": status_summary(plan, failed),
            "lock_merge": lock_merge_json(merge),
        }
        ctx.print_json(data)
    else:
        ctx.print(status_text(plan, ctx.style, failed, merge))
    if not ctx.args.detailed_exitcode:
        return ExitCode.OK
    if _in_conflict(plan) or failed:
        return ExitCode.ERROR
    return ExitCode.CHANGES_PENDING if _pending(plan, merge is not None) else ExitCode.OK


def _nothing_to_apply(ctx: Context) -> int | None:
    """apply's exit code where the no-op snapshot shows there is nothing to do (after
    printing what the full path prints then); None where the full path must decide."""
    from nebula_build.engine import noop

    args = ctx.args
    if getattr(args, "json", False) or args.target or args.replace or args.more or args.force:
        return None
    found = fast_path_root(ctx)
    images = None if found is None else noop.nothing_to_apply(*found, args.backend)
    if found is None or images is None:
        return None
    ctx.print(f"No changes: {plural(images, 'image')} up to date.")
    _summarize_up_to_date(ctx, "apply", found, images)
    return ExitCode.OK


def cmd_apply(ctx: Context) -> int:
    # a saved plan is compared with the plan made now, whatever the snapshot says
    full = ctx.args.markdown or ctx.args.plan
    if not full and (nothing_done := _nothing_to_apply(ctx)) is not None:
        return nothing_done
    from nebula_build.cli import confirm, eventloop, savedplan
    from nebula_build.engine.round import RoundOptions, apply_round
    from nebula_build.state.projectlock import ProjectLock

    args = ctx.args
    saved = savedplan.requested(ctx)  # before any work: it can only refuse
    project = ctx.project()
    markdownfile.refuse_project_files(ctx, project)
    registry = ctx.registry()
    options = RoundOptions(
        backend=args.backend,
        targets=args.target,
        replace=args.replace,
        more=args.more,
        force=args.force,
        parallelism=args.parallelism,
        locked=args.locked,
        max_generations=args.max_generations,
        offline=args.offline,
        max_cost=args.max_cost,
        outcomes=args.json,
        applied_plan=None if saved is None else saved.record.digest,
        reviewed=confirm.reviewing(yes=args.yes, locked=args.locked, json_output=args.json),
    )
    listener = ApplyListener(ctx, saved=saved)
    try:
        with ProjectLock(
            project.project_lock_path, timeout=args.lock_timeout, on_takeover=ctx.notice
        ):
            result = eventloop.run(
                apply_round(
                    project,
                    registry,
                    options,
                    listener=listener,
                    review=listener.review,
                    on_plan=listener.plan_made,
                    on_start=listener.applying,
                    check_plan=None if saved is None else listener.check_saved,
                ),
                ctx.loop_failures,
            )
    except NebulaBuildError as error:
        listener.show_refused()
        try:
            _summarize_stop(ctx, listener, first_line(error), project.display_manifest)
        except NebulaBuildError as unwritten:  # the error that stopped it comes first
            ctx.warn(str(unwritten))
        raise
    except KeyboardInterrupt:
        progress = listener.progress
        if progress is None:
            raise
        ctx.err.write(
            f"interrupted with {progress.done} of {plural(progress.total, 'image')} finished "
            "(what they made is kept); `nebula-build apply` again does the rest"
            f"{listener.maybe_billed()}\n"
        )
        return 130
    return render_round(ctx, result, notes=listener.notes)


#: the most images' actions apply lists before it starts (`plan` lists them all)
APPLY_PLAN_LIMIT = 50


class ApplyListener:
    """How `apply` shows a round as it runs: notes, the plan (and the question before a
    paid run), progress."""

    def __init__(
        self, ctx: Context, *, quiet: bool | None = None, saved: SavedPlan | None = None
    ) -> None:
        self.ctx = ctx
        #: the plan `apply --plan` carries out, whose estimate the round's is compared with
        self.saved = saved
        #: the plan made now that the saved one was compared with
        self.compared: Plan | None = None
        self._cost_compared = False
        self.quiet = ctx.args.quiet if quiet is None else quiet
        #: the run's progress once it started (None while it loads and plans)
        self.progress: Progress | None = None
        #: the round once its plan, with changes, is estimated
        self.planned: RoundResult | None = None
        #: the notes printed so far, for the job summary
        self.notes: list[str] = []
        #: what carries out the plan, once it started
        self.applier: Applier | None = None
        #: whether the plan was printed (by `review`, before any work)
        self.shown = False

    def plan_made(self, planned: RoundResult) -> None:
        prepared = planned.prepared
        markdownfile.refuse_outputs(
            self.ctx, prepared.project, planned.plan, prepared.resolved, planned.lock
        )
        self.planned = planned

    def applying(self, applier: Applier) -> None:
        self.applier = applier

    def maybe_billed(self) -> str:
        """What an interrupted run adds about the requests it cut off on a paid backend
        ("" if none)."""
        if self.applier is None or self.planned is None:
            return ""
        from nebula_build.engine.apply import maybe_billed

        return maybe_billed(self.applier.unanswered(), self.planned.estimate.paid_backends)

    def notice(self, message: str) -> None:
        self.notes.append(message)
        self.ctx.notice(message)

    def check_saved(self, plan: Plan) -> None:
        """Refuse a plan made now that is not the saved one."""
        from nebula_build.cli.savedplan import check

        if self.saved is not None:
            self.compared = plan
            if (note := check(self.saved, plan)) is not None:
                self.notice(note)
                self._cost_compared = True  # for less: the cost moved with the plan

    def estimated(self, estimate: Estimate) -> None:
        """Say once where the estimate moved since the saved plan (new prices)."""
        from nebula_build.cli.savedplan import cost_note

        if self.saved is None or self._cost_compared:
            return
        self._cost_compared = True
        if (note := cost_note(self.saved, estimate)) is not None:
            self.notice(note)

    def loaded(self, prepared: Prepared) -> None:
        return None

    def review(self, prepared: Prepared, plan: Plan, estimate: Estimate) -> bool:
        """Print the plan before acting; on a terminal, ask before a paid run."""
        import sys

        from nebula_build.cli import confirm
        from nebula_build.ui.report import cost_question

        args = self.ctx.args
        json_output = getattr(args, "json", False)
        self._show(plan, estimate)
        asking = confirm.wanted(
            yes=getattr(args, "yes", False),
            locked=getattr(args, "locked", False),
            json_output=json_output,
            estimate=estimate,
        )
        if not asking:
            return True
        self.ctx.out.flush()
        question = cost_question(plan, estimate)
        return confirm.ask(question, answers=sys.stdin, out=self.ctx.out, err=self.ctx.err)

    def show_refused(self) -> None:
        """The plan a guard refused before any work (--max-generations, --max-cost, a
        missing key, a short balance), as apply prints it before a run: the job's log
        names the images it would have made, not only how many."""
        if self.planned is not None and self.progress is None and not self.shown:
            self._show(self.planned.plan, self.planned.estimate)

    def _show(self, plan: Plan, estimate: Estimate) -> None:
        from nebula_build.ui.report import plan_text, summary_line

        self.estimated(estimate)
        self.shown = True
        if getattr(self.ctx.args, "json", False):
            return
        if self.quiet:
            self.ctx.print(summary_line(plan))
        else:
            self.ctx.print(
                plan_text(
                    plan, self.ctx.style, estimate, limit=APPLY_PLAN_LIMIT, conflict_advice=False
                )
            )

    def starting(self, prepared: Prepared, plan: Plan) -> Progress:
        from nebula_build.ui.progress import Progress

        json_output = getattr(self.ctx.args, "json", False)
        err = self.ctx.err
        self.progress = Progress(
            err,
            plan.counted_changes,
            live=wants_color(err) and err.isatty(),
            style=Style(wants_color(err)),
            quiet=self.quiet or json_output,
        )
        return self.progress


def render_round(
    ctx: Context, result: RoundResult, *, summary: bool = True, notes: Sequence[str] = ()
) -> int:
    """The round's closing report and exit code; every failure ends in an ApplyError.
    Without `summary`, no closing line when all went well (`pick` says its own).
    `notes`: those the round printed, for the job summary."""
    from nebula_build.ui.report import (
        action_json,
        apply_json,
        backups_line,
        done_text,
        failed_text,
        plan_text,
    )

    json_output = getattr(ctx.args, "json", False)
    prepared = result.prepared
    markdownfile.refuse_outputs(ctx, prepared.project, result.plan, prepared.resolved, result.lock)
    if result.refused is not None:
        if json_output:  # why, and the actions that would need generating
            why = {"kind": "Refused", "message": result.refused}
            needed = [action_json(a) for a in result.plan.generations]
            ctx.print_json(
                apply_json(result) | {"error": why, "refused_actions": needed, "notes": list(notes)}
            )
        else:
            ctx.print(plan_text(result.plan, ctx.style, result.estimate))
        ctx.err.write(f"error: {result.refused}\n")
        manifest = result.prepared.project.display_manifest
        _summarize_refusal(ctx, f"nebula-build apply ({manifest})", result, result.refused, notes)
        _github_error(ctx, result.refused, manifest)
        return ExitCode.CHANGES_PENDING
    if json_output:
        data = _applied_json(ctx, result) | {"notes": list(notes)}
        ctx.print_json(data)
    elif not summary:
        pass
    elif not result.plan.has_changes:  # with its pins and settings notes
        ctx.print(plan_text(result.plan, ctx.style, lock_written=True))
    else:
        ctx.print(
            ctx.style(
                f"Apply finished in {result.elapsed:.1f}s: {done_text(result)}, "
                f"{failed_text(result, result.counted_failures)}.",
                "bold",
            )
        )
        if (backed_up := backups_line(result.prepared)) is not None:
            ctx.print(backed_up)
    manifest = result.prepared.project.display_manifest
    _summarize(ctx, f"nebula-build apply ({manifest})", result.plan, result=result, notes=notes)
    _github_warnings(ctx, result, manifest)
    failures = result.failures
    for name, error in failures.items():
        if not isinstance(error, NebulaBuildError | OSError):
            import traceback

            ctx.err.write(f"internal error while building {name} (a bug, please report it):\n")
            traceback.print_exception(error, file=ctx.err)
    if failures:
        files = [o.action.label for o in result.files if not o.ok]
        raise ApplyError(failures, files=files, kept_back=_kept_back(result))
    return ExitCode.OK


def _kept_back(result: RoundResult) -> set[str]:
    return result.applied.kept_back if result.applied else set()


def _applied_json(ctx: Context, result: RoundResult) -> dict[str, Any]:
    """`apply --json`: with the saved plan it carried out (`--plan`), as named."""
    from nebula_build.ui.report import apply_json

    data = apply_json(result)
    if plan := getattr(ctx.args, "plan", None):
        data["plan"] = plan
    return data


def _github_error(ctx: Context, message: str, manifest: str) -> None:
    """Under GitHub Actions, an error that ends the run without raising, as an annotation
    on the manifest (raised ones are annotated where they are caught)."""
    if os.environ.get("GITHUB_ACTIONS") != "true" or getattr(ctx.args, "json", False):
        return
    from nebula_build.ui import github
    from nebula_build.ui.runnerlog import write_command

    write_command(ctx.out, github.annotation("error", message, file=manifest))


def _github_warnings(ctx: Context, result: RoundResult, manifest: str) -> None:
    """Under GitHub Actions, each image's warnings as annotations on the manifest."""
    if os.environ.get("GITHUB_ACTIONS") != "true" or result.applied is None or ctx.args.json:
        return
    from nebula_build.ui import github

    warnings = result.applied.warnings
    if not warnings:
        return
    from nebula_build.core.manifest import source_text

    source = source_text(result.prepared.project.manifest_path)
    from nebula_build.ui.runnerlog import write_command

    for line in github.warning_annotations(warnings, manifest, source):
        write_command(ctx.out, line)


def _gc_entry_json(entry: Unreferenced) -> dict[str, object]:
    made = None if entry.made is None else _utc(entry.made)
    return {"key": entry.key, "bytes": entry.bytes, "image": entry.image, "made": made}


def _gc_entry_line(entry: Unreferenced) -> str:
    """'3f2a9c1b0d4e  12.3 KiB  made for hero, 2026-11-30 17:50 UTC'."""
    what = f"made for {printable(entry.image, limit=80)}" if entry.image else "image unknown"
    if entry.made is not None:
        what += f", {_utc(entry.made, '%Y-%m-%d %H:%M UTC')}"
    return f"{entry.key[:12]}  {human_size(entry.bytes):>10}  {what}"


def _utc(timestamp: float, form: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return time.strftime(form, time.gmtime(timestamp))


def cmd_gc(ctx: Context) -> int:
    from nebula_build.engine.gc import (
        BackupsRemoved,
        backups_kept,
        collect,
        kept_for_pick,
        remove_backups,
    )
    from nebula_build.engine.lockmerge import refuse_while_merged
    from nebula_build.engine.prepare import current_lock, recovered_lock
    from nebula_build.errors import UserError
    from nebula_build.state.projectlock import ProjectLock

    args = ctx.args
    if args.older_than is not None and not args.backups:
        raise UserError("--older-than says which backup folders --backups removes: add --backups")
    prepared = prepared_project(ctx)
    project = prepared.project
    # --dry-run removes nothing, so it lists beside a running watch or apply
    held: AbstractContextManager[object] = (
        nullcontext()
        if args.dry_run
        else ProjectLock(
            project.project_lock_path,
            timeout=args.lock_timeout,
            command="gc",
            on_takeover=ctx.notice,
        )
    )
    with held:
        if args.dry_run:
            lock = current_lock(project, ctx.notice)
        else:
            lock = recovered_lock(project, ctx.notice)
        refuse_while_merged(prepared, "gc")
        # first: a backup folder behind a link stops gc before it removes anything
        backups = BackupsRemoved([], backups_kept(prepared.guard, project.backup_dir), [])
        if args.backups:
            backups = remove_backups(
                prepared.guard, project.backup_dir, older_than=args.older_than, dry_run=args.dry_run
            )
        found = collect(prepared, lock, dry_run=args.dry_run)
        kept = kept_for_pick(prepared, lock)
    backup_dir = project.backup_dir.relative_to(project.root).as_posix() + "/"
    if args.json:
        ctx.print_json(_gc_json(ctx, found, kept, backups, backup_dir))
    else:
        _gc_text(ctx, found, kept, backups, backup_dir)
    for folder, why in backups.failed:
        ctx.err.write(f"error: {backup_dir}{folder.name}/ could not be removed: {why}\n")
    return ExitCode.ERROR if backups.failed else ExitCode.OK


def _gc_json(
    ctx: Context,
    found: list[Unreferenced],
    kept: dict[str, tuple[int, int]],
    backups: BackupsRemoved,
    backup_dir: str,
) -> dict[str, object]:
    from nebula_build.engine.gc import totals

    freed = sum(entry.bytes for entry in found)
    data: dict[str, object] = {"removed": len(found), "bytes": freed, "dry_run": ctx.args.dry_run}
    data["entries"] = [_gc_entry_json(entry) for entry in found]
    data["candidates"] = {"draws": kept["draws"][0], "bytes": kept["draws"][1]}
    data["history"] = {"generations": kept["history"][0], "bytes": kept["history"][1]}
    left = totals(backups.kept)
    data["backups"] = {
        "path": backup_dir,
        "folders": left.folders,
        "files": left.files,
        "bytes": left.bytes,
    }
    if not ctx.args.backups:
        return data
    gone = totals(backups.removed)
    data["backups_removed"] = {
        "folders": gone.folders,
        "files": gone.files,
        "bytes": gone.bytes,
        "entries": [_backup_json(folder, backup_dir) for folder in backups.removed],
        "failed": [
            {"folder": f"{backup_dir}{folder.name}/", "error": why}
            for folder, why in backups.failed
        ],
    }
    return data


def _backup_json(folder: BackupFolder, backup_dir: str) -> dict[str, object]:
    made = None if folder.made is None else _utc(folder.made)
    path = f"{backup_dir}{folder.name}/"
    return {"folder": path, "files": folder.files, "bytes": folder.bytes, "made": made}


def _gc_text(
    ctx: Context,
    found: list[Unreferenced],
    kept: dict[str, tuple[int, int]],
    backups: BackupsRemoved,
    backup_dir: str,
) -> None:
    dry_run = ctx.args.dry_run
    verb = "would remove" if dry_run else "removed"
    entries = plural(len(found), "cache entry", "cache entries")
    freed = sum(entry.bytes for entry in found)
    ctx.print(f"{verb} {entries} ({human_size(freed)}){':' if dry_run and found else ''}")
    if dry_run:
        for entry in found:
            ctx.print(f"  {_gc_entry_line(entry)}")
    draws, size = kept["draws"]
    if draws:
        ctx.print(f"kept {plural(draws, 'candidate draw')} not picked ({human_size(size)})")
    earlier, size = kept["history"]
    if earlier:
        generations = plural(earlier, "generation")
        ctx.print(
            f"kept {generations} `pick @K` brings back ({human_size(size)}): the earlier "
            "outputs the history lists, with the other draws of their sets"
        )
    if ctx.args.backups:
        _backups_removed_lines(ctx, backups, backup_dir)
    elif backups.kept:
        ctx.print(_backups_kept_line(backups.kept, backup_dir, dry_run=ctx.args.dry_run))


def _backups_removed_lines(ctx: Context, backups: BackupsRemoved, backup_dir: str) -> None:
    """What gc --backups removed (or would), each folder, and what it left."""
    from nebula_build.engine.gc import totals

    gone, left = totals(backups.removed), totals(backups.kept)
    verb = "would remove" if ctx.args.dry_run else "removed"
    folders = plural(gone.folders, "backup folder")
    colon = ":" if gone.folders else ""
    ctx.print(
        f"{verb} {folders} from {backup_dir} ({plural(gone.files, 'file')}, "
        f"{human_size(gone.bytes)}){colon}"
    )
    for folder in backups.removed:
        ctx.print(f"  {folder.name}/  {plural(folder.files, 'file')}, {human_size(folder.bytes)}")
    if left.folders:
        age = ctx.args.older_than
        newer = ""
        if age is not None and not backups.failed:
            newer = f", of runs {_age(age)} ago or less"
        kept = "would keep" if ctx.args.dry_run else "kept"
        ctx.print(
            f"{kept} {plural(left.folders, 'backup folder')} in {backup_dir} "
            f"({plural(left.files, 'file')}, {human_size(left.bytes)}){newer}"
        )


def _age(seconds: float) -> str:
    days, hours = divmod(int(seconds) // 3_600, 24)
    return plural(days, "day") if not hours else plural(days * 24 + hours, "hour")


def _backups_kept_line(kept: list[BackupFolder], backup_dir: str, *, dry_run: bool) -> str:
    """What gc leaves under .nebula-build/backup/, and how to remove it."""
    from nebula_build.engine.gc import totals

    backups = totals(kept)
    folders = plural(backups.folders, "backup folder")
    listed = "" if dry_run else " (--dry-run lists them first)"
    return (
        f"kept {folders} in {backup_dir} ({plural(backups.files, 'file')}, "
        f"{human_size(backups.bytes)}): the files apply replaced, as they were; "
        f"`nebula-build gc --backups` removes them{listed}, once you no longer need them"
    )
