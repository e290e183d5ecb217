"""Storage Commitment Push Model (PS3.4 Annex J), the parts that are pure values:
the N-ACTION and N-EVENT-REPORT data sets (``messages.py``), the peer table
(``peers.py``) and what counts as committed (``verdict.py``).  The service that
runs them is ``dcmrecv.ops.commitment``."""
