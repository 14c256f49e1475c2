"""The command line: parse arguments, run a command, map errors to exit codes.

`main(argv) -> int` is callable in process; it is the only place that prints
errors or decides an exit code.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import importlib
import os
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast

from nebula_build import __version__
from nebula_build.cli.context import Context, ExitCode
from nebula_build.cli.helptext import FIRST_STEPS, describe_all
from nebula_build.cli.stray import command_stdout, held_stdout, stray_output_to

if TYPE_CHECKING:
    from decimal import Decimal

__all__ = ["ExitCode", "main", "main_exit"]


def _target_flag(parser: argparse.ArgumentParser, *, atlases: bool = True) -> None:
    held = " and the atlases that hold it" if atlases else ""
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help=f"only this image{held} (repeatable)",
    )


def _targets(parser: argparse.ArgumentParser) -> None:
    _target_flag(parser)
    parser.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="NAME",
        help="regenerate this image even if unchanged: a new draw (repeatable)",
    )
    parser.add_argument(
        "--more",
        action="append",
        default=[],
        metavar="NAME",
        help="one more candidate draw of this image, keeping the others (repeatable)",
    )
    parser.add_argument(
        "--backend",
        type=_backend_name,
        metavar="NAME",
        help="run every image through this backend (e.g. preview)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite files changed by hand (a backup is kept)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--offline", action="store_true", help="leave the remote cache alone ([cache] remote)"
    )


def _markdown_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--markdown",
        type=_file_name,
        metavar="FILE",
        help="also write the plan as Markdown to FILE (from -C DIR), for a pull or merge "
        "request comment",
    )
    parser.add_argument(
        "--markdown-limit",
        type=_markdown_limit,
        metavar="CHARS",
        help="at most CHARS characters in that file (default 65000: a GitHub comment, "
        "with room for a line of yours)",
    )


def _file_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a file")
    return text


def _folder_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder")
    return text


def _backend_name(text: str) -> str:
    """A backend's name; an empty one (`--backend "$UNSET"`) is not taken for none."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a backend")
    return text


def _markdown_limit(text: str) -> int:
    from nebula_build.cli.markdownfile import LEAST_LIMIT

    value = int(text)
    if value < LEAST_LIMIT:
        raise argparse.ArgumentTypeError(f"must be at least {LEAST_LIMIT}")
    return value


def _lock_timeout_flag(
    parser: argparse.ArgumentParser, help: str = "wait this long for a running apply"
) -> None:
    parser.add_argument("--lock-timeout", type=_seconds, default=0.0, metavar="SECONDS", help=help)


def _whole(text: str) -> int:
    """A whole number; argparse's own error names the function (`invalid _count value`)."""
    try:
        if not text.strip().lstrip("+-").isascii():  # int() takes "٣" for 3
            raise ValueError(text)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _port(text: str) -> int:
    value = _whole(text)
    if not 0 <= value <= 65535:  # 0: any free port
        raise argparse.ArgumentTypeError(f"not a port (0-65535): {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _count(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def _age(text: str) -> float:
    """Seconds, from days or hours: `30d`, `12h`."""
    unit = {"d": 86_400, "h": 3_600}.get(text[-1:])
    number = text[:-1]
    if unit is None or not number.isascii() or not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is no age: give days or hours, like 30d or 12h")
    return int(number) * unit


def _amount(text: str) -> Decimal:
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text.strip().removeprefix("$").replace(",", ""))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError("must be an amount of zero or more")
    return value


def _budget_flags(parser: argparse.ArgumentParser, refuse: str) -> None:
    parser.add_argument(
        "--max-generations",
        type=_count,
        metavar="N",
        help=f"{refuse} if it would make more than N generations (each candidate draw is one)",
    )
    parser.add_argument(
        "--max-cost",
        type=_amount,
        metavar="AMOUNT",
        help=f"{refuse} if the estimated cost (USD) is over AMOUNT, or unknown",
    )


def _add_live_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = sub.add_parser("watch", help="apply, then apply again on every save")
    watch.add_argument("--once", action="store_true", help="run a single round and exit")
    watch.add_argument(
        "--serve",
        nargs="?",
        type=_port,
        const=8765,
        default=None,
        metavar="PORT",
        help="serve the live gallery (default port 8765)",
    )
    watch.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only)",
    )
    _target_flag(watch)
    watch.add_argument(
        "--backend", type=_backend_name, metavar="NAME", help="run every image through NAME"
    )
    watch.add_argument(
        "--parallelism",
        type=_positive_int,
        metavar="N",
        help="at most N generations at once per backend",
    )
    watch.add_argument(
        "--force", action="store_true", help="overwrite files changed by hand (a backup is kept)"
    )
    watch.add_argument(
        "--offline", action="store_true", help="leave the remote cache alone ([cache] remote)"
    )
    _budget_flags(watch, "skip a round, until the next save,")
    _lock_timeout_flag(watch)
    watch.set_defaults(run="live:cmd_watch")

    gallery = sub.add_parser("gallery", help="write an HTML contact sheet of every image")
    gallery.add_argument(
        "--out",
        type=_folder_name,
        metavar="DIR",
        help="folder for index.html (default .nebula-build/gallery)",
    )
    _target_flag(gallery, atlases=False)
    gallery.add_argument(
        "--backend", type=_backend_name, metavar="NAME", help="as if run through NAME"
    )
    gallery.set_defaults(run="live:cmd_gallery")


def _add_cache_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = sub.add_parser("cache", help="share generations through the remote cache")
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    for name, text in (
        ("push", "upload the project's generations the remote cache lacks"),
        ("pull", "download the generations the manifest needs from the remote cache"),
        ("status", "how many of the manifest's generations each cache holds"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--json", action="store_true", help="machine-readable output")
        action.set_defaults(run=f"cache:cmd_{name}")


def _add_pick_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pick = sub.add_parser(
        "pick", help="make another candidate draw, or an earlier generation, an image's output"
    )
    pick.add_argument("name", metavar="NAME", help="the image")
    pick.add_argument(
        "index",
        nargs="?",
        metavar="INDEX|@K",
        help="the draw (0 first), or @K: the K-th earlier generation (`history NAME`)",
    )
    step = pick.add_mutually_exclusive_group()
    step.add_argument(
        "--next",
        action="store_true",
        help="the draw after the picked one (after the last, the first)",
    )
    step.add_argument(
        "--prev",
        action="store_true",
        help="the draw before the picked one (before the first, the last)",
    )
    step.add_argument("--unpin", action="store_true", help="end a pin: the manifest decides again")
    pick.add_argument(
        "--pin",
        action="store_true",
        help="with @K: make it the output even though the manifest now declares another spec",
    )
    pick.add_argument(
        "--force", action="store_true", help="replace an output changed by hand (a backup is kept)"
    )
    _lock_timeout_flag(pick)
    pick.set_defaults(run="pick:cmd_pick")

    accept = sub.add_parser(
        "accept", help="keep an output you edited by hand: images.lock records it as it is"
    )
    accept.add_argument(
        "names", nargs="*", metavar="NAME", help="the images (NAME[*]: every image of a set)"
    )
    accept.add_argument(
        "--all", action="store_true", help="every image whose output file is changed by hand"
    )
    _lock_timeout_flag(accept)
    accept.set_defaults(run="accept:cmd_accept")

    history = sub.add_parser(
        "history", help="an image's earlier generations, the last one replaced first"
    )
    history.add_argument("name", metavar="NAME", help="the image")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    history.set_defaults(run="pick:cmd_history")


def _add_gc_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gc = sub.add_parser("gc", help="remove cache entries nothing refers to")
    gc.add_argument("--dry-run", action="store_true", help="only list what would go")
    gc.add_argument("--json", action="store_true", help="machine-readable output")
    gc.add_argument(
        "--backups",
        action="store_true",
        help="also remove the folders of .nebula-build/backup/ (the files apply replaced, "
        "as they were): see them first with --dry-run",
    )
    gc.add_argument(
        "--older-than",
        type=_age,
        metavar="AGE",
        help="with --backups: only the folders of runs more than AGE ago (30d, 12h)",
    )
    _lock_timeout_flag(gc)
    gc.set_defaults(run="build:cmd_gc")


def _add_completion_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    completion = sub.add_parser("completion", help="print the shell completion script")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"), help="your shell")
    completion.set_defaults(run="completion:cmd_completion")


def _add_help_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    helper = sub.add_parser("help", help="the help of nebula-build, or of a command")
    helper.add_argument(
        "topic", nargs="*", metavar="COMMAND", help="a command, and an action of it (cache push)"
    )
    helper.set_defaults(run="usage:cmd_help")


def _add_plan_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = sub.add_parser("plan", help="show what apply would change, and why")
    _targets(plan)
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 0 when there are none, 1 on a conflict",
    )
    plan.add_argument(
        "--out",
        type=_file_name,
        metavar="FILE",
        help="also save the plan to FILE (from -C DIR), for `apply --plan FILE` to carry out "
        "exactly",
    )
    _markdown_flags(plan)
    plan.set_defaults(run="build:cmd_plan")


def _add_status_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser("status", help="each image: up to date, pending or conflict")
    _target_flag(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--backend", type=_backend_name, metavar="NAME", help="as if run through this backend"
    )
    status.add_argument(
        "--offline", action="store_true", help="leave the remote cache alone ([cache] remote)"
    )
    status.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when all is up to date, 2 when changes are pending, "
        "1 on a conflict or an image whose last apply failed",
    )
    status.set_defaults(run="build:cmd_status")


class _Parser(argparse.ArgumentParser):
    """argparse, with "did you mean" for a mistyped command or choice (Python 3.14's
    `suggest_on_error`, for the versions before it), and for an option before the
    command that is not nebula-build's own (`-c DIR`)."""

    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        if self.argv:  # the top level: argparse took the word after `-c` for the command
            from nebula_build.cli.usage import unknown_global

            message = unknown_global(self.argv, self) or message
        from nebula_build.text import escaped  # a word of argv may hold escape sequences

        # the mistake first, as uv and ruff say it, not after the whole usage
        commands = any(isinstance(a, argparse._SubParsersAction) for a in self._actions)
        lists = "its commands and options" if commands else "its options"
        said = f"{self.prog}: error: {escaped(message)}"
        self.exit(2, f"{said}\n  (`{self.prog} --help` lists {lists})\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            from nebula_build.errors import suggestion  # only when there is a mistake

            hint = suggestion(str(value), [str(choice) for choice in choices])
            if hint:
                raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint}")
        super()._check_value(action, value)


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The parser of the command `args` are for (of its ACTION, under `cache`)."""
    for dest in ("command", "cache_command"):
        commands = next(
            (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        name = getattr(args, dest, None)
        if commands is None or name not in commands.choices:
            break
        parser = commands.choices[name]
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(
        prog="nebula-build",
        description="Generated images as declared infrastructure: images.toml -> plan -> apply.",
        epilog=FIRST_STEPS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nebula-build {__version__}")
    parser.add_argument(
        "-C", dest="directory", type=_folder_name, metavar="DIR", help="run as if started in DIR"
    )
    parser.add_argument(
        "-f",
        dest="file",
        type=_file_name,
        metavar="FILE",
        help="the manifest (default: images.toml here or in a parent folder)",
    )
    # no command: the help, which lists them (see _main)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = sub.add_parser("init", help="write a starter images.toml")
    init.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    init.set_defaults(run="info:cmd_init")

    images = sub.add_parser("list", help="the images the manifest declares, one per line")
    images.add_argument(
        "patterns",
        nargs="*",
        metavar="NAME",
        help="only these: an image, a declaration, or a pattern such as 'enemy[*,idle]'",
    )
    images.add_argument("--json", action="store_true", help="machine-readable output")
    images.set_defaults(run="info:cmd_list")

    validate = sub.add_parser("validate", help="check the manifest, generate nothing")
    validate.add_argument(
        "--backend", type=_backend_name, metavar="NAME", help="validate against this backend"
    )
    validate.add_argument("--json", action="store_true", help="machine-readable output")
    validate.set_defaults(run="build:cmd_validate")

    _add_plan_command(sub)

    apply = sub.add_parser("apply", help="generate what changed and update images.lock")
    _targets(apply)
    apply.add_argument(
        "--parallelism",
        type=_positive_int,
        metavar="N",
        help="at most N generations at once per backend",
    )
    apply.add_argument(
        "--locked",
        action="store_true",
        help="generate nothing; exit 2 if anything would need generating",
    )
    _budget_flags(apply, "refuse to start")
    apply.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask before generating on a paid backend (never asked off a terminal)",
    )
    apply.add_argument(
        "--plan",
        type=_file_name,
        metavar="FILE",
        help="apply only if the plan is still the one `plan --out FILE` saved (from -C DIR), "
        "with the same options; else generate nothing",
    )
    _lock_timeout_flag(apply, help="wait this long for another apply to finish")
    apply.add_argument("-q", "--quiet", action="store_true", help="no line per image")
    _markdown_flags(apply)
    apply.set_defaults(run="build:cmd_apply")

    _add_status_command(sub)

    models = sub.add_parser("models", help="which model takes which parameter, per backend")
    models.add_argument("--backend", type=_backend_name, metavar="NAME", help="only this backend")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument(
        "--remote",
        action="store_true",
        help="ask the Nebula API for its model list (ids, type, price)",
    )
    models.set_defaults(run="info:cmd_models")

    _add_live_commands(sub)

    inspect = sub.add_parser("inspect", help="show the generation metadata a file carries")
    inspect.add_argument("file", metavar="FILE", help="a PNG, JPEG, WebP or AVIF image")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run="info:cmd_inspect")

    schema = sub.add_parser("schema", help="print the JSON Schema of images.toml")
    schema.add_argument(
        "--assets", action="store_true", help="the schema of the asset manifest instead"
    )
    schema.set_defaults(run="info:cmd_schema")

    _add_cache_commands(sub)

    _add_pick_command(sub)

    _add_gc_command(sub)
    _add_completion_command(sub)
    _add_help_command(sub)
    describe_all(sub)
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the CLI; returns the exit code instead of exiting."""
    # on the process's stdout, what a subprocess writes to descriptor 1 goes to stderr
    with command_stdout(out) as stdout:
        if err is None and sys.stderr is None:  # closed as the process started (`2>&-`)
            from pathlib import Path

            with Path(os.devnull).open("w", encoding="utf-8") as nowhere:
                return _main_on(argv, stdout, nowhere)
        return _main_on(argv, stdout, err or sys.stderr)


def _main_on(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> int:
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return _main(argv, out, err)
    # The runner obeys workflow commands in a step's output, whoever wrote them.
    from nebula_build.cli.runnerpipe import descriptors_through_runner_log
    from nebula_build.ui.runnerlog import RunnerLog

    logs = [s if isinstance(s, RunnerLog) else RunnerLog(s) for s in (out, err)]
    try:
        with descriptors_through_runner_log():  # a subprocess's output, C code's
            return _main(argv, cast(TextIO, logs[0]), cast(TextIO, logs[1]))
    finally:
        for log in logs:
            log.finish()


def _main(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> int:
    parser = cast(_Parser, build_parser())
    words = parser.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extras = parser.parse_known_args(words)
        command = _command_parser(parser, args)
        if extras:  # said with the command's usage, not the top level's
            from nebula_build.cli.usage import unrecognized

            command.error(unrecognized(words, extras, parser, command))
    except SystemExit as exc:  # --help (0), or a usage error: argparse says 2, we say 1
        code = int(exc.code or 0)
        return ExitCode.ERROR if code == 2 else code
    if not hasattr(args, "run"):  # `nebula-build`, `nebula-build cache`: what to type next
        out.write(command.format_help())  # to read through a pager, as git's; still exit 1
        return ExitCode.ERROR
    ctx = Context(args, out, err)
    previous = _stops_as_sigint()
    try:
        # what a plugin or a library prints goes to stderr; ctx.out holds the real stdout
        with stray_output_to(err):
            return _run(ctx)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(ctx: Context) -> int:
    """The command, and its exit code; the error it ends with said (while the secrets
    its backends named are known, to be taken out of a traceback)."""
    try:
        return int(_command(ctx.args.run)(ctx))
    except KeyboardInterrupt:
        ctx.err.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as exc:
        # The errors module is imported only when there is an error to show: a no-op
        # plan is answered without it.
        from nebula_build.errors import NebulaBuildError

        if not isinstance(exc, NebulaBuildError):
            raise
        from nebula_build.cli.errorreport import report_error

        report_error(exc, ctx)
        return ExitCode.ERROR
    finally:
        ctx.say_left_out()  # the plugins left out as broken that no error named
        ctx.close()


def _stops_as_sigint() -> dict[int, Any]:
    """Make SIGTERM (CI cancelling a job, `docker stop`) and SIGHUP (the terminal
    closed, watch's usual end) stop a command the way Ctrl-C does: finish the writes
    under way, fold the journal, exit 130. Returns the handlers to restore: none where
    nothing was installed (not the main thread, or the signal ignored by whoever
    started us, as `nohup` does)."""
    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            handler = signal.getsignal(signum)
            if handler is None or handler is signal.SIG_IGN:  # None: set outside Python
                continue
            signal.signal(signum, _on_sighup if signum == signal.SIGHUP else _on_sigterm)
        except ValueError:  # signals can only be handled in the main thread
            break
        previous[signum] = handler
    return previous


def _on_sighup(signum: int, frame: FrameType | None) -> None:
    """The terminal closed: what is printed to it from now on has nowhere to go, and
    must not fail the writes that finish on the way out."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2, *held_stdout()):
        with contextlib.suppress(OSError):
            if stat.S_ISCHR(os.fstat(fd).st_mode):  # a terminal: hung up, isatty says no
                os.dup2(devnull, fd)
    os.close(devnull)
    _on_sigterm(signum, frame)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Do what SIGINT would do now: asyncio.run's handler cancels the running round (its
    writes finish, the lock is folded), Python's raises KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored or left to the system: still stop, through the same path
        raise KeyboardInterrupt


def _command(name: str) -> Callable[[Context], int]:
    """A command by "module:function" within this package, imported when it runs."""
    module, _, function = name.partition(":")
    command: Callable[[Context], int] = getattr(
        importlib.import_module(f"{__name__}.{module}"), function
    )
    return command


def main_exit() -> None:
    """Console-script entry point."""
    if os.environ.get("GITHUB_ACTIONS") == "true":  # a traceback or a warning too
        from nebula_build.ui.runnerlog import guard_process_streams

        guard_process_streams()
    code = main()
    # the command is over: another Ctrl-C (or a first one now) cuts the wait for the
    # writes still finishing short, with no traceback from wherever it waited
    with contextlib.suppress(ValueError):  # not the main thread
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # `cmd &` in a script
            signal.signal(signal.SIGINT, functools.partial(_exit_at_once, code))
    _exit_past_plugin_threads(code)
    sys.exit(code)


def _exit_at_once(code: int, signum: int, frame: FrameType | None) -> None:
    """Ctrl-C once the command is over: what it printed is flushed, and the process
    ends with the command's code, or as interrupted (130) where it had succeeded: a
    file write it left may not have finished (the next run tidies its temp file)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 130)


def _exit_past_plugin_threads(code: int) -> None:
    """Where a daemon thread still runs (a plugin's hook left past its timeout, or a
    thread a plugin started), end the process once the exit handlers have run and the
    output is flushed, without the interpreter's shutdown: a thread writing to a stream
    while the interpreter tears down can crash it (exit 139, not the command's code)."""
    threading = sys.modules.get("threading")  # not imported: no thread was started
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if threading is None or run_exit_handlers is None:
        return
    abandoned = _abandoned_plugin_threads()
    if not abandoned and not any(t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    run_exit_handlers()  # the lock's snapshot still due, the Actions log's closing
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os._exit(code)


def _abandoned_plugin_threads() -> list[Any]:
    """The threads a command left in `asyncio.to_thread` running a plugin's code alone
    (a request it makes with a blocking client, one its timeout gave up on), once those
    running ours have finished: the process does not wait for them."""
    eventloop = sys.modules.get("nebula_build.cli.eventloop")  # no event loop ran
    if eventloop is None:
        return []
    abandoned: list[Any] = eventloop.abandoned_threads()
    for thread in abandoned:
        while eventloop.still_ours(thread):
            thread.join(0.05)
    return [thread for thread in abandoned if thread.is_alive()]
