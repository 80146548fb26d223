"""The LV cavity of the reference frame carried to another frame, closed at the carried annulus plane.

Each voxel y of frame t takes the reference cavity's trilinear value at phi_t^-1(y), thresholded at 0.5
(:meth:`~..engine.displacement_map.DisplacementMap.propagate_fixed_label`); of those voxels, the ones on the apical
side of the basal plane fitted to the carried annulus points count (:mod:`.basal_plane`). A volume is the voxel
count times the voxel volume (1 mL = 1000 mm^3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.geometry import Geometry
from ..core.masks import volume_ml
from ..core.volume import Volume
from ..engine.displacement_map import DisplacementMap
from .basal_plane import BasalAnnulus


def capped_cavity(cavity: np.ndarray, geometry: Geometry, annulus: BasalAnnulus | None,
                  annulus_points_mm: np.ndarray | None = None) -> np.ndarray:
    """``cavity`` (bool (k, j, i) on ``geometry``) on the apical side of the plane through ``annulus_points_mm``
    (the annulus carried to this frame; default: the reference annulus itself); unchanged without an annulus."""
    if annulus is None:
        return np.asarray(cavity, dtype=bool)
    points = annulus.points_mm if annulus_points_mm is None else annulus_points_mm
    cavity = np.asarray(cavity, dtype=bool)
    return annulus.plane_through(points).apical_side(geometry, cavity)


def carried_cavity_volume_ml(motion: DisplacementMap, cavity: Volume, grid: Geometry, annulus: BasalAnnulus | None,
                             alongside: Sequence[Volume] = ()) -> tuple[float, str | None, list[Volume]]:
    """``(volume in mL, warning or None, the alongside labels carried)``: the reference ``cavity`` (uint8 0/1)
    carried by ``motion`` (reference -> frame) onto ``grid`` and closed at the carried annulus plane; the warning says
    where phi's inverse did not converge for the cavity. ``alongside``: further reference labels carried through the
    same inverse map (computed once for all). Safe to call from several threads at once (no warnings machinery)."""
    unresolved: dict[str, str] = {}
    carried, *others = motion.propagate_fixed_labels([cavity, *alongside], grid, unresolved=unresolved)
    return cavity_volume_ml(motion, np.asarray(carried.array) > 0, grid, annulus), unresolved.get(cavity.name), others


def cavity_volume_ml(motion: DisplacementMap, carried: np.ndarray, grid: Geometry,
                     annulus: BasalAnnulus | None) -> float:
    """The volume (mL) of a cavity already carried into a frame (bool (k, j, i) on ``grid``), closed at the reference
    annulus carried by ``motion`` (reference -> that frame)."""
    carried_annulus = None if annulus is None else motion.map_points(annulus.points_mm)
    return volume_ml(capped_cavity(carried, grid, annulus, carried_annulus), grid.spacing)
