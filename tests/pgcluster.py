"""A throwaway PostgreSQL server for the tests: started once per session, a fresh
database per test.

The cluster is the benchmark's (``benchmarks/postgres.py``: ``initdb`` and
``pg_ctl`` from Debian's ``postgresql`` package, a temporary directory, a loopback
port, the ``postgres`` user when run as root), so there is one copy of how to run
one.  It is stopped and removed when the session ends.  Under CI (``CI=true``) a
missing PostgreSQL or psycopg fails the tests that need it; elsewhere they skip.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from benchmarks import postgres
from tests.conftest import IN_CI

_databases = itertools.count(1)


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgresql_cluster() -> Iterator[postgres.Cluster]:
    """The session's PostgreSQL cluster (its ``url`` names the ``postgres`` database)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed: pip install -e '.[test]' (or dcmrecv[postgresql])")
    bin_dir = postgres.find_bin_dir()
    reason = postgres.missing_reason(bin_dir)
    if reason is not None or bin_dir is None:
        _unavailable(f"{reason}: install Debian's postgresql package (apt-get install postgresql)")
        raise AssertionError("unreachable")
    with postgres.Cluster(bin_dir, prefix="dcmrecv-test-pg-") as cluster:
        yield cluster


def fresh_database(cluster: postgres.Cluster) -> str:
    """The URL of a new, empty database in ``cluster``."""
    import psycopg

    name = f"test_{next(_databases)}"
    with psycopg.connect(cluster.url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return cluster.url.rsplit("/", 1)[0] + f"/{name}"
