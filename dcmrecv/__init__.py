"""A DICOM storage receiver that stands in for DCMTK's ``dcmrecv``."""

__version__ = "0.1.0"

#: Our Implementation Class UID (PS3.7 D.3.3.2), written into the A-ASSOCIATE-AC
#: and the file meta information of every stored file.  Root 1.2.826.0.1.3680043
#: is the UK registration authority's free UID root as used by many open projects;
#: the suffix ".10.1127.1" plus the major.minor version identifies this receiver.
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1127.1.0.1"
#: Implementation Version Name (PS3.7 D.3.3.2.3): at most 16 characters.
IMPLEMENTATION_VERSION_NAME = "PYDCMRECV_010"
