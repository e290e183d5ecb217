"""What dcmrecv and storescp share as DCMTK-style click commands.

Both commands read their arguments with DCMTK's grammar (dcmrecv.commands.argv), not with
click's parser, and print DCMTK's identification lines and ``error:`` block.
"""

from __future__ import annotations

from typing import IO, Any, NoReturn

import click

from dcmrecv import __version__
from dcmrecv.boundedread import MAX_CONFIG_FILE_SIZE, read_bounded


def identification(appname: str) -> str:
    """Our counterpart of DCMTK's ``$dcmtk: dcmrecv v3.6.7 2022-04-22 $`` line."""
    return f"$dcmrecv: {appname} v{__version__} $"


def header(appname: str, description: str) -> str:
    """The identification lines DCMTK prints above help, version and errors."""
    return f"{identification(appname)}\n\n{appname}: {description}\n"


class DcmtkCommandLineError(click.ClickException):
    """A command line problem: DCMTK's ``error: ...`` block on stderr, exit code 1.

    In quiet mode (``-q``, or any log level above ERROR) DCMTK prints nothing for
    errors found after the logging options are evaluated; ``quiet`` does the same.
    Subclasses say which command's header goes above the message.
    """

    exit_code = 1

    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet

    def banner(self) -> str:
        raise NotImplementedError

    def show(self, file: IO[Any] | None = None) -> None:
        if not self.quiet:
            click.echo(f"{self.banner()}error: {self.message}", err=True, file=file)


class DcmtkCommand(click.Command):
    """A click command that hands its raw arguments to the DCMTK-style parser."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.params["argv"] = tuple(args)
        return []


def read_text(name: str) -> str:
    """A command line file's text (``@file``, ``--accept-calling-file``), bytes that are
    not UTF-8 kept; :class:`FileTooLarge` past :data:`MAX_CONFIG_FILE_SIZE`."""
    return read_bounded(name, MAX_CONFIG_FILE_SIZE).decode("utf-8", errors="surrogateescape")


def finish(ctx: click.Context, code: int) -> NoReturn:
    ctx.exit(code)
    raise AssertionError("unreachable")  # pragma: no cover - ctx.exit raises
