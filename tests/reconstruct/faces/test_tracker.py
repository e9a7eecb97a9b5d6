"""FaceTracker: synthetic boxes, and the talking-head video (first 30 frames via PyAV)."""

from __future__ import annotations

import numpy as np
import pytest

from reconstruct.faces import FaceTracker, detect_faces


def _box(cx, cy, s=100.0):
    return (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)


def test_ids_are_stable_through_motion_and_missed_frames():
    t = FaceTracker(max_missed=3)
    ids = [tid for tid, _ in t.update([_box(100, 100), _box(400, 100)])]
    assert ids == [0, 1]
    for k in range(1, 10):
        frame = [_box(400 + 8 * k, 100), _box(100 + 15 * k, 100 + 5 * k)]  # order swapped, both moving
        if k in (4, 5):
            frame = frame[:1]  # the second face is missed for two frames
        got = t.update(frame)
        assert [tid for tid, _ in got] == [1, 0][:len(frame)]
        assert got[0][1] == frame[0]  # the face objects are handed back in order
    # a new face gets a new id
    assert [tid for tid, _ in t.update([_box(100 + 150, 150), _box(480, 100), _box(800, 500)])] == [0, 1, 2]
    # a face gone longer than max_missed loses its track; when it comes back it is a new one
    for _ in range(4):
        t.update([_box(480, 100)])
    assert [tr.track_id for tr in t.tracks] == [1]
    assert [tid for tid, _ in t.update([_box(480, 100), _box(250, 150)])] == [1, 3]
    t.reset()
    assert t.tracks == [] and t.update([_box(0, 0)])[0][0] == 0


def test_far_jump_or_size_change_is_a_new_face():
    t = FaceTracker()
    t.update([_box(100, 100)])
    assert t.update([_box(400, 400)])[0][0] == 1  # too far
    t2 = FaceTracker()
    t2.update([_box(100, 100, 100)])
    assert t2.update([_box(100, 100, 250)])[0][0] == 1  # 2.5x the size
    assert t.update([])[0:] == []


@pytest.mark.shared
@pytest.mark.usefixtures("faces_extra")
def test_tracker_keeps_the_id_on_the_talking_head_video(shared_data):
    av = pytest.importorskip("av", reason="PyAV decodes the video sample")
    t = FaceTracker()
    ids, boxes = [], []
    with av.open(str(shared_data / "video_samples" / "talking_head_french.mp4")) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= 30:
                break
            rgb = frame.to_ndarray(format="rgb24")
            faces = [] if i in (10, 11) else detect_faces(rgb)  # two dropped frames
            got = t.update(faces)
            ids += [tid for tid, _ in got]
            boxes += [f.box for _, f in got]
    assert len(ids) == 28 and set(ids) == {0}
    centres = np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes])
    assert np.abs(np.diff(centres, axis=0)).max() < 40  # the face does not jump around
