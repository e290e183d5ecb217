"""DCMTK-style log output and ``-lc`` logger configuration files (log4cplus properties)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest

from dcmrecv.logs.layout import (
    TRACE,
    PatternFormatter,
    SimpleFormatter,
    format_date,
    log_forced,
    parse_pattern,
)
from dcmrecv.logs.logger_config import (
    LogConfigError,
    apply_log_config,
    configure_logging,
    expand_variables,
    parse_log_config,
    parse_properties,
    read_log_config,
)
from tests.conftest import IN_CI

pytestmark = pytest.mark.usefixtures("fresh_logging")


def dcmtk_example(name: str, tmp_path: Path) -> Path:
    """A copy of one of DCMTK's example logger configurations (Debian: /etc/dcmtk)."""
    source = Path("/etc/dcmtk") / name
    if not source.exists():
        message = f"{source} not found: install Debian's dcmtk package"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    copy = tmp_path / name
    shutil.copyfile(source, copy)
    return copy


def record(
    message: str, level: int = logging.INFO, name: str = "dcmrecv.wire.server", created: float = 0.0
) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 42, message, (), None, func="handler")
    if created:
        rec.created = created
    return rec


# --- default console output ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "shown", "hidden"),
    [
        ("warn", ["W", "E", "F"], ["I", "D", "T"]),
        ("info", ["I", "W"], ["D"]),
        ("debug", ["D", "I"], ["T"]),
        ("trace", ["T", "D"], []),
        ("fatal", ["F"], ["E", "W"]),
        ("off", [], ["F"]),
    ],
)
def test_console_prefixes_and_levels(
    capsys: pytest.CaptureFixture[str], level: str, shown: list[str], hidden: list[str]
) -> None:
    configure_logging(level, None)
    logger = logging.getLogger("dcmrecv.wire.association")
    levels = {
        "T": TRACE,
        "D": logging.DEBUG,
        "I": logging.INFO,
        "W": logging.WARNING,
        "E": logging.ERROR,
        "F": logging.CRITICAL,
    }
    for letter, value in levels.items():
        logger.log(value, "message %s", letter)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    for letter in shown:
        assert f"{letter}: message {letter}" in lines
    for letter in hidden:
        assert f"{letter}: message {letter}" not in lines


def test_each_line_of_a_message_gets_the_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", None)
    logging.getLogger("dcmrecv.x").info("first\nsecond\n")
    assert capsys.readouterr().err == "I: first\nI: second\nI: \n"


def test_forced_log_ignores_the_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("fatal", None)
    base = logging.getLogger("dcmrecv")
    base.info("not shown")
    log_forced(base, logging.INFO, "shown")
    assert capsys.readouterr().err == "I: shown\n"


def test_reconfiguring_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", None)
    configure_logging("info", None)
    logging.getLogger("dcmrecv").warning("once")
    assert capsys.readouterr().err == "W: once\n"


# --- PatternLayout ----------------------------------------------------------------------------


def test_pattern_padding_and_level_names() -> None:
    formatter = PatternFormatter("[%p|%5p|%-5p|%P] %m%n")
    assert formatter.format(record("hi", logging.WARNING)) == "[WARN| WARN|WARN |W] hi\n"
    assert formatter.format(record("hi", logging.CRITICAL)) == "[FATAL|FATAL|FATAL|F] hi\n"


def test_pattern_logger_name_and_precision() -> None:
    formatter = PatternFormatter("%c %c{1} %c{2} %-8c{1}|")
    assert formatter.format(record("x", name="dcmrecv.wire.server")) == (
        "dcmrecv.wire.server server wire.server server  |"
    )


def test_pattern_max_width_keeps_the_end() -> None:
    # log4cplus truncates from the left
    assert PatternFormatter("%.3m").format(record("abcdef")) == "def"


def test_pattern_literals_and_percent() -> None:
    formatter = PatternFormatter("100%% %m %")
    assert formatter.format(record("done")) == "100% done %"


def test_pattern_location_and_process() -> None:
    rec = record("x")
    text = PatternFormatter("%b:%L %M %i").format(rec)
    assert text == f"{Path(__file__).name}:42 handler {rec.process}"


def test_pattern_dates() -> None:
    stamp = 1_700_000_000.0 + 0.123456
    rec = record("x", created=stamp)
    local = PatternFormatter("%D{%Y-%m-%d %H:%M:%S.%q}").format(rec)
    assert local == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) + ".123"
    utc = PatternFormatter("%d{%H:%M:%S %Q}").format(rec)
    assert utc == time.strftime("%H:%M:%S", time.gmtime(stamp)) + " 123.456"
    default = PatternFormatter("%D").format(rec)
    assert default == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def test_date_milliseconds_are_zero_padded() -> None:
    assert format_date("%q|%Q|%%q", 10.007001, utc=True) == "007|007.001|%q"


@pytest.mark.parametrize("pattern", ["%z", "%5", "%.x", "%c{1"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(ValueError):
        parse_pattern(pattern)


def test_simple_layout() -> None:
    assert SimpleFormatter().format(record("a\nb", logging.ERROR)) == "ERROR - a\nb\n"


# --- property files ----------------------------------------------------------------------------


def test_properties_syntax() -> None:
    props = parse_properties(
        "# comment\n  key.one = value one  \r\nno equals sign\nkey.two=a=b\n"
        "   # indented comment\nkey.one = again\n=empty key\n"
    )
    assert {k: p.value for k, p in props.items()} == {
        "key.one": "again",
        "key.two": "a=b",
        "": "empty key",
    }
    assert props["key.one"].line == 6


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${appname}.log", "dcmrecv.log"),
        ("${USER}", "alice"),
        ("${shadow}", "from file"),
        ("${nested}", "dcmrecv-alice"),
        ("${unknown}/x", "${unknown}/x"),
        ("${empty}", "from env"),
        ("${unclosed", "${unclosed"),
        ("a${appname}b${appname}c", "adcmrecvbdcmrecvc"),
    ],
)
def test_variable_expansion(text: str, expected: str) -> None:
    lookup = {
        "appname": "dcmrecv",
        "shadow": "from file",
        "nested": "${appname}-${USER}",
        "empty": "",
    }
    environ = {"USER": "alice", "shadow": "from env", "empty": "from env"}
    assert expand_variables(text, lookup, environ) == expected


def test_variable_loop_is_an_error() -> None:
    with pytest.raises(LogConfigError, match="does not end"):
        expand_variables("${a}", {"a": "x${a}"}, {})


# --- DCMTK's example files ---------------------------------------------------------------------


def test_dcmtk_logger_cfg(tmp_path: Path) -> None:
    config = read_log_config(str(dcmtk_example("logger.cfg", tmp_path)), "dcmrecv")
    assert config.root.name == "dcmrecv"
    assert config.root.level == logging.DEBUG
    assert config.root.appenders == ("console", "logfile")
    console = config.appenders["console"]
    assert console.kind == "console"
    assert console.threshold == logging.INFO
    # The file says "logToStderr"; log4cplus' key is "logToStdErr" (keys are
    # case-sensitive), so DCMTK writes this console to standard output.
    assert console.to_stderr is False
    assert console.layout.pattern == "%D{%H:%M:%S} %5p: %m%n"
    logfile = config.appenders["logfile"]
    assert (logfile.kind, logfile.file, logfile.append) == ("file", "dcmrecv.log", True)
    assert logfile.layout.pattern == "%D{%Y-%m-%d %H:%M:%S.%q} %5p: %m%n"
    levels = {spec.name: spec.level for spec in config.loggers}
    assert levels["dcmtk.dcmnet.responses"] == logging.INFO
    assert levels["dcmtk.apps.storescu.progress"] == logging.INFO


def test_dcmtk_filelog_cfg(tmp_path: Path) -> None:
    config = read_log_config(str(dcmtk_example("filelog.cfg", tmp_path)), "storescp")
    assert config.root.level == logging.DEBUG
    assert config.appenders["console"].threshold == logging.ERROR
    logfile = config.appenders["logfile"]
    assert logfile.kind == "rolling-file"
    assert logfile.file == "storescp.log"
    assert logfile.max_file_size == 5 * 1024 * 1024
    assert logfile.max_backup_index == 10
    assert logfile.layout.pattern == "%D{%Y-%m-%d %H:%M:%S.%q} %5p - %-8c{1} - %m%n"


def test_dcmtk_filelog_cfg_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = dcmtk_example("filelog.cfg", tmp_path)
    monkeypatch.chdir(tmp_path)
    configure_logging("warn", str(config_file), "dcmrecv")
    logger = logging.getLogger("dcmrecv.storage")
    logger.debug("written to the file only")
    logger.error("also on the console")
    lines = (tmp_path / "dcmrecv.log").read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" DEBUG - storage  - written to the file only")
    assert lines[1].endswith(" ERROR - storage  - also on the console")
    # "logToStderr" is not log4cplus' "logToStdErr": DCMTK writes this to stdout too
    out = capsys.readouterr().out
    assert out.endswith("ERROR: also on the console\n")
    assert "written to the file only" not in out


# --- our own small files --------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "log.cfg"
    path.write_text(text)
    return str(path)


def test_rolling_file_appender_rolls(tmp_path: Path) -> None:
    log_file = tmp_path / "roll.log"
    config_file = write(
        tmp_path,
        "log4cplus.rootLogger = INFO, roll\n"
        "log4cplus.appender.roll = log4cplus::RollingFileAppender\n"
        f"log4cplus.appender.roll.File = {log_file}\n"
        "log4cplus.appender.roll.MaxFileSize = 200KB\n"
        "log4cplus.appender.roll.MaxBackupIndex = 2\n"
        "log4cplus.appender.roll.layout = log4cplus::PatternLayout\n"
        "log4cplus.appender.roll.layout.ConversionPattern = %m%n\n",
    )
    configure_logging("warn", config_file)
    logger = logging.getLogger("dcmrecv.test")
    filler = "x" * 1000
    for number in range(700):  # about 700 KB: fills the file and both backups
        logger.info("%04d %s", number, filler)
    files = sorted(p.name for p in tmp_path.glob("roll.log*"))
    assert files == ["roll.log", "roll.log.1", "roll.log.2"]
    contents = [(tmp_path / name).read_text().splitlines() for name in files]
    for lines in contents:
        assert lines, "an empty file after rolling"
        # a record is never split, and every file stays near the limit
        assert all(line.endswith(filler) for line in lines)
    assert all((tmp_path / n).stat().st_size <= 200 * 1024 + 1006 for n in files)
    newest, older, oldest = (int(lines[0][:4]) for lines in contents)
    assert oldest < older < newest
    assert contents[0][-1].startswith("0699 ")


@pytest.mark.parametrize(
    ("size", "expected"),
    [("500KB", 500 * 1024), ("5mb", 5 * 1024 * 1024), ("100", 200 * 1024), ("abc", 200 * 1024)],
)
def test_max_file_size(size: str, expected: int) -> None:
    config = parse_log_config(
        "log4cplus.rootLogger = INFO, r\n"
        "log4cplus.appender.r = log4cplus::RollingFileAppender\n"
        "log4cplus.appender.r.File = x.log\n"
        f"log4cplus.appender.r.MaxFileSize = {size}\n"
    )
    assert config.appenders["r"].max_file_size == expected


@pytest.mark.parametrize(("append", "kept"), [("true", True), ("false", False)])
def test_file_appender_append(tmp_path: Path, append: str, kept: bool) -> None:
    log_file = tmp_path / "app.log"
    log_file.write_text("earlier run\n")
    config_file = write(
        tmp_path,
        "log4cplus.rootLogger = INFO, file\n"
        "log4cplus.appender.file = log4cplus::FileAppender\n"
        f"log4cplus.appender.file.File = {log_file}\n"
        f"log4cplus.appender.file.Append = {append}\n",
    )
    configure_logging("warn", config_file)
    logging.getLogger("dcmrecv").info("this run")
    text = log_file.read_text()
    assert text.endswith("INFO - this run\n")
    assert ("earlier run" in text) is kept


def test_threshold_and_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = write(
        tmp_path,
        "log4cplus.rootLogger = TRACE, out, err\n"
        "log4cplus.appender.out = log4cplus::ConsoleAppender\n"
        "log4cplus.appender.out.Threshold = INFO\n"
        "log4cplus.appender.out.filters.1 = log4cplus::spi::LogLevelRangeFilter\n"
        "log4cplus.appender.out.filters.1.LogLevelMax = WARN\n"
        "log4cplus.appender.out.filters.1.AcceptOnMatch = true\n"
        "log4cplus.appender.out.filters.2 = log4cplus::spi::DenyAllFilter\n"
        "log4cplus.appender.out.layout = log4cplus::PatternLayout\n"
        "log4cplus.appender.out.layout.ConversionPattern = out %P %m%n\n"
        "log4cplus.appender.err = log4cplus::ConsoleAppender\n"
        "log4cplus.appender.err.logToStdErr = true\n"
        "log4cplus.appender.err.filters.1 = log4cplus::spi::StringMatchFilter\n"
        "log4cplus.appender.err.filters.1.StringToMatch = secret\n"
        "log4cplus.appender.err.layout = log4cplus::PatternLayout\n"
        "log4cplus.appender.err.layout.ConversionPattern = err %P %m%n\n",
    )
    configure_logging("warn", config_file)
    logger = logging.getLogger("dcmrecv.x")
    logger.debug("debug")
    logger.info("info")
    logger.error("error")
    logger.warning("a secret")
    captured = capsys.readouterr()
    assert captured.out == "out I info\nout W a secret\n"
    # AcceptOnMatch defaults to false in log4cplus: a matching message is dropped
    assert captured.err == "err D debug\nerr I info\nerr E error\n"


def test_logger_levels_and_additivity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = write(
        tmp_path,
        "log4cplus.rootLogger = WARN, c\n"
        "log4cplus.logger.dcmrecv.storage.naming = DEBUG\n"
        "log4cplus.logger.dcmrecv.wire.pdu = INHERITED, c\n"
        "log4cplus.additivity.dcmrecv.wire.pdu = false\n"
        "log4cplus.appender.c = log4cplus::ConsoleAppender\n",
    )
    configure_logging("warn", config_file)
    logging.getLogger("dcmrecv.storage.naming").debug("storage debug")
    logging.getLogger("dcmrecv.wire.association").info("association info")
    logging.getLogger("dcmrecv.wire.pdu").warning("pdu warning")
    assert capsys.readouterr().out == "DEBUG - storage debug\nWARN - pdu warning\n"


def test_dcmtk_logger_names_mean_ours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = write(
        tmp_path,
        "log4cplus.rootLogger = ERROR, c\n"
        "log4cplus.logger.dcmtk.apps.dcmrecv = INFO\n"
        "log4cplus.appender.c = log4cplus::ConsoleAppender\n",
    )
    configure_logging("warn", config_file, "dcmrecv")
    logging.getLogger("dcmrecv.wire.server").info("shown")
    assert capsys.readouterr().out == "INFO - shown\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "does not contain any settings"),
        ("foo = bar\n", "does not contain any valid settings"),
        ("log4cplus.logger.x = INFO\n", "does not set up log4cplus.rootLogger"),
        ("log4cplus.rootLogger = LOUD\n", "log4cplus.rootLogger: unknown log level 'LOUD'"),
        ("log4cplus.rootLogger = INHERITED\n", "unknown log level"),
        ("log4cplus.rootLogger = INFO, nowhere\n", "appender 'nowhere' is not defined"),
        (
            "log4cplus.rootLogger = INFO, a\nlog4cplus.appender.a = log4cplus::SocketAppender\n",
            "log4cplus.appender.a: appender type log4cplus::SocketAppender is not supported",
        ),
        (
            "log4cplus.rootLogger = INFO, a\nlog4cplus.appender.a = log4cplus::FileAppender\n",
            "log4cplus.appender.a: the appender needs a File",
        ),
        (
            "log4cplus.rootLogger = INFO, a\nlog4cplus.appender.a = log4cplus::ConsoleAppender\n"
            "log4cplus.appender.a.layout = log4cplus::PatternLayout\n"
            "log4cplus.appender.a.layout.ConversionPattern = %z\n",
            "layout.ConversionPattern: unknown conversion character %z",
        ),
        (
            "log4cplus.rootLogger = INFO, a\nlog4cplus.appender.a = log4cplus::ConsoleAppender\n"
            "log4cplus.appender.a.Threshold = LOUDEST\n",
            "log4cplus.appender.a.Threshold: unknown log level",
        ),
    ],
)
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(LogConfigError) as excinfo:
        parse_log_config(text, source="my.cfg")
    assert message in str(excinfo.value)


def test_error_names_file_and_line() -> None:
    text = "# comment\nlog4cplus.rootLogger = INFO, a\nlog4cplus.appender.a = Foo\n"
    with pytest.raises(LogConfigError) as excinfo:
        parse_log_config(text, source="my.cfg")
    assert str(excinfo.value).startswith("my.cfg:3: log4cplus.appender.a: appender type Foo")


def test_missing_file() -> None:
    with pytest.raises(LogConfigError, match=r"^Specified --log-config file does not exist$"):
        read_log_config("/nonexistent/logger.cfg")


def test_log_file_that_cannot_be_opened(tmp_path: Path) -> None:
    config = parse_log_config(
        "log4cplus.rootLogger = INFO, f\n"
        "log4cplus.appender.f = log4cplus::FileAppender\n"
        f"log4cplus.appender.f.File = {tmp_path}/no/such/dir/x.log\n"
    )
    with pytest.raises(LogConfigError, match="cannot open log file"):
        apply_log_config(config)
