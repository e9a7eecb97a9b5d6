"""NeRF head avatars: multiresolution hash-grid encoding (Instant-NGP), ray marching, fields.

Submodules are imported on use (``from reconstruct.head.encoding import HashGrid``) so that
importing this package stays cheap.
"""
