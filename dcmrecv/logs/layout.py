"""Log output the way DCMTK's tools write it.

DCMTK's default console output (oflog, no ``-lc``) is one line per line of a
message, ``L: text``, where ``L`` is the first letter of the level name
(``F: E: W: I: D: T:``), written to standard error; the default level is WARN,
``-v`` selects INFO, ``-d`` DEBUG, ``-q`` FATAL, ``-ll`` any level (dcmrecv.man,
"LOGGING").  Scripts grep for these prefixes, so we produce the same text.

All loggers of this project are children of the logger named ``dcmrecv`` (modules
use ``logging.getLogger(__name__)``); it plays the part of oflog's root logger and
does not hand records on to Python's root logger.

This module holds the levels, the two log4cplus layouts DCMTK users meet
(``SimpleLayout`` and ``PatternLayout``) as :class:`logging.Formatter` classes,
the console handler, and :func:`configure_logging`.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from functools import cache

#: Name of the logger all project loggers descend from.
BASE_LOGGER = "dcmrecv"

#: log4cplus' TRACE level, below DEBUG; Python has none of its own.
TRACE = 5
#: log4cplus' OFF level: above FATAL, nothing gets through.
OFF = logging.CRITICAL + 10
logging.addLevelName(TRACE, "TRACE")

#: log4cplus level names (as ``-ll`` and logger configuration files spell them, in any
#: case) and the Python levels we use for them.  ALL is an alias of TRACE in log4cplus.
LEVELS: dict[str, int] = {
    "OFF": OFF,
    "FATAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": TRACE,
    "ALL": TRACE,
}

#: DCMTK's default level when neither -q, -v, -d nor -ll is given.
DEFAULT_LEVEL = "warn"


def level_from_name(name: str) -> int | None:
    """The Python level for a log4cplus level name (case-insensitive), or None."""
    return LEVELS.get(name.strip().upper())


def level_name(levelno: int) -> str:
    """The log4cplus name of a Python level: ``WARN``, ``FATAL``, ...

    A level between two named ones takes the name of the one below it, the way the
    record would be filtered.
    """
    for name, value in (
        ("FATAL", logging.CRITICAL),
        ("ERROR", logging.ERROR),
        ("WARN", logging.WARNING),
        ("INFO", logging.INFO),
        ("DEBUG", logging.DEBUG),
    ):
        if levelno >= value:
            return name
    return "TRACE"


# --- PatternLayout --------------------------------------------------------------------


class PatternError(ValueError):
    """A ConversionPattern that log4cplus would not understand."""


@dataclass(frozen=True)
class Converter:
    """One piece of a parsed ConversionPattern.

    ``kind`` is the conversion character (``m``, ``p``, ...) or ``""`` for literal
    text; ``option`` is the ``{...}`` argument (a date format, a logger precision).
    """

    kind: str
    text: str = ""
    option: str = ""
    min_width: int = 0
    max_width: int | None = None
    left_align: bool = False


#: Conversion characters log4cplus' PatternLayout knows (see logger.cfg's list).
_CONVERSIONS = frozenset("bcdDFhHilLmMnpPrtTxX")
#: Conversions that take a ``{...}`` option.
_WITH_OPTION = frozenset("cdDX")


def parse_pattern(pattern: str) -> tuple[Converter, ...]:
    """Split a log4cplus ConversionPattern into converters.

    Syntax: ``%`` [``-``] [min width] [``.`` max width] conversion character
    [``{option}``]; ``%%`` is a percent sign; a ``%`` at the very end is literal.
    Raises :class:`PatternError` for an unknown conversion character or a missing
    ``}`` or width digit, where log4cplus would print an error and go on.
    """
    converters: list[Converter] = []
    literal: list[str] = []
    pos = 0
    length = len(pattern)
    while pos < length:
        char = pattern[pos]
        pos += 1
        if char != "%" or pos == length:
            literal.append(char)
            continue
        if pattern[pos] == "%":
            literal.append("%")
            pos += 1
            continue
        start = pos - 1
        left = False
        if pattern[pos] == "-":
            left = True
            pos += 1
        min_width = 0
        while pos < length and pattern[pos].isdigit():
            min_width = min_width * 10 + int(pattern[pos])
            pos += 1
        max_width: int | None = None
        if pos < length and pattern[pos] == ".":
            pos += 1
            if pos >= length or not pattern[pos].isdigit():
                raise PatternError(f"digit expected after '.' at position {pos} in {pattern!r}")
            max_width = 0
            while pos < length and pattern[pos].isdigit():
                max_width = max_width * 10 + int(pattern[pos])
                pos += 1
        if pos >= length:
            raise PatternError(f"incomplete conversion at position {start} in {pattern!r}")
        kind = pattern[pos]
        pos += 1
        if kind not in _CONVERSIONS:
            raise PatternError(f"unknown conversion character %{kind} in {pattern!r}")
        option = ""
        if kind in _WITH_OPTION and pos < length and pattern[pos] == "{":
            end = pattern.find("}", pos)
            if end < 0:
                raise PatternError(f"no matching '}}' in {pattern!r}")
            option = pattern[pos + 1 : end]
            pos = end + 1
        if literal:
            converters.append(Converter("", text="".join(literal)))
            literal.clear()
        converters.append(Converter(kind, "", option, min_width, max_width, left))
    if literal:
        converters.append(Converter("", text="".join(literal)))
    return tuple(converters)


def format_date(fmt: str, timestamp: float, utc: bool) -> str:
    """``%D{fmt}``/``%d{fmt}``: strftime plus log4cplus' ``%q`` (milliseconds, three
    digits), ``%Q`` (milliseconds with three decimals) and ``%s`` (epoch seconds)."""
    seconds = int(timestamp)
    micros = round((timestamp - seconds) * 1_000_000)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    out: list[str] = []
    percent = False
    for char in fmt:
        if not percent:
            if char == "%":
                percent = True
            else:
                out.append(char)
            continue
        percent = False
        if char == "q":
            out.append(f"{micros // 1000:03d}")
        elif char == "Q":
            out.append(f"{micros // 1000:03d}.{micros % 1000:03d}")
        elif char == "s":
            out.append(str(seconds))
        else:
            out.append("%" + char)
    if percent:
        out.append("%")
    struct = time.gmtime(seconds) if utc else time.localtime(seconds)
    return time.strftime("".join(out), struct)


@cache
def _hostname(fqdn: bool) -> str:
    return socket.getfqdn() if fqdn else socket.gethostname().split(".")[0]


def _logger_name(name: str, precision: str) -> str:
    """``%c{n}``: the last ``n`` dot-separated parts of the logger name."""
    try:
        count = int(precision) if precision else 0
    except ValueError:
        count = 0
    if count <= 0:
        return name
    return ".".join(name.split(".")[-count:])


def _convert(conv: Converter, record: logging.LogRecord, message: str) -> str:
    kind = conv.kind
    value: str
    if kind == "m":
        value = message
    elif kind == "n":
        value = "\n"
    elif kind == "p":
        value = level_name(record.levelno)
    elif kind == "P":
        value = level_name(record.levelno)[0]
    elif kind == "c":
        value = _logger_name(record.name, conv.option)
    elif kind in "dD":
        value = format_date(conv.option or "%Y-%m-%d %H:%M:%S", record.created, kind == "d")
    elif kind == "i":
        value = str(record.process if record.process is not None else os.getpid())
    elif kind == "t":
        value = str(record.thread)
    elif kind == "T":
        value = str(record.threadName)
    elif kind == "r":
        value = str(int(record.relativeCreated))
    elif kind in "hH":
        value = _hostname(kind == "H")
    elif kind == "F":
        value = record.pathname
    elif kind == "b":
        value = record.filename
    elif kind == "L":
        value = str(record.lineno)
    elif kind == "l":
        value = f"{record.pathname}:{record.lineno}"
    elif kind == "M":
        value = record.funcName or ""
    else:  # x (NDC) and X (MDC): Python logging has neither, log4cplus prints "" when unset
        value = ""
    if conv.max_width is not None and len(value) > conv.max_width:
        value = value[len(value) - conv.max_width :]
    if len(value) < conv.min_width:
        value = value.ljust(conv.min_width) if conv.left_align else value.rjust(conv.min_width)
    return value


def _message_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.exc_info:
        message = f"{message}\n{formatter.formatException(record.exc_info)}"
    if record.stack_info:
        message = f"{message}\n{formatter.formatStack(record.stack_info)}"
    return message


class PatternFormatter(logging.Formatter):
    """log4cplus' PatternLayout.

    With ``format_each_line`` (log4cplus' default, ``FormatEachLine``) a message of
    several lines is formatted line by line, so each line gets its own prefix; this is
    why DCMTK prints ``I: `` alone for the empty last line of some messages.
    """

    def __init__(self, pattern: str, format_each_line: bool = True) -> None:
        super().__init__()
        self.pattern = pattern
        self.converters = parse_pattern(pattern)
        self.format_each_line = format_each_line

    def format(self, record: logging.LogRecord) -> str:
        message = _message_text(self, record)
        lines = message.split("\n") if self.format_each_line else [message]
        return "".join(self._format_line(record, line) for line in lines)

    def _format_line(self, record: logging.LogRecord, line: str) -> str:
        return "".join(
            conv.text if not conv.kind else _convert(conv, record, line) for conv in self.converters
        )


class SimpleFormatter(logging.Formatter):
    """log4cplus' SimpleLayout, ``LEVEL - message``: the layout of an appender that
    names none."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{level_name(record.levelno)} - {_message_text(self, record)}\n"


#: DCMTK's console pattern when no ``-lc`` is given (oflog.cc).
DEFAULT_PATTERN = "%P: %m%n"


class ConsoleHandler(logging.Handler):
    """log4cplus' ConsoleAppender: standard output, or standard error.

    The stream is looked up at every record, so a replaced ``sys.stderr`` (a test
    runner capturing output) receives the records.  Formatters end records with
    their own line break (``%n``), so nothing is appended.
    """

    def __init__(self, to_stderr: bool, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.to_stderr = to_stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            stream = sys.stderr if self.to_stderr else sys.stdout
            stream.write(text)
            stream.flush()
        except Exception:
            self.handleError(record)


# --- configuration ---------------------------------------------------------------------

#: Handlers we installed, so that configuring again replaces them.
_installed: list[tuple[logging.Logger, logging.Handler]] = []


def uninstall() -> None:
    while _installed:
        logger, handler = _installed.pop()
        logger.removeHandler(handler)
        handler.close()


def install_handler(logger: logging.Logger, handler: logging.Handler) -> None:
    """Attach ``handler`` to ``logger`` and remember it for the next reconfiguration."""
    logger.addHandler(handler)
    _installed.append((logger, handler))


def reset_logging() -> None:
    """Remove what :func:`configure_logging` installed (for tests)."""
    uninstall()
    base = logging.getLogger(BASE_LOGGER)
    base.setLevel(logging.NOTSET)
    base.propagate = True


def log_forced(logger: logging.Logger, levelno: int, message: str) -> None:
    """Log ``message`` whatever the logger's level (log4cplus' ``forcedLog``).

    DCMTK prints ``--arguments`` output this way, so it shows even with ``-q``; the
    handlers' own thresholds still apply.
    """
    record = logger.makeRecord(logger.name, levelno, "(forced)", 0, message, (), None)
    logger.handle(record)


def effective_level() -> int:
    """The level of the project's base logger after configuration."""
    return logging.getLogger(BASE_LOGGER).getEffectiveLevel()


__all__ = [
    "BASE_LOGGER",
    "DEFAULT_LEVEL",
    "DEFAULT_PATTERN",
    "LEVELS",
    "OFF",
    "TRACE",
    "ConsoleHandler",
    "PatternError",
    "PatternFormatter",
    "SimpleFormatter",
    "effective_level",
    "format_date",
    "install_handler",
    "level_from_name",
    "level_name",
    "log_forced",
    "parse_pattern",
    "reset_logging",
]
