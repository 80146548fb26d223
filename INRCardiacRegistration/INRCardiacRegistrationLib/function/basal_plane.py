"""The LV's basal (mitral annulus) plane: where the cavity is closed off for its volume, in every frame.

The blood pool of the LV is open at its base: the same blood continues into the left atrium and the outflow
tract, so the image has no edge there and the registered motion of that cap is not the motion of the base (the
cap stays where the image gives it no reason to move, while the annulus moves towards the apex in systole). The
clinical volume stops at the mitral annulus plane (Lang et al., J Am Soc Echocardiogr 2015: the LV cavity is
closed by a straight line across the mitral annulus). So do we, in 3-D:

- the **open face** of the reference cavity: its voxels that touch (6-neighbourhood) a voxel outside both the
  cavity and the myocardium, and outside what they enclose (holes in the label, e.g. unlabelled papillary muscles,
  are not openings); of several such faces (e.g. an apex left unlabelled) the largest, the valve plane;
- the **annulus**: open-face voxels that touch (26-neighbourhood) the myocardium, i.e. the rim where the wall
  ends. These are tissue-bound points that the registration tracks (the myocardium is where the image has edges);
- in frame t the annulus points are carried forward by phi_t and a plane is fitted to them (least squares, SVD);
  the LV volume of frame t is the carried cavity on the apical side of that plane (voxel centres with
  ``(y - c) . n <= 0``, ``n`` pointing out of the cavity through its open face). The reference frame is cut by
  its own plane in the same way, so every frame's volume has the same definition.

Points are LPS mm. A cavity enclosed by the myocardium on every side (no open face), or an annulus that does not
span a plane, gives no plane (:func:`find_basal_annulus` returns None): the volumes are then uncapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.geometry import Geometry

_MINIMUM_ANNULUS_POINTS = 6
_MINIMUM_SPAN_RATIO = 0.2  # the annulus's second extent must be at least this share of its first


@dataclass(frozen=True)
class Plane:
    """A plane through ``centre`` (LPS mm) with unit ``normal`` pointing out of the cavity (towards the atrium)."""

    centre: np.ndarray
    normal: np.ndarray

    def apical_side(self, geometry: Geometry, within: np.ndarray) -> np.ndarray:
        """Boolean (k, j, i): the voxels of ``within`` (bool on ``geometry``) whose centres lie on the cavity's side
        of the plane (or on it)."""
        ijk = np.argwhere(within)
        side = np.zeros(within.shape, dtype=bool)
        side[tuple(ijk.T)] = (geometry.index_to_physical(ijk[:, ::-1]) - self.centre) @ self.normal <= 0.0
        return side


@dataclass(frozen=True)
class BasalAnnulus:
    """The reference cavity's annulus points (N, 3, LPS mm) and the direction out of its open face."""

    points_mm: np.ndarray
    open_direction: np.ndarray

    def plane_through(self, points_mm: np.ndarray) -> Plane:
        """The least-squares plane through ``points_mm`` (these points carried to some frame), its normal on
        the side of :attr:`open_direction`."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        centre = points_mm.mean(axis=0)
        normal = np.linalg.svd(points_mm - centre, full_matrices=False)[2][2]
        return Plane(centre, normal if normal @ self.open_direction >= 0.0 else -normal)

    @property
    def reference_plane(self) -> Plane:
        return self.plane_through(self.points_mm)


def find_basal_annulus(cavity: np.ndarray, myocardium: np.ndarray, geometry: Geometry) -> BasalAnnulus | None:
    """The annulus of the reference ``cavity`` (bool (k, j, i)) against ``myocardium`` (bool, same grid), or None
    where the cavity has no open face or its annulus does not span a plane (see the module docstring)."""
    cavity = np.asarray(cavity, dtype=bool)
    myocardium = np.asarray(myocardium, dtype=bool) & ~cavity
    elsewhere = ~ndimage.binary_fill_holes(cavity | myocardium)
    face = cavity & ndimage.binary_dilation(elsewhere)
    components, count = ndimage.label(face, structure=np.ones((3, 3, 3), dtype=bool))
    if count > 1:
        face = components == 1 + int(np.argmax(ndimage.sum(face, components, range(1, count + 1))))
    annulus = face & ndimage.binary_dilation(myocardium, structure=np.ones((3, 3, 3), dtype=bool))
    if np.count_nonzero(annulus) < _MINIMUM_ANNULUS_POINTS:
        return None
    points = geometry.index_to_physical(np.argwhere(annulus)[:, ::-1])
    extents = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    if extents[1] < _MINIMUM_SPAN_RATIO * extents[0]:
        return None
    face_centre = geometry.index_to_physical(np.argwhere(face)[:, ::-1]).mean(axis=0)
    cavity_centre = geometry.index_to_physical(np.argwhere(cavity)[:, ::-1]).mean(axis=0)
    direction = face_centre - cavity_centre
    return BasalAnnulus(points, direction / max(float(np.linalg.norm(direction)), 1e-9))
