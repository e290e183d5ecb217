"""Association negotiation, pure: DCMTK's UID names, the asconfig (storescp.cfg)
reader and the acceptor's presentation context decisions (PS3.8 9.3.2.2).
"""
