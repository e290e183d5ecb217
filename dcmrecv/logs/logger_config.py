"""Reader for DCMTK's ``-lc`` logger configuration files (log4cplus property files).

DCMTK ships two examples, ``logger.cfg`` and ``filelog.cfg`` (``/etc/dcmtk/`` on
Debian); users keep their own variants of them.  This module understands the
parts those files use and the common parts of log4cplus around them:

* property syntax: ``key = value`` lines, ``#`` comments, later keys win;
* ``${name}`` expands to the property ``name`` of the same file, else to the
  environment variable, recursively; oflog predefines ``appname``, ``hostname``,
  ``pid``, ``date`` (YYYYMMDD) and ``time`` (HHMMSS); an unknown name stays as is;
* ``log4cplus.rootLogger = LEVEL, appender, ...``, ``log4cplus.logger.NAME = ...``
  (``INHERITED`` keeps the parent's level), ``log4cplus.additivity.NAME``;
* appenders ``ConsoleAppender`` (``logToStdErr``), ``FileAppender`` (``File``,
  ``Append``), ``RollingFileAppender`` (also ``MaxFileSize`` with ``KB``/``MB`` and
  ``MaxBackupIndex``), ``NullAppender``; ``Threshold``; filters
  ``LogLevelMatchFilter``, ``LogLevelRangeFilter``, ``StringMatchFilter``,
  ``DenyAllFilter``;
* layouts ``SimpleLayout`` (the default) and ``PatternLayout`` with
  ``ConversionPattern`` (see :func:`dcmrecv.logs.layout.parse_pattern`).

Keys are case-sensitive as in log4cplus: ``logToStderr`` in DCMTK's own
``logger.cfg`` is not ``logToStdErr``, so that console writes to standard output,
in DCMTK and here.

Where log4cplus prints an error and carries on with a half-working setup (or, for
a bad root level, aborts), we refuse the file with a message naming the key:
:class:`LogConfigError`, which the command line reports with exit code 1.

Logger names: oflog's root logger is our ``dcmrecv`` logger; DCMTK's own names
``dcmtk`` and ``dcmtk.apps.<appname>`` are taken to mean it too, so existing files
keep working; other names are Python logger names.

:func:`parse_log_config` is pure (text in, :class:`LogConfig` out);
:func:`read_log_config` adds the file and the predefined variables;
:func:`apply_log_config` builds Python handlers from the value.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from dcmrecv.boundedread import FileTooLarge, read_bounded
from dcmrecv.logs import layout as log_layout
from dcmrecv.logs.json_format import JsonFormatter

PREFIX = "log4cplus."
_LOG4CPLUS_NS = "log4cplus::"
#: log4cplus' RollingFileAppender defaults and its lower limit for MaxFileSize.
DEFAULT_MAX_FILE_SIZE = 10 * 1024 * 1024
MINIMUM_MAX_FILE_SIZE = 200 * 1024
#: Guard against ``a = ${a}``-style loops, which would hang log4cplus.
_MAX_EXPANSIONS = 1000


class LogConfigError(Exception):
    """A logger configuration file we cannot use; ``str()`` is the user message."""


# --- properties ---------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    value: str
    line: int


def parse_properties(text: str) -> dict[str, Property]:
    """log4cplus' property file syntax.

    Each line is trimmed at the front; empty lines and lines starting with ``#``
    are skipped; the key is what comes before the first ``=`` (trailing blanks
    removed), the value what follows (trimmed).  Lines without ``=`` are ignored.
    A key given twice keeps its last value.
    """
    props: dict[str, Property] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        props[key.rstrip()] = Property(value.strip(), number)
    return props


def expand_variables(text: str, lookup: Mapping[str, str], environ: Mapping[str, str]) -> str:
    """Expand ``${name}`` from ``lookup``, else ``environ``, as log4cplus does.

    An expansion is itself expanded (log4cplus' recursive mode).  A name with no
    value, or an empty one, is left in place; so is an unclosed ``${``.
    """
    pos = 0
    expansions = 0
    while True:
        start = text.find("${", pos)
        if start < 0:
            return text
        end = text.find("}", start)
        if end < 0:
            return text
        name = text[start + 2 : end]
        replacement = lookup.get(name, "") or environ.get(name, "")
        if not replacement:
            pos = end + 1
            continue
        expansions += 1
        if expansions > _MAX_EXPANSIONS:
            raise LogConfigError(f"the expansion of ${{{name}}} does not end")
        text = text[:start] + replacement + text[end + 1 :]
        pos = start


# --- the configuration as a value ------------------------------------------------------


@dataclass(frozen=True)
class LayoutSpec:
    #: "simple" or "pattern".
    kind: str = "simple"
    pattern: str = ""
    format_each_line: bool = True


@dataclass(frozen=True)
class FilterSpec:
    #: "level-match", "level-range", "string-match" or "deny-all".
    kind: str
    accept_on_match: bool = False
    level: int | None = None
    level_min: int | None = None
    level_max: int | None = None
    string: str = ""


@dataclass(frozen=True)
class AppenderSpec:
    name: str
    #: "console", "file", "rolling-file" or "null".
    kind: str
    layout: LayoutSpec = field(default_factory=LayoutSpec)
    threshold: int | None = None
    filters: tuple[FilterSpec, ...] = ()
    to_stderr: bool = False
    file: str = ""
    append: bool = False
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    max_backup_index: int = 1


@dataclass(frozen=True)
class LoggerSpec:
    #: Python logger name; our base logger for the root logger.
    name: str
    #: None: inherit the parent's level.
    level: int | None
    appenders: tuple[str, ...]


@dataclass(frozen=True)
class LogConfig:
    root: LoggerSpec
    loggers: tuple[LoggerSpec, ...]
    appenders: Mapping[str, AppenderSpec]
    additivity: Mapping[str, bool]


def _unknown_level(text: str) -> str:
    return f"unknown log level '{text}' (use TRACE, DEBUG, INFO, WARN, ERROR, FATAL or OFF)"


def _parse_bool(text: str) -> bool | None:
    word = text.strip().lower()
    if word in ("true", "false"):
        return word == "true"
    try:
        return int(word) != 0
    except ValueError:
        return None


def _parse_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _max_file_size(text: str) -> int:
    """``MaxFileSize``: leading digits, times 1024 for ``KB`` or 1048576 for ``MB``
    (any case), never below log4cplus' minimum of 200 KB."""
    upper = text.strip().upper()
    digits = ""
    for char in upper.lstrip("+"):
        if not char.isdigit():
            break
        digits += char
    size = int(digits) if digits else 0
    if size and len(upper) > 2 and upper.endswith("MB"):
        size *= 1024 * 1024
    elif size and len(upper) > 2 and upper.endswith("KB"):
        size *= 1024
    return max(size, MINIMUM_MAX_FILE_SIZE)


class _Reader:
    """Typed access to the ``log4cplus.`` properties, with messages naming the key."""

    def __init__(self, props: Mapping[str, Property], source: str) -> None:
        self.props = props
        self.source = source

    def error(self, key: str, message: str) -> LogConfigError:
        prop = self.props.get(key)
        where = f"{self.source}:{prop.line}" if prop else self.source
        return LogConfigError(f"{where}: {PREFIX}{key}: {message}")

    def get(self, key: str, default: str = "") -> str:
        prop = self.props.get(key)
        return prop.value if prop is not None else default

    def has(self, key: str) -> bool:
        return key in self.props

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.props:
            return default
        value = _parse_bool(self.get(key))
        if value is None:
            raise self.error(key, f"'{self.get(key)}' is not true or false")
        return value

    def integer(self, key: str, default: int) -> int:
        if key not in self.props:
            return default
        value = _parse_int(self.get(key))
        if value is None:
            raise self.error(key, f"'{self.get(key)}' is not an integer")
        return value

    def level(self, key: str, *, allow_inherit: bool = False) -> int | None:
        text = self.get(key).strip().upper()
        if allow_inherit and text in ("INHERITED", "INHERIT", "NOTSET", ""):
            return None
        value = log_layout.level_from_name(text)
        if value is None:
            raise self.error(
                key,
                f"unknown log level '{text}' (use TRACE, DEBUG, INFO, WARN, ERROR, FATAL or OFF)",
            )
        return value

    def class_name(self, key: str) -> str:
        value = self.get(key).strip()
        return value[len(_LOG4CPLUS_NS) :] if value.startswith(_LOG4CPLUS_NS) else value


def _layout(reader: _Reader, prefix: str) -> LayoutSpec:
    key = f"{prefix}layout"
    if not reader.has(key):
        return LayoutSpec()
    kind = reader.class_name(key)
    if kind == "SimpleLayout":
        return LayoutSpec()
    if kind != "PatternLayout":
        raise reader.error(key, f"layout {reader.get(key)} is not supported (use PatternLayout)")
    pattern_key = f"{key}.ConversionPattern"
    if not reader.has(pattern_key):
        pattern_key = f"{key}.Pattern"  # the older, deprecated spelling
    if not reader.has(pattern_key):
        raise reader.error(key, "PatternLayout needs a ConversionPattern")
    pattern = reader.get(pattern_key)
    try:
        log_layout.parse_pattern(pattern)
    except log_layout.PatternError as exc:
        raise reader.error(pattern_key, str(exc)) from None
    each_line = reader.boolean(f"{key}.FormatEachLine", True)
    return LayoutSpec("pattern", pattern, each_line)


def _filters(reader: _Reader, prefix: str) -> tuple[FilterSpec, ...]:
    filters: list[FilterSpec] = []
    number = 1
    while reader.has(f"{prefix}filters.{number}"):
        key = f"{prefix}filters.{number}"
        kind = reader.class_name(key)
        accept = reader.boolean(f"{key}.AcceptOnMatch", False)

        def level(name: str, key: str = key) -> int | None:
            return reader.level(f"{key}.{name}", allow_inherit=True)

        if kind == "spi::DenyAllFilter":
            filters.append(FilterSpec("deny-all"))
        elif kind == "spi::LogLevelMatchFilter":
            filters.append(FilterSpec("level-match", accept, level=level("LogLevelToMatch")))
        elif kind == "spi::LogLevelRangeFilter":
            filters.append(
                FilterSpec(
                    "level-range",
                    accept,
                    level_min=level("LogLevelMin"),
                    level_max=level("LogLevelMax"),
                )
            )
        elif kind == "spi::StringMatchFilter":
            filters.append(
                FilterSpec("string-match", accept, string=reader.get(f"{key}.StringToMatch"))
            )
        else:
            raise reader.error(key, f"filter {reader.get(key)} is not supported")
        number += 1
    return tuple(filters)


_APPENDER_KINDS = {
    "ConsoleAppender": "console",
    "FileAppender": "file",
    "RollingFileAppender": "rolling-file",
    "NullAppender": "null",
}


def _appender(reader: _Reader, name: str) -> AppenderSpec:
    key = f"appender.{name}"
    kind = _APPENDER_KINDS.get(reader.class_name(key))
    if kind is None:
        raise reader.error(
            key,
            f"appender type {reader.get(key)} is not supported (use ConsoleAppender, "
            "FileAppender, RollingFileAppender or NullAppender)",
        )
    prefix = f"{key}."
    threshold = reader.level(f"{prefix}Threshold") if reader.has(f"{prefix}Threshold") else None
    spec = AppenderSpec(
        name=name,
        kind=kind,
        layout=_layout(reader, prefix),
        threshold=threshold,
        filters=_filters(reader, prefix),
    )
    if kind == "console":
        return replace(spec, to_stderr=reader.boolean(f"{prefix}logToStdErr", False))
    if kind in ("file", "rolling-file"):
        file = reader.get(f"{prefix}File").strip()
        if not file:
            raise reader.error(key, "the appender needs a File")
        append = reader.boolean(f"{prefix}Append", kind == "rolling-file")
        spec = replace(spec, file=file, append=append)
    if kind == "rolling-file":
        size_key = f"{prefix}MaxFileSize"
        size = (
            _max_file_size(reader.get(size_key)) if reader.has(size_key) else DEFAULT_MAX_FILE_SIZE
        )
        backups = max(reader.integer(f"{prefix}MaxBackupIndex", 1), 1)
        spec = replace(spec, max_file_size=size, max_backup_index=backups)
    return spec


def _logger(reader: _Reader, key: str, name: str, appname: str, root: bool) -> LoggerSpec:
    tokens = [t for t in reader.get(key).replace(" ", "").split(",")]
    if not tokens or tokens == [""]:
        raise reader.error(key, "expected LEVEL, appender, ...")
    level_text = tokens[0].upper()
    if not root and level_text in ("INHERITED", "INHERIT", "NOTSET"):
        level = None
    else:
        level = log_layout.level_from_name(level_text)
        if level is None:
            raise reader.error(key, _unknown_level(tokens[0]))
    appenders = tuple(t for t in tokens[1:] if t)
    for appender in appenders:
        if not reader.has(f"appender.{appender}"):
            raise reader.error(key, f"appender '{appender}' is not defined")
    return LoggerSpec(python_logger_name(name, appname), level, appenders)


def python_logger_name(name: str, appname: str = "dcmrecv") -> str:
    """The Python logger a log4cplus logger name refers to.

    oflog's root and DCMTK's ``dcmtk`` and ``dcmtk.apps.<appname>`` loggers all mean
    our base logger; other names are taken as Python logger names.
    """
    if name in ("", "root", "dcmtk", f"dcmtk.apps.{appname}"):
        return log_layout.BASE_LOGGER
    return name


def parse_log_config(
    text: str,
    variables: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    source: str = "logger configuration",
    appname: str = "dcmrecv",
) -> LogConfig:
    """Parse a log4cplus property file into a :class:`LogConfig`.

    ``variables`` are the predefined ``${...}`` names; they override keys of the same
    name in the file, as oflog sets them after reading it.  ``environ`` is consulted
    for names the file does not define.  ``source`` names the file in messages.
    """
    raw = parse_properties(text)
    # The sanity checks DCMTK makes before handing the file to log4cplus (oflog.cc).
    if not raw:
        raise LogConfigError("Specified --log-config file does not contain any settings")
    if not any(key.startswith(PREFIX) for key in raw):
        raise LogConfigError("Specified --log-config file does not contain any valid settings")
    if f"{PREFIX}rootLogger" not in raw:
        raise LogConfigError("Specified --log-config file does not set up log4cplus.rootLogger")
    for name, value in (variables or {}).items():
        raw[name] = Property(value, 0)
    lookup = {key: prop.value for key, prop in raw.items()}
    env = environ if environ is not None else {}
    expanded: dict[str, Property] = {}
    for key, prop in raw.items():
        new_key = expand_variables(key, lookup, env)
        expanded[new_key] = Property(expand_variables(prop.value, lookup, env), prop.line)
    props = {k[len(PREFIX) :]: v for k, v in expanded.items() if k.startswith(PREFIX)}
    reader = _Reader(props, source)

    root = _logger(reader, "rootLogger", "", appname, root=True)
    loggers = tuple(
        _logger(reader, key, key[len("logger.") :], appname, root=False)
        for key in sorted(props)
        if key.startswith("logger.")
    )
    used = {name for spec in (root, *loggers) for name in spec.appenders}
    appenders = {name: _appender(reader, name) for name in sorted(used)}
    additivity: dict[str, bool] = {}
    for key in sorted(props):
        if key.startswith("additivity."):
            name = python_logger_name(key[len("additivity.") :], appname)
            additivity[name] = reader.boolean(key, True)
    return LogConfig(root, loggers, appenders, additivity)


def predefined_variables(appname: str, now: datetime | None = None) -> dict[str, str]:
    """oflog's predefined variables: ``appname``, ``hostname``, ``pid``, ``date``
    (YYYYMMDD) and ``time`` (HHMMSS), taken when the file is read."""
    moment = now or datetime.now()
    return {
        "appname": appname,
        "hostname": socket.gethostname().split(".")[0],
        "pid": str(os.getpid()),
        "date": moment.strftime("%Y%m%d"),
        "time": moment.strftime("%H%M%S"),
    }


def read_log_config(path: str, appname: str = "dcmrecv") -> LogConfig:
    """Read and parse the ``-lc`` file, with DCMTK's messages for a missing or
    unreadable file."""
    file = Path(path)
    if not file.exists():
        raise LogConfigError("Specified --log-config file does not exist")
    try:
        text = read_bounded(file).decode("utf-8", errors="replace")
    except FileTooLarge as exc:
        raise LogConfigError(f"Specified --log-config file is {exc}") from None
    except OSError:
        raise LogConfigError("Specified --log-config file cannot be read") from None
    return parse_log_config(text, predefined_variables(appname), os.environ, path, appname)


# --- applying the value to Python logging ------------------------------------------------


class FilterChain(logging.Filter):
    """log4cplus' filter chain: the first filter that accepts or denies decides;
    if all are neutral the record passes."""

    def __init__(self, filters: tuple[FilterSpec, ...]) -> None:
        super().__init__()
        self.filters = filters

    def filter(self, record: logging.LogRecord) -> bool:
        for spec in self.filters:
            decision = _decide(spec, record)
            if decision is not None:
                return decision
        return True


def _decide(spec: FilterSpec, record: logging.LogRecord) -> bool | None:
    level = record.levelno
    if spec.kind == "deny-all":
        return False
    if spec.kind == "level-match":
        if spec.level is None or spec.level != level:
            return None
        return spec.accept_on_match
    if spec.kind == "level-range":
        if spec.level_min is not None and level < spec.level_min:
            return False
        if spec.level_max is not None and level > spec.level_max:
            return False
        return True if spec.accept_on_match else None
    message = record.getMessage()
    if not spec.string or not message or spec.string not in message:
        return None
    return spec.accept_on_match


class RollingFileHandler(logging.handlers.RotatingFileHandler):
    """log4cplus' RollingFileAppender: the record is written first, and the file is
    rolled over (``f`` -> ``f.1`` -> ... -> ``f.N``) once it has grown past the
    limit, so no record is split across two files."""

    def shouldRollover(self, record: logging.LogRecord) -> int:
        return 0

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        try:
            if self.stream is not None and self.stream.tell() > self.maxBytes:
                self.doRollover()
        except Exception:
            self.handleError(record)


def _formatter(layout: LayoutSpec) -> logging.Formatter:
    if layout.kind == "pattern":
        return log_layout.PatternFormatter(layout.pattern, layout.format_each_line)
    return log_layout.SimpleFormatter()


def _handler(spec: AppenderSpec) -> logging.Handler:
    handler: logging.Handler
    try:
        if spec.kind == "console":
            handler = log_layout.ConsoleHandler(to_stderr=spec.to_stderr)
        elif spec.kind == "null":
            handler = logging.NullHandler()
        elif spec.kind == "file":
            handler = logging.FileHandler(
                spec.file, mode="a" if spec.append else "w", encoding="utf-8"
            )
            handler.terminator = ""
        else:
            if not spec.append:
                # Python's rotating handler always appends; log4cplus truncates here.
                Path(spec.file).write_bytes(b"")
            handler = RollingFileHandler(
                spec.file,
                mode="a" if spec.append else "w",
                maxBytes=spec.max_file_size,
                backupCount=spec.max_backup_index,
                encoding="utf-8",
            )
            handler.terminator = ""
    except OSError as exc:
        raise LogConfigError(
            f"cannot open log file {spec.file} for appender {spec.name}: {exc.strerror}"
        ) from None
    handler.setFormatter(_formatter(spec.layout))
    if spec.threshold is not None:
        handler.setLevel(spec.threshold)
    if spec.filters:
        handler.addFilter(FilterChain(spec.filters))
    return handler


def apply_log_config(config: LogConfig) -> None:
    """Install handlers and levels for ``config``.

    Handlers are created before anything is changed, so a file that cannot be opened
    leaves the previous setup in place.
    """
    handlers = {name: _handler(spec) for name, spec in config.appenders.items()}
    base = logging.getLogger(log_layout.BASE_LOGGER)
    base.propagate = False
    for spec in (config.root, *config.loggers):
        logger = logging.getLogger(spec.name)
        logger.setLevel(logging.NOTSET if spec.level is None else spec.level)
        for name in spec.appenders:
            log_layout.install_handler(logger, handlers[name])
    for name, additive in config.additivity.items():
        if name != log_layout.BASE_LOGGER:
            logging.getLogger(name).propagate = additive


def configure_logging(
    level: str, config_file: str | None, appname: str = "dcmrecv", *, json_lines: bool = False
) -> None:
    """Set up logging as DCMTK's ``OFLog::configureFromCommandLine`` does.

    Without ``config_file``: ``L: message`` lines on standard error for records at
    ``level`` (``fatal``, ``error``, ``warn``, ``info``, ``debug``, ``trace``, also
    ``off`` and ``all``) or above.  With it: the log4cplus property file decides
    everything and ``level`` is not used; ``${appname}`` in it expands to
    ``appname``.  Raises :class:`ValueError` for an unknown level and
    :class:`dcmrecv.logs.logger_config.LogConfigError` for an unusable configuration file.
    """
    if config_file is not None:
        config = read_log_config(config_file, appname)
        log_layout.uninstall()
        apply_log_config(config)
        return
    levelno = log_layout.level_from_name(level)
    if levelno is None:
        raise ValueError(f"unknown log level {level!r}")
    log_layout.uninstall()
    base = logging.getLogger(log_layout.BASE_LOGGER)
    base.setLevel(levelno)
    base.propagate = False
    handler = log_layout.ConsoleHandler(to_stderr=True)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(log_layout.PatternFormatter(log_layout.DEFAULT_PATTERN))
    log_layout.install_handler(base, handler)
