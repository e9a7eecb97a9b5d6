"""Invisible watermarks carrying a 48-bit registry id (image and video).

Import the front ends directly: ``provenance.watermark.image`` (``embed_image``, ``decode_image``,
``embed_file``, ``decode_file``, ``WatermarkResult``, ``ALGORITHM``) and
``provenance.watermark.video`` (``embed_video``, ``decode_video``). Light dependencies only:
numpy, scipy, pillow, av (video).
"""
