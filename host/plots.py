"""Pictures a person wants to see: task outputs as colour maps, per-layer error plots.

Matplotlib is used through its object API with the Agg canvas (no pyplot
state, no display needed); plain images are written with Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Cityscapes' 19 evaluation classes and their usual colours (semseg with 19 channels).
CITYSCAPES = (
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)
DEPTH_CMAP = "magma"
#: Floor that stands for an exact zero on a log axis.
LOG_FLOOR = 1e-12


def semseg_classes(num_classes: int) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, RGB) per class: Cityscapes' for 19 classes, else a tab20 cycle."""
    if num_classes == len(CITYSCAPES):
        return list(CITYSCAPES)
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [
        (f"class {i}", tuple(int(round(255 * v)) for v in cmap(i % 20)[:3]))
        for i in range(num_classes)
    ]


def semseg_rgb(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours."""
    palette = np.array([c for _, c in semseg_classes(num_classes)], dtype=np.uint8)
    return palette[labels]


def depth_rgb(depth: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """(H, W) depth -> (H, W, 3) uint8 colours and the (min, max) the colours span."""
    from matplotlib import colormaps

    lo, hi = float(depth.min()), float(depth.max())
    norm = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    rgb = colormaps[DEPTH_CMAP](norm)[..., :3]
    return np.round(rgb * 255).astype(np.uint8), (lo, hi)


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


def task_figure(
    path: Path,
    image: np.ndarray,
    task: str,
    output: np.ndarray,
    title: str,
) -> None:
    """Input, task colour map (legend or colorbar) and overlay side by side, as one PNG.

    Parameters
    ----------
    path : Path
    image : uint8 (H, W, 3)
    task : str
        ``semseg`` (``output`` is (C, H, W) logits) or a dense regression task
        such as ``depth`` (``output`` is (1, H, W)).
    output : ndarray (C, H, W)
    title : str
    """
    h, w = image.shape[:2]
    aspect = w / h
    fig = _figure(3 * 3.2 * aspect * 0.6 + 2.4, 3.2 * 0.6 + 0.8)
    axes = fig.subplots(1, 3)
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=9)
    if task == "semseg":
        labels = output.argmax(axis=0)
        rgb = semseg_rgb(labels, output.shape[0])
        axes[1].imshow(rgb, interpolation="nearest")
        present = np.unique(labels)
        from matplotlib.patches import Patch

        classes = semseg_classes(output.shape[0])
        handles = [Patch(color=np.array(classes[c][1]) / 255, label=classes[c][0]) for c in present]
        ncol = 2 if len(handles) > 10 else 1  # keep a long legend inside the figure height
        fig.legend(
            handles=handles, loc="outside right center", fontsize=7, frameon=False, ncol=ncol
        )
    else:
        from matplotlib import colors

        value = output[0]
        rgb, (lo, hi) = depth_rgb(value)
        im = axes[1].imshow(value, cmap=DEPTH_CMAP, norm=colors.Normalize(lo, hi))
        fig.colorbar(im, ax=axes[1], shrink=0.8, label=task)
    axes[1].set_title(task, fontsize=9)
    axes[2].imshow(blend(image, rgb))
    axes[2].set_title("overlay", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, format="png")


def task_rgb(task: str, output: np.ndarray) -> np.ndarray:
    """The colour map of one task output (C, H, W) at the image size."""
    if task == "semseg":
        return semseg_rgb(output.argmax(axis=0), output.shape[0])
    return depth_rgb(output[0])[0]


def layer_error_plot(table: list[dict], path: Path, title: str) -> None:
    """rel_rms at every layer boundary, one line per backend pair, log scale.

    Parameters
    ----------
    table : list of dict
        Rows of :func:`edgemoe.host.verify.layer_table` (``stage`` plus one rel_rms
        per ``"a-b"`` pair); route rows (agreement, not an error) are skipped.
    path : Path
        PNG to write.
    title : str
    """
    rows = [r for r in table if not r["stage"].endswith(".route")]
    pair_names = sorted({k for r in rows for k in r if k != "stage"})
    fig = _figure(max(6.0, 0.12 * len(rows) + 2), 3.6)
    ax = fig.subplots()
    x = np.arange(len(rows))
    for name in pair_names:
        y = np.array([r.get(name, np.nan) for r in rows], dtype=np.float64)
        exact = bool(np.nanmax(y) == 0) if np.isfinite(y).any() else False
        label = f"{name} (bit-exact: 0 drawn at {LOG_FLOOR:g})" if exact else name
        ax.semilogy(x, np.maximum(y, LOG_FLOOR), marker=".", linewidth=1, label=label)
    step = max(1, len(rows) // 24)
    ax.set_xticks(x[::step], [r["stage"] for r in rows][::step], rotation=60, fontsize=6)
    ax.set_ylabel("rel_rms vs first backend")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, format="png")
