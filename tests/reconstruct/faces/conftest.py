"""Fixtures for reconstruct.faces: the faces extra (or a skip), sample faces from ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def faces_extra():
    """Skip (with the reason) when the faces extra (mediapipe) is not installed."""
    from reconstruct.faces import MissingExtra
    from reconstruct.faces._backend import modules

    try:
        modules()
    except MissingExtra as e:
        pytest.skip(f"faces extra not installed: {e}")


def load_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture
def ffhq(shared_data):
    """Three real FFHQ faces (384x384 RGB) from faces_fake_public/real."""
    return [load_rgb(shared_data / "faces_fake_public" / "real" / f"{i}.jpg") for i in (3, 10, 42)]
