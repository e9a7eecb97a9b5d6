"""Test helpers for live servers on loopback: a free port, a FastAPI app served by uvicorn in a
thread for the length of a ``with`` block, and a tiny H.264 clip to upload."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from fractions import Fraction

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app, *, log_level: str = "warning", start_timeout_s: float = 10.0):
    """Serve ``app`` with uvicorn on a free loopback port; yields the base URL."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + start_timeout_s
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        t.join(15)


def tiny_mp4(n: int = 10, w: int = 64, h: int = 48, fps: int = 10, step: int = 20) -> bytes:
    """An H.264 MP4 of ``n`` flat grey frames (each ``step`` levels brighter), in memory."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(np.full((h, w, 3), (i * step) % 256, np.uint8), format="rgb24")
            fr.pts, fr.time_base = i, Fraction(1, fps)
            for p in st.encode(fr):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return buf.getvalue()
