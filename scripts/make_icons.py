"""Draws the 128x128 extension and module icons: an LV short-axis ring (myocardium) with torsion arrows and
a sine wave (SIREN). Run: python scripts/make_icons.py"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, Wedge  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def draw(path: Path) -> None:
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.axis("off")
    ax.add_patch(Circle((0, 0), 0.98, color="#1d2b3a"))
    ax.add_patch(Wedge((0.05, 0.08), 0.66, 0, 360, width=0.24, color="#c0392b"))   # myocardium
    ax.add_patch(Circle((0.05, 0.08), 0.42, color="#f5d0a9"))                       # blood pool
    for angle in (30, 150, 270):
        a = np.deg2rad(angle)
        start = (0.05 + 0.82 * np.cos(a), 0.08 + 0.82 * np.sin(a))
        end = (0.05 + 0.82 * np.cos(a + 0.7), 0.08 + 0.82 * np.sin(a + 0.7))
        ax.add_patch(FancyArrowPatch(start, end, connectionstyle="arc3,rad=0.35", arrowstyle="-|>",
                                     mutation_scale=9, color="#7fd3ff", lw=2))
    x = np.linspace(-0.32, 0.42, 100)
    ax.plot(x, 0.08 + 0.14 * np.sin(18 * x), color="#1d6fa5", lw=2.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, transparent=True)
    plt.close(fig)


if __name__ == "__main__":
    draw(ROOT / "INRCardiacRegistration.png")
    draw(ROOT / "Resources" / "Icons" / "INRCardiacRegistration.png")
