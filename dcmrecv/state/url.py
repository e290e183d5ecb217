"""The ``--state`` URL: which store it names, and opening it.

Issue 20: ``--state postgresql://...`` for replicas on several hosts, an embedded
store on the local disk otherwise.  The URL forms are SQLAlchemy's and libpq's, which
operators know: ``sqlite:///absolute/path``, ``sqlite:relative/path``,
``postgresql://user:password@host:port/database?parameters`` (also ``postgres://``,
several hosts as libpq allows).

The PostgreSQL store, and psycopg with it (the optional extra
``dcmrecv[postgresql]``), is imported only when such a URL is opened: a receiver
without the extra, and its start-up, never load it.  Parsing is pure; nothing is
connected until the store is first used.
"""

from __future__ import annotations

import os

from dcmrecv.state.model import StateStore

#: The schemes of the two stores.
SQLITE_SCHEMES = frozenset({"sqlite"})
POSTGRESQL_SCHEMES = frozenset({"postgresql", "postgres"})


def open_state(url: str, *, durable: bool) -> StateStore:
    """The store ``url`` names (see the module docstring); ValueError for an URL
    that names none, or needs a driver that is not installed.

    ``durable`` is the receiver's fsync setting: a commit survives a power cut
    (SQLite ``synchronous=FULL``, PostgreSQL's ``synchronous_commit`` as the server
    sets it) or only the death of the process (``NORMAL``, ``off``).
    """
    scheme = scheme_of(url)
    if scheme in SQLITE_SCHEMES:
        from dcmrecv.state.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url), durable=durable)
    if scheme in POSTGRESQL_SCHEMES:
        try:
            from dcmrecv.state.postgresql import PostgresStore
        except ImportError as exc:
            raise ValueError(
                f"the state store {url_description(url)} needs psycopg 3, which is not"
                f" installed ({exc}): install dcmrecv[postgresql]"
            ) from None
        return PostgresStore(url, url_description(url), durable=durable)
    raise ValueError(
        f"unknown state store URL {url_description(url)!r}:"
        " expected sqlite:///PATH, sqlite:PATH or postgresql://..."
    )


#: The embedded store's file in the output directory (a dot file: readers skip it).
DEFAULT_FILE = ".dcmrecv-state.sqlite"


def default_url(output_directory: str | os.PathLike[str]) -> str:
    """The embedded store (pure): SQLite in the output directory, shared by the
    processes of one host (not by replicas on several: they need PostgreSQL)."""
    return f"sqlite:///{os.path.abspath(os.path.join(output_directory, DEFAULT_FILE))}"


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case, or "" (pure)."""
    scheme, colon, _ = url.partition(":")
    return scheme.lower() if colon else ""


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:`` URL (pure): ``sqlite:///abs`` -> ``/abs``,
    ``sqlite:rel/path`` -> ``rel/path``; ValueError for a host part or no file."""
    rest = url.partition(":")[2]
    if rest.startswith("//"):
        authority, _, path = rest[2:].partition("/")
        if authority:
            raise ValueError(
                f"a sqlite: state URL names a local file, not a host ({authority!r}):"
                " use sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH"
            )
        path = "/" + path
    else:
        path = rest
    if path.rstrip("/") == "" or path.endswith(os.sep):
        raise ValueError(f"the state URL {url!r} names no file")
    return path


def url_description(url: str) -> str:
    """``url`` without its password and query (pure), for messages.

    libpq's URIs may name several hosts (``host1:5432,host2:5432``), which
    ``urllib.parse`` cannot take apart, so only the user information is rewritten.
    The query is dropped: it may carry ``password=``.
    """
    base = url.split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = base.partition("://")
    if not sep:
        return base
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        netloc = f"{userinfo.split(':', 1)[0]}@{hosts}"
    return f"{scheme}://{netloc}{slash}{path}"
