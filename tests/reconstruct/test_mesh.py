"""Coarse-to-fine surface extraction against dense evaluation; marching cubes; export."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mcubes", reason="the [body] extra (PyMCubes) is not installed")
trimesh = pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")

from reconstruct.mesh import (  # noqa: E402
    evaluate_coarse_to_fine,
    evaluate_dense,
    export_mesh,
    extract_surface,
    marching_cubes,
)


def blobs(p: np.ndarray) -> np.ndarray:
    """Occupancy-like field: a sphere, a capsule 'arm' and a separate small ball."""
    d1 = np.linalg.norm(p - [0.0, 0.0, 0.0], axis=1) - 0.5
    a, b = np.array([0.3, 0.0, 0.0]), np.array([0.9, 0.2, 0.0])
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    d2 = np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1) - 0.08
    d3 = np.linalg.norm(p - [-0.8, 0.7, 0.0], axis=1) - 0.1
    d = np.minimum(np.minimum(d1, d2), d3)
    return (1 / (1 + np.exp(d * 40))).astype(np.float32)


BOX = ([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0])


def test_coarse_to_fine_matches_dense_where_it_matters():
    dense, sd = evaluate_dense(blobs, *BOX, 64)
    c2f, sc = evaluate_coarse_to_fine(blobs, *BOX, 64, coarse=16)
    assert dense.shape == c2f.shape == (65, 65, 65)
    # same side of the threshold at every lattice point, so the same marching-cubes surface
    assert np.array_equal(dense > 0.5, c2f > 0.5)
    surf = np.abs(dense - 0.5) < 0.45
    np.testing.assert_allclose(c2f[surf], dense[surf], atol=1e-6)
    assert sc.evaluated < 0.35 * sd.evaluated


def test_meshes_agree_and_largest_component_kept():
    m_dense, _ = extract_surface(blobs, *BOX, 64, dense=True)
    m_c2f, st = extract_surface(blobs, *BOX, 64, coarse=16)
    assert np.allclose(m_dense.bounds, m_c2f.bounds, atol=1e-6)
    assert len(m_dense.faces) == len(m_c2f.faces)
    assert m_c2f.is_watertight and m_c2f.volume > 0  # outward normals
    # the separate small ball is dropped
    assert m_c2f.bounds[0][0] > -0.7
    assert 4 / 3 * np.pi * 0.5 ** 3 * 0.9 < m_c2f.volume < 4 / 3 * np.pi * 0.5 ** 3 * 1.3


def test_speedup_at_256():
    _, st = evaluate_coarse_to_fine(blobs, *BOX, 256, coarse=64)
    assert st.dense == 257 ** 3
    assert st.fraction < 0.1, st.levels


def test_no_surface_is_an_error():
    vals = np.zeros((9, 9, 9), np.float32)
    with pytest.raises(ValueError, match="no surface"):
        marching_cubes(vals, *BOX)


def test_bad_grid_and_field():
    with pytest.raises(ValueError, match="power of two"):
        evaluate_coarse_to_fine(blobs, *BOX, 96, coarse=64)
    with pytest.raises(ValueError, match="returned"):
        evaluate_dense(lambda p: np.zeros(3), *BOX, 8)


@pytest.mark.parametrize("ext", [".glb", ".obj", ".ply"])
def test_export_round_trip(tmp_path, ext):
    mesh, _ = extract_surface(blobs, *BOX, 32, coarse=8)
    out = export_mesh(mesh, tmp_path / f"m{ext}")
    back = trimesh.load(out, force="mesh")
    assert len(back.faces) == len(mesh.faces)
    assert [p.name for p in tmp_path.iterdir()] == [f"m{ext}"]


def test_export_errors(tmp_path):
    mesh, _ = extract_surface(blobs, *BOX, 16, coarse=8)
    with pytest.raises(ValueError, match="use .glb"):
        export_mesh(mesh, tmp_path / "m.stl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_mesh(mesh, tmp_path / "nope" / "m.glb")
