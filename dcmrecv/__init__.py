"""A DICOM storage receiver that stands in for DCMTK's ``dcmrecv``."""

__version__ = "0.1.0"

#: Our Implementation Class UID (PS3.7 D.3.3.2), written into the A-ASSOCIATE-AC
#: and the file meta information of every stored file.  A UUID-derived UID under
#: the 2.25 arc (PS3.5 B.2, ISO/IEC 9834-8) needs no registration authority.
IMPLEMENTATION_CLASS_UID = "2.25.197569959940699883042804459687912996985"
#: Implementation Version Name (PS3.7 D.3.3.2.3): at most 16 characters.
IMPLEMENTATION_VERSION_NAME = "PYDCMRECV_010"
