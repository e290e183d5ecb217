"""The DICOM upper layer: PDUs (PS3.8 9.3), DIMSE command sets (PS3.7 9.3, E),
the association state machine, the listener, TLS (PS3.15 B.1).
"""
