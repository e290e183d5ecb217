"""``python -m dcmrecv``: the same as the ``dcmrecv`` command."""

from dcmrecv.commands.dcmrecv import main

main()
