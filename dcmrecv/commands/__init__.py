"""The two commands, dcmrecv and storescp (and the container health probe):
DCMTK's argv grammar and option tables, environment variables, help and exit codes,
turned into a ReceiverConfig.  The top layer: nothing below imports from here.
"""
