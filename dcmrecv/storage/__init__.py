"""Receiving an instance onto disk: naming plan and data set check (pure), file
meta information (PS3.10 7.1), the durable writer, storescp's sorting and
conversions.
"""
