"""A PNG montage of two phantom frames (axial, short-axis, 4- and 2-chamber slices with label contours and
landmarks), for looking at the phantom and its motion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ..core.volume import Volume
from .anatomy import phantom_landmarks
from .config import LABEL_VALUES
from .heart_frame import Z_BASE, from_heart_frame, heart_axes_lps
from .rendering import PhantomFrame


def _plane(centre: np.ndarray, u: np.ndarray, v: np.ndarray, half: float, step: float) -> np.ndarray:
    s = np.arange(-half, half + 1e-9, step)
    uu, vv = np.meshgrid(s, s[::-1])
    return centre + uu[..., None] * u + vv[..., None] * v


def _sample(volume: Volume, points: np.ndarray, order: int) -> np.ndarray:
    index = volume.geometry.physical_to_index(points)
    coordinates = np.stack([index[..., 2], index[..., 1], index[..., 0]])
    return ndimage.map_coordinates(volume.array.astype(np.float32), coordinates, order=order, mode="constant",
                                   cval=np.nan)


def write_montage(path: str | Path, reference: PhantomFrame, other: PhantomFrame) -> Path:
    """Write a PNG of axial, short-axis (mid and basal), 4-chamber and 2-chamber slices of two frames (rows)
    with label contours (myocardium yellow, LV blood pool red, rest of heart cyan) and the landmarks within
    3 mm of each plane (coronary magenta, mid-wall green). The planes are fixed in space (placed on the
    reference LV), so the second row shows the motion. Views follow the radiological conventions: axial seen
    from the feet (patient left on the image right), short axis seen from the apex (RV on the left)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    axes = heart_axes_lps()
    mid = from_heart_frame(np.array([0.0, 0.0, 0.55 * Z_BASE]))
    views = [
        ("axial", mid, np.array([1.0, 0.0, 0.0]), np.array([0.0, -1.0, 0.0])),
        ("short axis, mid", mid, -axes[0], axes[1]),
        ("short axis, base", from_heart_frame(np.array([0.0, 0.0, Z_BASE - 5.0])), -axes[0], axes[1]),
        ("4-chamber", from_heart_frame(np.array([8.0, 0.0, 0.62 * Z_BASE])), -axes[0], axes[2]),
        ("2-chamber", from_heart_frame(np.array([0.0, 0.0, 0.62 * Z_BASE])), -axes[1], axes[2]),
    ]
    half, step = 70.0, 0.5
    figure, grid = plt.subplots(2, len(views), figsize=(3.6 * len(views), 8.2), dpi=100)
    colours = {LABEL_VALUES["myocardium"]: "#ffd400", LABEL_VALUES["blood_pool"]: "#ff3030",
               LABEL_VALUES["heart"]: "#30d0ff"}
    names = phantom_landmarks().labels
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="#202040")
    for row, frame in enumerate((reference, other)):
        for column, (title, centre, u, v) in enumerate(views):
            points = _plane(centre, u, v, half, step)
            image = _sample(frame.image, points, order=1)
            labels = np.nan_to_num(_sample(frame.labels, points, order=0))
            ax = grid[row, column]
            ax.imshow(np.ma.masked_invalid(image), cmap=cmap, vmin=-250, vmax=650,
                      extent=(-half, half, -half, half))
            for value, colour in colours.items():
                mask = (labels == value).astype(np.float32)
                if mask.any():
                    ax.contour(np.linspace(-half, half, mask.shape[1]),
                               np.linspace(half, -half, mask.shape[0]), mask, levels=[0.5],
                               colors=[colour], linewidths=0.8)
            close = np.flatnonzero(np.abs((frame.landmarks_lps - centre) @ np.cross(u, v)) < 3.0)
            if close.size:
                in_plane = frame.landmarks_lps[close] - centre
                ax.scatter(in_plane @ u, in_plane @ v, s=18, zorder=3, edgecolors="black", linewidths=0.4,
                           c=["#ff40ff" if names[i][0].isdigit() else "#40ff40" for i in close])
            name = "ED, frame 0" if frame.frame == 0 else f"frame {frame.frame}"
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    figure.suptitle("INR cardiac phantom (window 900/200 HU): labels yellow = myocardium, red = LV blood "
                    "pool, cyan = rest of heart; landmarks magenta = coronary, green = mid-wall", fontsize=10)
    figure.tight_layout(h_pad=1.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
