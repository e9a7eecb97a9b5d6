"""Box overlap helpers shared by face detection, video tracks and verify's key frames."""

import pytest

from reconstruct.faces import box_iou, same_face


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # empty boxes: no overlap, no division by zero


def test_same_face():
    assert same_face((0, 0, 10, 10), (1, 1, 11, 11))  # IoU 0.68
    assert same_face((40, 40, 60, 60), (0, 0, 100, 100))  # a face inside a larger, weaker box (IoU 0.04)
    assert not same_face((0, 0, 10, 10), (8, 8, 18, 18))  # a corner touching: two faces
    assert not same_face((0, 0, 10, 10), (30, 0, 40, 10))
