"""Who we are on the wire and in files: Implementation Class UID and Version Name.

They live here, at the bottom of the layers, rather than in the package's
``__init__`` (which re-exports them): the association, the file meta writer and the
health probe all need them, and ``__init__`` also holds :func:`dcmrecv.serve`, the
entry point at the top.
"""

from __future__ import annotations

from typing import Final

#: Our Implementation Class UID (PS3.7 D.3.3.2), written into the A-ASSOCIATE-AC
#: and the file meta information of every stored file.  A UUID-derived UID under
#: the 2.25 arc (PS3.5 B.2, ISO/IEC 9834-8) needs no registration authority.
IMPLEMENTATION_CLASS_UID: Final = "2.25.197569959940699883042804459687912996985"
#: Implementation Version Name (PS3.7 D.3.3.2.3): at most 16 characters.
IMPLEMENTATION_VERSION_NAME: Final = "PYDCMRECV_010"
