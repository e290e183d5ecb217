"""What operators and pipelines see beyond the DICOM protocol: storescp's event
hooks and end-of-study session.
"""
