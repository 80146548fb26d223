"""The LV's own coordinates in the reference frame: long axis, local cardiac directions, the AHA 17 segments.

All points are reference-frame LPS mm. Definitions (Cerqueira et al., "Standardized myocardial segmentation and
nomenclature for tomographic imaging of the heart", Circulation 2002, the AHA 17-segment model):

- **Long axis** ``e_L``: from the apex to the centre of the base. The base centre is the centroid of the basal
  annulus (:mod:`.basal_plane`) when the LV blood pool is known, else of the basal-most tenth of the myocardium
  along its principal axis; the apex is the mean of the myocardial points farthest from the base centre (the
  farthest 2 %). Without a blood pool the principal axis (largest variance of the myocardium) is oriented so the
  apex is the end where the myocardium crosses the axis (the apical cap).
- **Local directions** at a point x (cylindrical about the long axis): longitudinal ``e_L``; radial ``e_R``, the
  part of ``x - apex`` orthogonal to ``e_L``, normalised (outward from the axis); circumferential
  ``e_C = e_L x e_R``. (Wall-following directions, longitudinal along the wall's meridian and radial along its
  normal, differ from these where the wall is not parallel to the axis: in the apical ring and the cap.)
- **Levels**: height ``h = (x - apex) . e_L``. The apical cap (segment 17) lies below the cavity's apical end
  (the lowest height of the blood pool; without one, the highest myocardial point within a voxel of the axis).
  From there to the base (the 99th percentile of the myocardium's heights) the wall is cut into thirds: apical,
  mid, basal.
- **Angles**: measured about ``e_L`` from the anterior RV insertion, increasing through the septum towards the
  inferior insertion. Basal and mid rings have six 60-degree segments (1 anterior, 2 anteroseptal, 3 inferoseptal,
  4 inferior, 5 inferolateral, 6 anterolateral; 7-12 the same at mid level), the apical ring four 90-degree
  segments centred on the septum (13 anterior, 14 septal, 15 inferior, 16 lateral): the angle ranges of
  :mod:`..core.aha_segments`.
- **Orientation** (where the anterior insertion is), first that applies: a given point on the anterior RV
  insertion; the RV (a label): the septum faces the RV centroid and the insertions are the ends of the arc where
  the RV touches the LV's epicardium (the end further anterior is the anterior one); else the stated default of a
  supine scan: the septum faces the patient's right-anterior (LPS (-1, -1, 0)) and the anterior insertion lies 60
  degrees from the septum's centre on the anterior side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.aha_segments import APICAL, BASAL, MID, ring_segment
from ..core.geometry import Geometry
from ..core.vocabulary import InputError
from .basal_plane import BasalAnnulus, find_basal_annulus

_DEFAULT_SEPTUM_LPS = np.array([-1.0, -1.0, 0.0]) / np.sqrt(2.0)
_ANTERIOR_LPS = np.array([0.0, -1.0, 0.0])
_MINIMUM_VOXELS = 200
_MINIMUM_VOLUME_ML = 2.0


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _orthogonal(vector: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return vector - (vector @ axis)[..., None] * axis


@dataclass(frozen=True)
class LeftVentricleFrame:
    """The LV's axis and segment geometry in the reference frame (see the module docstring)."""

    apex_mm: np.ndarray          # on the axis, at the apical end of the myocardium (LPS mm)
    long_axis: np.ndarray        # unit, apex -> base
    anterior_insertion: np.ndarray  # unit, orthogonal to the axis: angle 0
    septal_sense: float          # +1 / -1: the sense of rotation about the axis from the insertion to the septum
    cap_height_mm: float         # top of the apical cap (segment 17)
    base_height_mm: float        # basal end of the wall
    orientation: str             # how the anterior insertion was found

    def heights(self, points_mm: np.ndarray) -> np.ndarray:
        """Height above the apex along the long axis (mm)."""
        return (np.asarray(points_mm) - self.apex_mm) @ self.long_axis

    def directions(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit radial, circumferential and longitudinal directions (each (N, 3)) at the points; radial and
        circumferential are NaN on the axis itself (within 1e-6 mm), where they are not defined."""
        radial = _orthogonal(np.asarray(points_mm) - self.apex_mm, self.long_axis)
        length = np.linalg.norm(radial, axis=1, keepdims=True)
        radial = np.divide(radial, length, out=np.full_like(radial, np.nan), where=length > 1e-6)
        circumferential = np.cross(self.long_axis, radial)
        return radial, circumferential, np.broadcast_to(self.long_axis, radial.shape)

    def angles_deg(self, points_mm: np.ndarray) -> np.ndarray:
        """Angle about the axis from the anterior insertion, increasing towards the septum, in [0, 360)."""
        radial = _orthogonal(np.asarray(points_mm) - self.apex_mm, self.long_axis)
        sine = np.cross(self.anterior_insertion, radial) @ self.long_axis
        cosine = radial @ self.anterior_insertion
        angles = np.degrees(np.arctan2(self.septal_sense * sine, cosine)) % 360.0
        return np.where(angles >= 360.0, 0.0, angles)  # -1e-15 % 360 rounds to 360

    def segments(self, points_mm: np.ndarray) -> np.ndarray:
        """AHA segment (1..17) of each point (N,)."""
        heights, angles = self.heights(points_mm), self.angles_deg(points_mm)
        third = (self.base_height_mm - self.cap_height_mm) / 3.0
        segment = np.where(heights >= self.cap_height_mm + 2.0 * third, ring_segment(BASAL, angles),
                           np.where(heights >= self.cap_height_mm + third, ring_segment(MID, angles),
                                    ring_segment(APICAL, angles)))
        return np.where(heights < self.cap_height_mm, 17, segment)


_FIND = object()  # estimate_lv_frame's default: find the annulus here


def estimate_lv_frame(myocardium: np.ndarray, geometry: Geometry, blood_pool: np.ndarray | None = None,
                      right_ventricle: np.ndarray | None = None, anterior_insertion_mm: np.ndarray | None = None,
                      annulus: BasalAnnulus | None | object = _FIND) -> LeftVentricleFrame:
    """The LV frame of the reference ``myocardium`` (bool (k, j, i) on ``geometry``), optionally helped by the LV
    ``blood_pool``, the ``right_ventricle`` (both bool on the same grid) or a point on the anterior RV insertion
    (LPS mm). ``annulus``: the blood pool's annulus when the caller has already looked for it (None: it has none);
    by default it is found here. Raises :class:`InputError` for an LV too small, or cut by the field of view, to
    define an axis."""
    myocardium = np.asarray(myocardium, dtype=bool)
    count = int(np.count_nonzero(myocardium))
    volume = count * geometry.voxel_volume_mm3 / 1000.0
    if count < _MINIMUM_VOXELS or volume < _MINIMUM_VOLUME_ML:
        raise InputError(f"the reference myocardium has {count} voxels ({volume:.1f} mL): too small to define the "
                         f"LV long axis (needs at least {_MINIMUM_VOXELS} voxels and {_MINIMUM_VOLUME_ML:g} mL)")
    points = geometry.index_to_physical(np.argwhere(myocardium)[:, ::-1])
    spacing = float(max(geometry.spacing))
    if annulus is _FIND:
        has_pool = blood_pool is not None and np.any(blood_pool)
        annulus = find_basal_annulus(blood_pool, myocardium, geometry) if has_pool else None
    if annulus is not None:
        base_centre = annulus.points_mm.mean(axis=0)
    else:
        centre = points.mean(axis=0)
        axis = np.linalg.svd(points - centre, full_matrices=False)[2][0]
        heights = (points - centre) @ axis
        radial = np.linalg.norm(_orthogonal(points - centre, axis), axis=1)
        on_axis = heights[radial <= spacing]
        if on_axis.size == 0:
            raise InputError("the myocardium does not close at the apex on its principal axis: cannot tell the "
                             "apex from the base (give the LV blood-pool label)")
        if np.median(on_axis) > 0.0:
            axis, heights = -axis, -heights
        base_centre = points[heights >= np.percentile(heights, 90.0)].mean(axis=0)
    distance = np.linalg.norm(points - base_centre, axis=1)
    apex_cluster = points[distance >= np.percentile(distance, 98.0)].mean(axis=0)
    long_axis = _unit(base_centre - apex_cluster)
    heights = (points - apex_cluster) @ long_axis
    apex = apex_cluster + heights.min() * long_axis
    heights -= heights.min()
    _refuse_apex_cut_by_the_field_of_view(myocardium, heights, geometry)
    radial_distance = np.linalg.norm(_orthogonal(points - apex, long_axis), axis=1)
    if blood_pool is not None and np.any(blood_pool):
        cavity_points = geometry.index_to_physical(np.argwhere(blood_pool)[:, ::-1])
        cap = float(((cavity_points - apex) @ long_axis).min())
    else:
        near_axis = heights[radial_distance <= spacing]
        cap = float(near_axis.max()) if near_axis.size else 0.0
    base = float(np.percentile(heights, 99.0))
    if not 0.0 <= cap < base:
        raise InputError(f"the LV's apical cap ({cap:.1f} mm) does not lie below its base ({base:.1f} mm) on the "
                         f"estimated axis: the myocardium does not look like an LV")
    insertion, sense, how = _orientation(points, apex, long_axis, geometry, myocardium, right_ventricle,
                                         anterior_insertion_mm)
    return LeftVentricleFrame(apex, long_axis, insertion, sense, cap, base, how)


def _refuse_apex_cut_by_the_field_of_view(myocardium: np.ndarray, heights: np.ndarray, geometry: Geometry) -> None:
    """The apex must lie inside the image: no myocardial voxel of the apical tenth may touch the image border."""
    border = np.zeros(myocardium.shape, dtype=bool)
    border[[0, -1], :, :] = border[:, [0, -1], :] = border[:, :, [0, -1]] = True
    on_border = border[myocardium]
    apical = heights <= 0.1 * heights.max()
    if np.any(on_border & apical):
        raise InputError("the LV apex touches the image border: the LV is cut by the field of view, so its long "
                         "axis cannot be defined")


def _orientation(points: np.ndarray, apex: np.ndarray, long_axis: np.ndarray, geometry: Geometry,
                 myocardium: np.ndarray, right_ventricle: np.ndarray | None,
                 anterior_insertion_mm: np.ndarray | None) -> tuple[np.ndarray, float, str]:
    """(anterior insertion direction, rotation sense towards the septum, how it was found)."""
    anterior = _unit(_orthogonal(_ANTERIOR_LPS, long_axis))
    if anterior_insertion_mm is not None:
        insertion = _unit(_orthogonal(np.asarray(anterior_insertion_mm, dtype=float) - apex, long_axis))
        septum = _unit(_orthogonal(_DEFAULT_SEPTUM_LPS, long_axis))
        how = "anterior RV insertion point given"
    elif right_ventricle is not None and np.any(right_ventricle):
        rv = np.asarray(right_ventricle, dtype=bool)
        rv_points = geometry.index_to_physical(np.argwhere(rv)[:, ::-1])
        septum = _unit(_orthogonal(rv_points.mean(axis=0) - apex, long_axis))
        reach = max(1, int(round(3.0 / min(geometry.spacing))))
        contact = rv & ndimage.binary_dilation(myocardium, iterations=reach)
        if np.count_nonzero(contact) < 10:
            insertion, sense, how = _orientation(points, apex, long_axis, geometry, myocardium, None, None)
            return insertion, sense, how + "; the RV label does not touch the LV myocardium"
        side = _unit(np.cross(long_axis, septum))
        relative = _orthogonal(geometry.index_to_physical(np.argwhere(contact)[:, ::-1]) - apex, long_axis)
        angles = np.degrees(np.arctan2(relative @ side, relative @ septum))
        ends = [np.radians(np.percentile(angles, 2.0)), np.radians(np.percentile(angles, 98.0))]
        candidates = [np.cos(a) * septum + np.sin(a) * side for a in ends]
        insertion = max(candidates, key=lambda direction: float(direction @ anterior))
        how = "RV label (insertion at the anterior end of the RV-LV contact)"
    else:
        septum = _unit(_orthogonal(_DEFAULT_SEPTUM_LPS, long_axis))
        side = _unit(np.cross(long_axis, septum))
        side = side if side @ anterior >= 0.0 else -side
        insertion = np.cos(np.radians(60.0)) * septum + np.sin(np.radians(60.0)) * side
        how = "default (supine scan: septum towards the patient's right-anterior)"
    sense = 1.0 if np.cross(insertion, septum) @ long_axis >= 0.0 else -1.0
    return insertion, sense, how
