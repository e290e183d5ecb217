"""``python -m dcmrecv``: the same as the ``dcmrecv`` command."""

from dcmrecv.cli import main

main()
