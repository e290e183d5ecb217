"""What storescp negotiates without ``-xf``: its transfer syntaxes, per ``--prefer`` option.

DCMTK's storescp (storescp.man, "DICOM Conformance"; storescp.cc) accepts
Verification and every storage SOP class, each with the same transfer syntaxes in
the same order, chosen by the rightmost option of its "preferred network transfer
syntaxes" block.  Pure data and functions; the negotiation tables are imported by
:func:`storescp_profile`, when a run needs the profile.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final

from dcmrecv.negotiation import uids

if TYPE_CHECKING:
    from dcmrecv.negotiation.asconfig import Profile

_LE = uids.EXPLICIT_VR_LITTLE_ENDIAN
_BE = uids.EXPLICIT_VR_BIG_ENDIAN
_IMPLICIT = uids.IMPLICIT_VR_LITTLE_ENDIAN
#: The compressed (or deflated) syntax each --prefer-xxx option puts first; DCMTK's
#: storescp then accepts explicit little, explicit big and implicit VR (storescp.cc).
PREFERRED_SYNTAX: Final = {
    "--prefer-lossless": "1.2.840.10008.1.2.4.70",
    "--prefer-jpeg8": "1.2.840.10008.1.2.4.50",
    "--prefer-jpeg12": "1.2.840.10008.1.2.4.51",
    "--prefer-j2k-lossless": "1.2.840.10008.1.2.4.90",
    "--prefer-j2k-lossy": "1.2.840.10008.1.2.4.91",
    "--prefer-jls-lossless": "1.2.840.10008.1.2.4.80",
    "--prefer-jls-lossy": "1.2.840.10008.1.2.4.81",
    "--prefer-mpeg2": "1.2.840.10008.1.2.4.100",
    "--prefer-mpeg2-high": "1.2.840.10008.1.2.4.101",
    "--prefer-mpeg4": "1.2.840.10008.1.2.4.102",
    "--prefer-mpeg4-bd": "1.2.840.10008.1.2.4.103",
    "--prefer-mpeg4-2-2d": "1.2.840.10008.1.2.4.104",
    "--prefer-mpeg4-2-3d": "1.2.840.10008.1.2.4.105",
    "--prefer-mpeg4-2-st": "1.2.840.10008.1.2.4.106",
    "--prefer-hevc": "1.2.840.10008.1.2.4.107",
    "--prefer-hevc10": "1.2.840.10008.1.2.4.108",
    "--prefer-rle": "1.2.840.10008.1.2.5",
    "--prefer-deflated": uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
}
#: --accept-all, in current DCMTK's order (storescp.cc): every compressed syntax first,
#: then the local byte order, the other one, and implicit VR last.
ACCEPT_ALL: Final = (
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2 MP@ML
    "1.2.840.10008.1.2.4.100.1",  # fragmentable MPEG2 MP@ML
    "1.2.840.10008.1.2.4.101",  # MPEG2 MP@HL
    "1.2.840.10008.1.2.4.101.1",
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC HP/L4.1
    "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC BD
    "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC HP/L4.2 2D
    "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105",  # MPEG-4 AVC HP/L4.2 3D
    "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC Stereo HP/L4.2
    "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107",  # HEVC Main/L5.1
    "1.2.840.10008.1.2.4.108",  # HEVC Main 10/L5.1
    "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K RPCL lossless
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.4.110",  # JPEG XL lossless
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    "1.2.840.10008.1.2.8.1",  # deflated image frame compression
    uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    "1.2.840.10008.1.2.1.98",  # encapsulated uncompressed explicit VR little endian
)


def _local_first() -> tuple[str, str]:
    return (_LE, _BE) if sys.byteorder == "little" else (_BE, _LE)


def network_transfer_syntaxes(prefer: str | None) -> tuple[str, ...]:
    """The transfer syntaxes storescp accepts, best first, for one --prefer option.

    ``prefer`` is the long name of the rightmost option of the block (None: default).
    """
    if prefer == "--implicit":
        return (_IMPLICIT,)
    if prefer == "--prefer-little":
        return (_LE, _BE, _IMPLICIT)
    if prefer == "--prefer-big":
        return (_BE, _LE, _IMPLICIT)
    if prefer in PREFERRED_SYNTAX:
        return (PREFERRED_SYNTAX[prefer], _LE, _BE, _IMPLICIT)
    if prefer == "--accept-all":
        return (*ACCEPT_ALL, *_local_first(), _IMPLICIT)
    return (*_local_first(), _IMPLICIT)


def storescp_profile(transfer_syntaxes: tuple[str, ...]) -> Profile:
    """What storescp negotiates without -xf: Verification and every storage SOP class.

    Each with the same transfer syntaxes in the same order (storescp.man, "DICOM
    Conformance"; ASC_acceptContextsWithPreferredTransferSyntaxes in storescp.cc).
    """
    from dcmrecv.negotiation import asconfig

    contexts = tuple(
        asconfig.PresentationContextSpec(uid, transfer_syntaxes)
        for uid in (uids.VERIFICATION_SOP_CLASS, *uids.STORAGE_SOP_CLASSES)
    )
    return asconfig.Profile(name="STORESCP", contexts=contexts)
