"""A run's ``function_report.png``: the LV volume curve, the global strain and twist curves, and bull's-eyes of the
peak strain per AHA segment.

Bull's-eye layout (Cerqueira et al., Circulation 2002): the apex (17) in the centre, then the apical (13-16), mid
(7-12) and basal (1-6) rings outwards; anterior at the top, septum on the left, lateral on the right, inferior at the
bottom. Peak per segment: the most positive radial, the most negative circumferential and longitudinal strain over
the cycle (Green-Lagrange, %). Phases in % of the cycle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.aha_segments import EXTENTS, SEGMENT_NAMES, SEGMENTS, bullseye_angle_deg
from ..core.atomic_file import atomic_path
from ..core.vocabulary import phase_pct

STRAIN_KINDS = (("radial", np.nanmax), ("circumferential", np.nanmin), ("longitudinal", np.nanmin))  # peak = max/min


def peak_segment_strain(function) -> np.ndarray:
    """(17, 3): per segment the peak radial (max), circumferential (min) and longitudinal (min) strain in %."""
    stack = np.stack([s.segments_pct for s in function.strain])  # (frames, 17, 3)
    return np.stack([pick(stack[:, :, k], axis=0) for k, (_, pick) in enumerate(STRAIN_KINDS)], axis=1)


def draw_bullseye(ax, values: np.ndarray, title: str, cmap: str = "RdBu_r", limit: float | None = None,
                  marked: int | None = None) -> object:
    """The 17 segments on polar axes ``ax``, coloured by ``values`` (17,), each labelled with its value; ``marked``:
    a segment drawn with a thick outline. Returns the colour mapping (for a colour bar)."""
    from matplotlib import cm, colors

    limit = limit or float(np.nanmax(np.abs(values))) or 1.0
    norm = colors.Normalize(-limit, limit)
    mapping = cm.ScalarMappable(norm=norm, cmap=cmap)
    order = sorted(zip(SEGMENTS, values, strict=True), key=lambda item: item[0] == marked)  # the marked one last
    for segment, value in order:
        ring, width = EXTENTS[segment].ring, EXTENTS[segment].width_deg
        centre = bullseye_angle_deg(EXTENTS[segment].centre_deg) if ring else 0.0
        face = "#dddddd" if not np.isfinite(value) else mapping.to_rgba(value)
        edge = ("black", 2.5) if segment == marked else ("white", 1.0)
        ax.bar(np.radians(centre), 1.0, width=np.radians(width), bottom=ring, color=face, edgecolor=edge[0],
               linewidth=edge[1])
        text = "-" if not np.isfinite(value) else f"{value:.0f}"
        ax.text(np.radians(centre), ring + (0.0 if ring == 0 else 0.5), f"{segment}\n{text}", ha="center",
                va="center", fontsize=7)
    ax.set_ylim(0, 4)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    return mapping


def write_function_report(function, path: str | Path, title: str = "", marked: int | None = None) -> Path:
    """Write the report PNG of a :class:`~.cardiac_function.CardiacFunction` to ``path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(15.0, 8.5), dpi=100, layout="constrained")
    grid = figure.add_gridspec(2, 3)
    phases = [phase_pct(t, function.frame_count) for t in function.frames]
    volume = figure.add_subplot(grid[0, 0])
    volume.plot(phases, function.lv_volume_ml, "o-", color="#d62728", label="LV cavity")
    volume.plot(phases, function.myocardium_volume_ml, "s-", color="#7f7f7f", label="myocardium")
    for frame, name in ((function.ed_frame, "ED"), (function.es_frame, "ES")):
        volume.axvline(phase_pct(frame, function.frame_count), color="black", linestyle=":", linewidth=1)
        volume.text(phase_pct(frame, function.frame_count), volume.get_ylim()[1], f" {name}", va="top", fontsize=8)
    volume.set(xlabel="phase (% of the cycle)", ylabel="volume (mL)",
               title=f"EDV {function.edv_ml:.0f} mL, ESV {function.esv_ml:.0f} mL, EF {function.ef_pct:.1f} %")
    volume.legend(loc="lower left", fontsize=8)
    curves = figure.add_subplot(grid[0, 1:])
    if function.strain:
        for name, label, colour in (("grs_pct", "GRS (radial)", "#1f77b4"), ("gcs_pct", "GCS (circumferential)",
                                                                           "#ff7f0e"),
                                    ("gls_pct", "GLS (longitudinal)", "#2ca02c")):
            curves.plot(phases, [getattr(s, name) for s in function.strain], "o-", color=colour, label=label)
        curves.axhline(0.0, color="black", linewidth=0.8)
        curves.set(xlabel="phase (% of the cycle)", ylabel="Green-Lagrange strain (%)",
                   title="Global strain and twist (reference frame = 0)")
        twist = curves.twinx()
        twist.plot(phases, [s.twist_deg for s in function.strain], "d--", color="#9467bd", label="twist")
        twist.set_ylabel("twist, apical - basal rotation (degrees)", color="#9467bd")
        lines = curves.get_legend_handles_labels()
        more = twist.get_legend_handles_labels()
        curves.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8, ncol=4)
        peaks = peak_segment_strain(function)
        for column, (label, _) in enumerate(STRAIN_KINDS):
            ax = figure.add_subplot(grid[1, column], projection="polar")
            limit = float(np.nanmax(np.abs(peaks[:, column]))) or 1.0
            mapping = draw_bullseye(ax, peaks[:, column], f"peak {label} strain per segment (%)",
                                    limit=limit, marked=marked)
            figure.colorbar(mapping, ax=ax, shrink=0.7, pad=0.1)
    else:
        curves.text(0.5, 0.5, "strain not measured:\n" + "\n".join(function.notes), ha="center", va="center",
                    wrap=True, transform=curves.transAxes)
        curves.set_axis_off()
    outlined = "" if marked is None else f"; outlined: segment {marked} ({SEGMENT_NAMES[marked]})"
    figure.suptitle((title or "Cardiac function") + outlined, fontsize=12)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return path
