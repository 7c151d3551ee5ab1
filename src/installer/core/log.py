"""What the installer says: a rich terminal on stderr and a plain log file.

[`InstallerLogger`][installer.core.log.InstallerLogger] is the one way the program
talks to the user. The terminal gets step headers (`[7/13] torch`), short
status lines, warnings and errors; stdout is left alone so `--json` output can
be piped. The log file (under `DIR/.comfy-install/logs/`) gets everything,
timestamped, including the full output of every subprocess. Colours are off
when stderr is not a terminal or `NO_COLOR` is set.

Secrets never reach either: [`redact`][installer.core.log.redact] removes
`user:password@` from URLs, `token=`-style query values and the values of the
token environment variables (`HF_TOKEN`, `CIVITAI_TOKEN`, ...).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_TOKEN", "GITHUB_TOKEN")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@")
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:token|access_token|api_key|apikey|key|signature|sig|password)=)[^&#\s]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<key>Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def command_text(words: Sequence[str]) -> str:
    """Return ``comfy-install WORDS`` quoted for a shell, credentials replaced by ``***``.

    Args:
        words: The command's arguments after ``comfy-install`` (the user's own command line,
            or the one to suggest).
    """
    import shlex

    return redact(shlex.join(["comfy-install", *words]))


def redact(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with credentials replaced by ``***``.

    Args:
        text: Any text that may hold a URL, a header or a token.
        extra_secrets: Further literal values to hide (besides the token
            environment variables, which are always hidden).

    Returns:
        The text with `user:***@`, `token=***`, `Bearer ***` and every known
        secret value replaced.
    """
    text = _URL_USERINFO.sub(r"\g<scheme>\g<user>:***@", text)
    text = _QUERY_SECRET.sub(r"\g<key>***", text)
    text = _BEARER.sub(r"\g<key>***", text)
    secrets = [os.environ.get(name, "") for name in SECRET_ENV_VARS]
    secrets.extend(extra_secrets)
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class InstallerLogger:
    """The installer's voice: rich on stderr, plain text in the log file."""

    def __init__(
        self,
        *,
        verbosity: int = 0,
        color: bool | None = None,
        stream: TextIO | None = None,
        log_file: Path | None = None,
    ) -> None:
        """Create a logger.

        Args:
            verbosity: -1 quiet (warnings and errors only), 0 normal, 1 verbose
                (subprocess output on the terminal too).
            color: Force colours on or off; by default on for a terminal
                without `NO_COLOR`.
            stream: Where terminal output goes (default: stderr).
            log_file: A file to append the plain log to; see
                [`attach_file`][installer.core.log.InstallerLogger.attach_file].
        """
        self.verbosity = verbosity
        self._stream = stream if stream is not None else sys.stderr
        if color is None:
            color = self._stream.isatty() and "NO_COLOR" not in os.environ
        self._color = color
        self._console: Console | None = None
        self._file: TextIO | None = None
        self.log_path: Path | None = None
        self._tail: deque[str] = deque(maxlen=40)
        self.transfer_display: (
            Callable[[Sequence[Any]], contextlib.AbstractContextManager[Any]] | None
        ) = None
        """Makes the live display of downloads (given the requests) on a terminal; None shows
        nothing. The CLI sets its bars here, so the downloads below it print nothing themselves."""
        if log_file is not None:
            self.attach_file(log_file)

    @property
    def console(self) -> Console:
        """The rich console bound to the terminal stream (created on first use)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                file=self._stream,
                no_color=not self._color,
                force_terminal=self._color or None,
                highlight=False,
                soft_wrap=True,
            )
        return self._console

    @property
    def interactive(self) -> bool:
        """True when live progress displays make sense (a terminal, not quiet)."""
        return self._stream.isatty() and self.verbosity >= 0

    def activity(self, what: str) -> contextlib.AbstractContextManager[object]:
        """Show a spinner with ``what`` while a long command runs (terminal, normal verbosity).

        Args:
            what: The action, e.g. "install torch".

        Returns:
            A context manager; a no-op when output is not a terminal, or quiet, or
            verbose (the command's own output is shown then).
        """
        if not self.interactive or self.verbosity != 0:
            return contextlib.nullcontext()
        return self.console.status(f"{self._escape(what)}…", spinner="dots")

    @contextlib.contextmanager
    def live(self, what: str, every: float = 60.0) -> Iterator[Callable[[str], None]]:
        """Keep one progress line for long work; yield the function that updates it.

        On a terminal (normal verbosity) the line is redrawn in place after a spinner.
        Elsewhere (a log collector, `--verbose`, a pipe) an update is printed as a status
        line at most every ``every`` seconds; the log file gets those lines too.

        Args:
            what: The work, shown until the first update.
            every: Seconds between printed updates when the line cannot be redrawn.
        """
        if self.interactive and self.verbosity == 0:
            status = self.console.status(self._escape(what), spinner="dots")
            status.start()
            try:
                yield lambda text: status.update(self._escape(text))
            finally:
                status.stop()
            return
        last = [time.monotonic()]

        def printed(text: str) -> None:
            now = time.monotonic()
            if now - last[0] >= every:
                last[0] = now
                self.info(text)

        yield printed

    def attach_file(self, path: Path) -> None:
        """Start appending the plain log to ``path`` (its folder is created).

        Args:
            path: The log file, appended to if it exists; a file attached before is closed.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        self.close()
        self._file = path.open("a", encoding="utf-8")
        self.log_path = path

    def close(self) -> None:
        """Close the log file, if one is open."""
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                file.close()

    def _to_file(self, level: str, message: str) -> None:
        if self._file is None:
            return
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        try:
            for line in message.splitlines() or [""]:
                self._file.write(f"{stamp} {level:<5} {line}\n")
            self._file.flush()
        except OSError:
            # A full disk must not turn the message about the full disk into a traceback:
            # the terminal still gets everything.
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                file.close()

    def _print(self, markup: str, plain: str) -> None:
        if self._color:
            self.console.print(markup)
        else:
            self._stream.write(plain + "\n")
            self._stream.flush()

    @staticmethod
    def _escape(text: str) -> str:
        from rich.markup import escape

        return escape(text)

    def step(self, number: int, total: int, title: str) -> None:
        """Print a step header such as ``[7/13] torch``.

        Args:
            number: The step's number, from 1.
            total: How many steps there are (13).
            title: The step's id and title, e.g. ``gpu — record the GPU``.
        """
        text = redact(f"[{number}/{total}] {title}")
        self._to_file("STEP", text)
        if self.verbosity >= 0:
            self._print(f"[bold cyan]{self._escape(text)}[/]", text)

    def info(self, message: str) -> None:
        """Print a normal status line (hidden with ``--quiet``)."""
        message = redact(message)
        self._to_file("INFO", message)
        if self.verbosity >= 0:
            self._print(self._escape(message), message)

    def success(self, message: str) -> None:
        """Print a line that reports something finished well."""
        message = redact(message)
        self._to_file("INFO", message)
        if self.verbosity >= 0:
            self._print(f"[green]{self._escape(message)}[/]", message)

    def debug(self, message: str) -> None:
        """Write a detail to the log file; shown on the terminal with ``--verbose``."""
        message = redact(message)
        self._to_file("DEBUG", message)
        if self.verbosity >= 1:
            self._print(f"[dim]{self._escape(message)}[/]", message)

    def warn(self, message: str) -> None:
        """Print a warning (shown even with ``--quiet``)."""
        message = redact(message)
        self._to_file("WARN", message)
        self._print(f"[yellow]warning:[/] {self._escape(message)}", f"warning: {message}")

    def error(self, message: str, hint: str | None = None) -> None:
        """Print an error and, on the next line, what to do about it.

        Args:
            message: What went wrong.
            hint: What to do about it; no hint line when None.
        """
        message = redact(message)
        self._to_file("ERROR", message if not hint else f"{message}\nhint: {hint}")
        self._print(f"[bold red]error:[/] {self._escape(message)}", f"error: {message}")
        if hint:
            hint = redact(hint)
            self._print(f"[cyan]hint:[/] {self._escape(hint)}", f"hint: {hint}")

    def output(self, line: str) -> None:
        """Record one line of a subprocess's output (terminal only with ``--verbose``)."""
        line = redact(line.rstrip("\n"))
        self._tail.append(line)
        self._to_file("OUT", line)
        if self.verbosity >= 1:
            self._print(f"[dim]  {self._escape(line)}[/]", f"  {line}")

    def tail(self, lines: int = 20) -> list[str]:
        """Return the last subprocess output lines seen (for failure reports).

        Args:
            lines: How many lines at most (the logger keeps the last 40).
        """
        return list(self._tail)[-lines:]

    def clear_tail(self) -> None:
        """Forget the remembered subprocess output (called before each command)."""
        self._tail.clear()
