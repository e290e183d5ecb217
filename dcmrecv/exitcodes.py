"""Process exit codes, with the names and values DCMTK's ``dcmrecv`` uses.

Scripts written for DCMTK test ``$?`` against these numbers (dcmrecv.man,
"EXIT CODES"; common codes from DCMTK's ``ofexit.h``), so they are facts to keep,
not choices.  Codes marked "(*)" in the manual are placeholders DCMTK never
returns; we keep them for completeness and never return them either.
"""

from __future__ import annotations

# general
EXITCODE_NO_ERROR = 0
EXITCODE_COMMANDLINE_SYNTAX_ERROR = 1

# input file errors (*)
EXITCODE_CANNOT_READ_INPUT_FILE = 20

# output file errors
EXITCODE_CANNOT_WRITE_OUTPUT_FILE = 40  # (*)
#: ``-od`` names something that does not exist, is not a directory or is not writable.
EXITCODE_INVALID_OUTPUT_DIRECTORY = 45

# network errors
EXITCODE_CANNOT_INITIALIZE_NETWORK = 60  # (*)
#: The listening socket could not be opened (e.g. the port is in use).
EXITCODE_CANNOT_START_SCP_AND_LISTEN = 64
#: ``-xf``: the association configuration file or profile is unusable.
EXITCODE_INVALID_ASSOCIATION_CONFIG = 66
#: The transport layer (TLS) could not be set up.
EXITCODE_CANNOT_CREATE_TRANSPORT_LAYER = 71

# storescp (storescp.cc) returns 1 for every error: command line, configuration file,
# output directory, network.  Scripts around storescp test for 0 and non-zero.
STORESCP_EXITCODE_ERROR = 1
#: ``--inetd`` with standard input closed: storescp.cc cannot duplicate it, exit(99).
STORESCP_EXITCODE_INETD = 99

# The health probe (python -m dcmrecv.commands.healthcheck) speaks Docker's
# HEALTHCHECK contract, which Kubernetes' exec probes share: 0 healthy, 1 unhealthy.
EXITCODE_HEALTHY = 0
EXITCODE_UNHEALTHY = 1
