"""State that spans associations, processes and hosts (issue 20): open studies and
their instances, study completion leases, the instance index storage commitment
needs (issue 24).  One interface (``store.StateStore``), two stores: SQLite in WAL
mode on the local disk (every worker on a host), PostgreSQL for several hosts.
"""
