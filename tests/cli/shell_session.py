"""Type into a real interactive bash, zsh or fish, press TAB, and read back the line
the shell's completion left: what a user sees, quoting and all."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import time
from pathlib import Path

_READY = "READY"
_LINE = re.compile(r"<LINE>(.*?)</LINE>", re.S)

#: each shell's startup: the completion script, no bell, and Ctrl-X to print the line
_SETUP = {
    "bash": (
        ["bash", "--noprofile", "--rcfile", "{rc}", "-i"],
        "PS1='$ '\nbind 'set bell-style none'\nsource {script}\n"
        'bind -x \'"\\C-x": printf "<LINE>%s</LINE>" "$READLINE_LINE"\'\n'
        "echo READ''Y\n",
    ),
    "zsh": (
        ["zsh", "-i"],
        "PS1='$ '\nunsetopt beep\nautoload -U compinit && compinit -u -D\neval \"$(<{script})\"\n"
        'show-line() {{ print -rn -- "<LINE>$BUFFER</LINE>" }}\n'
        "zle -N show-line\nbindkey '^X' show-line\necho READ''Y\n",
    ),
    "fish": (
        ["fish", "--no-config", "-i", "-C", "source {rc}"],
        "function fish_prompt; echo -n '$ '; end\nsource {script}\n"
        "bind \\cx 'printf \"<LINE>%s</LINE>\" (commandline)'\necho READ''Y\n",
    ),
}


def complete_line(shell: str, script: Path, typed: str, *, cwd: Path, env: dict[str, str]) -> str:
    """The line after typing `typed` (TABs included) into `shell` with `script` loaded."""
    argv, setup = _SETUP[shell]
    rc = script.with_name(f"{script.name}.{shell}rc")
    rc.write_text(setup.format(script=script))
    if shell == "zsh":
        (rc.parent / ".zshrc").write_text(rc.read_text())
        env = {**env, "ZDOTDIR": str(rc.parent)}
    env = {**env, "TERM": "dumb", "HOME": env.get("HOME", str(cwd))}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the shell
        os.chdir(cwd)
        os.execvpe(argv[0], [a.format(rc=rc) for a in argv], env)
    try:
        _read_until(fd, _READY)
        os.write(fd, typed.encode() + b"\x18")
        return _LINE.search(_read_until(fd, "</LINE>")).group(1)  # type: ignore[union-attr]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def _read_until(fd: int, marker: str, timeout: float = 30.0) -> str:
    seen = b""
    end = time.monotonic() + timeout
    while marker.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            raise TimeoutError(f"no {marker!r} from the shell; it printed: {seen!r}")
        seen += os.read(fd, 4096)
    return seen.decode(errors="replace")
