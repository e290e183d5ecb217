"""DCMTK's log layout (I:/W:/E: lines), its -lc logger configuration files."""
