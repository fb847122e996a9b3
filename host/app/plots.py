"""Pictures a person wants to see: task outputs as colour maps, per-layer error plots.

Matplotlib is used through its object API with the Agg canvas (no pyplot
state, no display needed); plain images are written with Pillow.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

#: Colours of the Cityscapes classes and categories, by name (the usual ones).
NAMED_COLOURS = {
    "road": (128, 64, 128),
    "sidewalk": (244, 35, 232),
    "building": (70, 70, 70),
    "wall": (102, 102, 156),
    "fence": (190, 153, 153),
    "pole": (153, 153, 153),
    "traffic light": (250, 170, 30),
    "traffic sign": (220, 220, 0),
    "vegetation": (107, 142, 35),
    "terrain": (152, 251, 152),
    "sky": (70, 130, 180),
    "person": (220, 20, 60),
    "rider": (255, 0, 0),
    "car": (0, 0, 142),
    "truck": (0, 0, 70),
    "bus": (0, 60, 100),
    "train": (0, 80, 100),
    "motorcycle": (0, 0, 230),
    "bicycle": (119, 11, 32),
    # the seven categories
    "flat": (128, 64, 128),
    "construction": (70, 70, 70),
    "object": (153, 153, 153),
    "nature": (107, 142, 35),
    "human": (220, 20, 60),
    "vehicle": (0, 0, 142),
}
#: A scalar map's colours: matplotlib's ``magma`` at nine points, interpolated
#: linearly (numpy only, so maps and overlays need no matplotlib).
SCALAR_ANCHORS = np.array(
    [
        (0, 0, 4),
        (28, 16, 68),
        (79, 18, 123),
        (129, 37, 129),
        (181, 54, 122),
        (229, 80, 100),
        (251, 135, 97),
        (254, 194, 135),
        (252, 253, 191),
    ],
    dtype=np.float64,
)
#: Floor that stands for an exact zero on a log axis.
LOG_FLOOR = 1e-12


def _hsv_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def class_palette(names: tuple[str, ...] | list[str]) -> list[tuple[int, int, int]]:
    """One distinct RGB colour per class, never repeated however many classes.

    Classes with a Cityscapes name keep its colour (the first class of a colour
    does; a later one with the same colour gets a new one); the others get
    colours spread round the hue circle by the golden angle, at three
    saturation/brightness levels, skipping any colour already taken.
    """
    taken: set[tuple[int, int, int]] = set()
    out: list[tuple[int, int, int] | None] = []
    for n in names:
        c = NAMED_COLOURS.get(n.lower())
        if c is not None and c not in taken:
            taken.add(c)
            out.append(c)
        else:
            out.append(None)
    k = 0
    for i, c in enumerate(out):
        while c is None or (c in taken and out.index(c) != i):
            level = (k // 7) % 3
            c = _hsv_rgb((k * 0.618033988749895) % 1.0, (0.9, 0.55, 0.75)[level],
                         (0.9, 0.75, 0.55)[level])  # fmt: skip
            k += 1
            if c in taken:
                c = None
        taken.add(c)
        out[i] = c
    return [c for c in out if c is not None]


def classes_rgb(labels: np.ndarray, names) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours of :func:`class_palette`."""
    palette = np.array(class_palette(names), dtype=np.uint8)
    return palette[labels]


def scalar_rgb(value: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """(H, W) values -> (H, W, 3) uint8 colours and the (min, max) the colours span."""
    lo, hi = float(value.min()), float(value.max())
    norm = (value - lo) / (hi - lo) if hi > lo else np.zeros_like(value, dtype=np.float64)
    pos = np.clip(norm, 0.0, 1.0) * (len(SCALAR_ANCHORS) - 1)
    i = np.minimum(np.floor(pos).astype(np.int64), len(SCALAR_ANCHORS) - 2)
    f = (pos - i)[..., None]
    rgb = SCALAR_ANCHORS[i] * (1 - f) + SCALAR_ANCHORS[i + 1] * f
    return np.round(rgb).astype(np.uint8), (lo, hi)


def vector_rgb(vec: np.ndarray) -> np.ndarray:
    """(C, H, W) vectors (e.g. surface normals) -> (H, W, 3) uint8: unit x, y, z as R, G, B."""
    v = np.zeros((3, *vec.shape[1:]), dtype=np.float64)
    v[: min(3, vec.shape[0])] = vec[:3]
    n = np.linalg.norm(v, axis=0, keepdims=True)
    v = np.where(n > 0, v / np.where(n > 0, n, 1.0), 0.0)
    return np.round((v.transpose(1, 2, 0) + 1.0) * 127.5).astype(np.uint8)


def task_rgb(spec, output: np.ndarray) -> np.ndarray:
    """The colour map of one task output (C, H, W) by the task's declared kind.

    Parameters
    ----------
    spec : edgemoe.models.config.TaskSpec
        ``classes``: argmax coloured by class; ``scalar``: channel 0 on a colour
        scale; ``vector``: the vector as RGB.
    output : ndarray (C, H, W)
    """
    if spec.kind == "classes":
        return classes_rgb(output.argmax(axis=0), spec.classes)
    if spec.kind == "vector":
        return vector_rgb(output)
    return scalar_rgb(output[0])[0]


def blend(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``colours`` laid over ``image`` with opacity ``alpha`` (both (H, W, 3) uint8)."""
    out = (1 - alpha) * image.astype(np.float64) + alpha * colours.astype(np.float64)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def save_png(path: Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image as PNG."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(path, format="PNG")


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def scalar_label(spec, unit: str | None = None) -> str:
    """A scalar task's colour-bar label with its unit.

    Parameters
    ----------
    spec : edgemoe.models.config.TaskSpec
    unit : {'m', 'disparity'} or None
        What the values are in: that of the data the weights were trained on
        (:func:`edgemoe.models.data.trained_depth_unit`). ``None``: metres for a
        task with a ``far`` (a depth task's ``far`` is in metres), else no unit.

    Returns
    -------
    str
        ``depth (m)``, ``depth: disparity (MTAN scale)``, or the bare name.
    """
    from edgemoe.models.data import DEPTH_UNIT_LABELS

    if unit is None:
        unit = "m" if spec.far is not None else None
    if unit is None:
        return spec.name
    if unit == "m":
        return f"{spec.name} (m)"
    return f"{spec.name}: {DEPTH_UNIT_LABELS.get(unit, unit)}"


def task_figure(
    path: Path,
    image: np.ndarray,
    spec,
    output: np.ndarray,
    title: str,
    subtitle: str = "",
    unit: str | None = None,
) -> None:
    """Input, task colour map and overlay side by side, with a legend or colour bar, as PNG.

    Parameters
    ----------
    path : Path
    image : uint8 (H, W, 3)
    spec : edgemoe.models.config.TaskSpec
        The task's declared kind picks the drawing: ``classes`` with a legend of
        the classes present (their names), ``scalar`` with a colour bar,
        ``vector`` as RGB.
    output : ndarray (C, H, W)
    title : str
    subtitle : str
        A second title line (the weights the output came from).
    unit : str or None
        The unit of a ``scalar`` output, for its colour bar (see :func:`scalar_label`).
    """
    h, w = image.shape[:2]
    aspect = w / h
    fig = _figure(3 * 3.2 * aspect * 0.6 + 2.6, 3.2 * 0.6 + 1.0)
    axes = fig.subplots(1, 4, width_ratios=[aspect, aspect, aspect, 0.9])
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=9)
    rgb = task_rgb(spec, output)
    axes[1].imshow(rgb, interpolation="nearest")
    if spec.kind == "classes":
        from matplotlib.patches import Patch

        labels = output.argmax(axis=0)
        palette = class_palette(spec.classes)
        handles = [
            Patch(color=np.array(palette[c]) / 255, label=spec.classes[c])
            for c in np.unique(labels)
        ]
        ncol = 2 if len(handles) > 10 else 1  # keep a long legend inside the figure height
        axes[3].legend(handles=handles, loc="center left", fontsize=7, frameon=False, ncol=ncol)
    elif spec.kind == "scalar":
        from matplotlib import colors
        from matplotlib.cm import ScalarMappable

        lo, hi = scalar_rgb(output[0])[1]
        cmap = colors.ListedColormap(scalar_rgb(np.linspace(0.0, 1.0, 256)[None])[0][0] / 255)
        fig.colorbar(
            ScalarMappable(colors.Normalize(lo, hi), cmap), ax=axes[3], location="left",
            fraction=0.5, shrink=0.8, label=scalar_label(spec, unit),
        )  # fmt: skip
    else:
        axes[3].text(0, 0.5, "unit vector\nx, y, z as\nR, G, B", fontsize=7, va="center")
    axes[1].set_title(f"{spec.name} ({spec.kind})", fontsize=9)
    axes[2].imshow(blend(image, rgb))
    axes[2].set_title("overlay", fontsize=9)
    fig.suptitle(f"{title}\n{subtitle}" if subtitle else title, fontsize=9)
    fig.savefig(path, format="png")


def layer_error_plot(table: list[dict], path: Path, title: str) -> None:
    """rel_rms at every layer boundary, one line per backend pair, log scale.

    Parameters
    ----------
    table : list of dict
        Rows of :func:`edgemoe.host.app.verify.layer_table` (``stage`` plus one rel_rms
        per ``"a-b"`` pair); route rows (agreement, not an error) are skipped.
    path : Path
        PNG to write.
    title : str
    """
    rows = [r for r in table if not r["stage"].endswith(".route")]
    pair_names = list(dict.fromkeys(k for r in rows for k in r if k != "stage"))
    fig = _figure(max(6.0, 0.12 * len(rows) + 2), 3.6)
    ax = fig.subplots()
    x = np.arange(len(rows))
    # pairs with the same errors at every boundary (torch-golden and torch-csim, when golden
    # and the C-sim are bit-exact) are one line named after all of them, not one hiding
    # another; the rest differ in style too, so a line drawn over another still shows
    lines: dict[bytes, tuple[list[str], np.ndarray]] = {}
    for name in pair_names:
        y = np.array([r.get(name, np.nan) for r in rows], dtype=np.float64)
        lines.setdefault(y.tobytes(), ([], y))[0].append(name)
    styles = ("-", "--", ":", "-.")
    markers = ("o", "s", "^", "x", "d")
    for i, (names, y) in enumerate(lines.values()):
        exact = bool(np.nanmax(y) == 0) if np.isfinite(y).any() else False
        label = " = ".join(names)
        label = f"{label} (bit-exact: 0 drawn at {LOG_FLOOR:g})" if exact else label
        ax.semilogy(
            x,
            np.maximum(y, LOG_FLOOR),
            linestyle=styles[i % len(styles)],
            marker=markers[i % len(markers)],
            markersize=3,
            linewidth=1,
            label=label,
        )
    step = max(1, len(rows) // 24)
    ax.set_xticks(x[::step], [r["stage"] for r in rows][::step], rotation=60, fontsize=6)
    ax.set_ylabel("rel_rms between the pair")
    width = int(fig.get_figwidth() * 13)  # characters of 8-point text across the figure
    wrapped = "\n".join(textwrap.fill(line, width) for line in title.splitlines())
    ax.set_title(wrapped, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, format="png")
