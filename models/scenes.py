"""Procedural Cityscapes-like street scenes with per-pixel semseg and metric depth.

A scene is rendered by casting one ray per pixel centre from a pinhole camera
over a flat ground plane and intersecting every ray with a few kinds of planar
surfaces, nearest hit wins (a z-buffer, so occlusion follows depth order):

- **Camera.** Height ``h`` above the ground (1.1–1.9 m), pitched down by ``phi``
  (−2°…4°), horizontal field of view 44–56° (Cityscapes: 49°), principal point
  near the image centre. World axes: ``X`` right, ``Y`` down, ``Z`` forward,
  camera at the origin, ground plane ``Y = h``. A pixel ``(u, v)`` has the
  normalised ray ``(xn, yn, 1)`` in camera axes and the world direction
  ``(xn, yn cos phi + sin phi, cos phi - yn sin phi)``; its ray parameter ``t``
  *is* the camera z-depth, the depth Cityscapes' disparity gives.
- **Depth** in metres: ``h / (yn cos phi + sin phi)`` on the ground,
  ``Z / (cos phi - yn sin phi)`` on a plane facing the camera at distance
  ``Z``, ``X / xn`` on a street-side facade ``X = const``. The sky and anything
  beyond the depth task's ``far`` value (config) read ``far``; 0 marks invalid
  pixels (the ego vehicle's bonnet, stereo-like holes).
- **Layout.** A road (lane markings) between sidewalks, terrain strips, rows of
  buildings on both sides (windows, setbacks, gaps), sometimes a facade closing
  the street, trees and hedges, poles with signs or traffic lights, pedestrians
  on the sidewalks or crossing, cars, vans and buses in the lanes and parked.
- **Appearance.** Per-scene palettes, world-anchored textures (so they shrink
  with distance), a sun side (facades and shadows), global exposure and tint,
  haze towards the sky colour with distance, sensor noise, slight blur.

Labels are the 7 Cityscapes categories M3ViT trains on (:data:`CATEGORIES`) and
−1 for void. Everything is vectorised numpy over pixels; a scene is a pure
function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Cityscapes' 7 categories (``label_7``), in their usual id order: the ``category``
#: names of cityscapesScripts' ``labels.py`` with category ids 1 … 7 (``void``, id 0,
#: is the ignore label −1 here, as in MTAN's and M3ViT's ``label_7``).
CATEGORIES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
#: A colour per category. ``labels.py`` colours labels, not categories; each
#: category takes the colour of its most common label there: road, building, pole,
#: vegetation, sky, person, car. (cityscapesScripts is not a dependency: these seven
#: triples are all the project takes from it.)
CATEGORY_COLOURS = {
    "flat": (128, 64, 128),
    "construction": (70, 70, 70),
    "object": (153, 153, 153),
    "nature": (107, 142, 35),
    "sky": (70, 130, 180),
    "human": (220, 20, 60),
    "vehicle": (0, 0, 142),
}
FLAT, CONSTRUCTION, OBJECT, NATURE, SKY, HUMAN, VEHICLE = range(7)
#: Label of void / ignored pixels, as in the preprocessed Cityscapes ``label_7``.
IGNORE = -1

_NEAR = 0.3  # metres: nothing is rendered closer to the camera
_MISS = 1e6  # ray parameter of a miss: finite, so textures stay defined there


@dataclass(frozen=True)
class Camera:
    """A pinhole camera over the ground plane (see the module docstring).

    Attributes
    ----------
    height : float
        Metres above the ground.
    pitch : float
        Radians, positive looking down.
    focal : float
        Focal length in pixels.
    cx, cy : float
        Principal point in pixels.
    """

    height: float
    pitch: float
    focal: float
    cx: float
    cy: float

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """World points to pixel coordinates ``(u, v)`` and camera depth."""
        s, c = math.sin(self.pitch), math.cos(self.pitch)
        zc = np.maximum(y * s + z * c, 1e-6)
        yc = y * c - z * s
        return self.cx + self.focal * x / zc, self.cy + self.focal * yc / zc, zc


class _Canvas:
    """Colour, label and depth buffers with a z-test, plus the per-pixel rays."""

    def __init__(self, h: int, w: int, cam: Camera) -> None:
        self.h, self.w, self.cam = h, w, cam
        self.xn = ((np.arange(w) + 0.5 - cam.cx) / cam.focal)[None, :].repeat(h, 0)
        self.yn = ((np.arange(h) + 0.5 - cam.cy) / cam.focal)[:, None].repeat(w, 1)
        s, c = math.sin(cam.pitch), math.cos(cam.pitch)
        self.dy = self.yn * c + s  # world Y (down) per unit of depth
        self.dz = c - self.yn * s  # world Z (forward) per unit of depth
        self.depth = np.full((h, w), np.inf)
        self.label = np.full((h, w), SKY, np.int64)
        self.color = np.zeros((h, w, 3))

    def window(self, corners: np.ndarray) -> tuple[slice, slice] | None:
        """Pixel rows/cols covering world ``corners`` ``(n, 3)`` (None: off screen/behind)."""
        x, y, z = corners.T
        if (z <= _NEAR).all():
            return None
        u, v, _ = self.cam.project(x, y, np.maximum(z, _NEAR))
        r0, r1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 1, self.h)
        c0, c1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 1, self.w)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def paint(
        self, win: tuple[slice, slice], t: np.ndarray, hit: np.ndarray, label: int, color
    ) -> None:
        """Write ``label`` and ``color`` where ``hit`` and nearer than what is there."""
        cur = self.depth[win]
        m = hit & (t < cur) & (t > _NEAR)
        if not m.any():
            return
        cur[m] = t[m]
        self.label[win][m] = label
        col = np.broadcast_to(np.asarray(color, dtype=np.float64), (*t.shape, 3))
        self.color[win][m] = col[m]


# ---- textures --------------------------------------------------------------


#: Lattice values of the texture noise: a fixed table (a constant, not RNG state),
#: indexed by the lattice point and a texture seed, which is much faster than hashing.
_LATTICE = np.random.default_rng(20260101).random(256 * 256)


def _noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1) with unit lattice spacing (bilinear, smoothstep)."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    c0 = (x0.astype(np.int64) + seed * 104729) & 255
    r0 = ((y0.astype(np.int64) + seed * 7919) & 255) * 256
    c1, r1 = (c0 + 1) & 255, (r0 + 256) & 0xFFFF
    t = _LATTICE
    top = t[r0 + c0] * (1 - fx) + t[r0 + c1] * fx
    bot = t[r1 + c0] * (1 - fx) + t[r1 + c1] * fx
    return top * (1 - fy) + bot * fy


def _fbm(x: np.ndarray, y: np.ndarray, seed: int, octaves: int = 3) -> np.ndarray:
    """Fractal noise around 0.5 (a few octaves of :func:`_noise`)."""
    out, amp, tot = np.zeros_like(x), 1.0, 0.0
    for o in range(octaves):
        out += amp * _noise(x * 2**o, y * 2**o, seed + 101 * o)
        tot += amp
        amp *= 0.5
    return out / tot


def _shade(base, n: np.ndarray, amount: float) -> np.ndarray:
    """``base`` colour modulated by a noise field ``n`` in [0, 1]."""
    return np.asarray(base)[None, None, :] * (1 + amount * (n[..., None] - 0.5) * 2)


# ---- palettes --------------------------------------------------------------

_FACADES = np.array(
    [
        [0.55, 0.53, 0.50],
        [0.70, 0.66, 0.58],
        [0.62, 0.38, 0.30],
        [0.80, 0.78, 0.74],
        [0.45, 0.45, 0.48],
        [0.72, 0.60, 0.45],
        [0.52, 0.56, 0.60],
    ]
)
_CARS = np.array(
    [
        [0.08, 0.08, 0.09],
        [0.85, 0.85, 0.86],
        [0.55, 0.56, 0.58],
        [0.60, 0.10, 0.10],
        [0.12, 0.20, 0.45],
        [0.25, 0.30, 0.28],
        [0.75, 0.70, 0.55],
    ]
)
_CLOTHES = np.array(
    [
        [0.10, 0.10, 0.12],
        [0.20, 0.22, 0.35],
        [0.55, 0.15, 0.15],
        [0.75, 0.72, 0.68],
        [0.30, 0.40, 0.25],
        [0.45, 0.35, 0.25],
    ]
)


def _pick(rng: np.random.Generator, palette: np.ndarray, jitter: float = 0.06) -> np.ndarray:
    return np.clip(palette[rng.integers(len(palette))] + rng.normal(0, jitter, 3), 0.02, 1.0)


# ---- surfaces --------------------------------------------------------------


@dataclass
class _Street:
    """Per-scene layout constants shared by the surface painters."""

    road_c: float  # lateral centre of the road (m)
    road_half: float
    walk: float  # sidewalk width
    curb_left: float  # X of the left curb (negative)
    curb_right: float
    sun: float  # +1 sun from the right, -1 from the left
    tex: int  # texture seed


def _ground(cv: _Canvas, st: _Street, rng: np.random.Generator) -> None:
    cam = cv.cam
    hit = cv.dy > 1e-6
    t = np.where(hit, cam.height / np.maximum(cv.dy, 1e-6), _MISS)
    x, z = t * cv.xn, t * cv.dz
    n = _fbm(x * 1.5, z * 0.5, st.tex)
    fine = _noise(x * 9, z * 9, st.tex + 7)
    road = np.abs(x - st.road_c) < st.road_half
    walk = ~road & (x > st.curb_left - st.walk) & (x < st.curb_right + st.walk)
    asphalt = np.array([0.33, 0.32, 0.34]) * rng.uniform(0.7, 1.25)
    col = _shade(asphalt, 0.6 * n + 0.4 * fine, 0.25)
    # lane markings: dashed lines every lane, a solid line near each curb
    lanes = max(1, round(2 * st.road_half / 3.3))
    lane_w = 2 * st.road_half / lanes
    rel = x - (st.road_c - st.road_half)
    mark = np.zeros_like(hit)
    for k in range(1, lanes):
        mark |= (np.abs(rel - k * lane_w) < 0.08) & ((z + st.tex % 7) % 9 < 3)
    for edge in (0.25, 2 * st.road_half - 0.25):
        mark |= np.abs(rel - edge) < 0.07
    if rng.random() < 0.3:  # a crosswalk
        z0 = rng.uniform(6, 25)
        mark |= (z > z0) & (z < z0 + 3) & ((x * 2) % 2 < 1) & road
    col = np.where((mark & road)[..., None], np.array([0.85, 0.85, 0.82]), col)
    slab = np.array([0.55, 0.53, 0.50]) * rng.uniform(0.75, 1.2)
    joints = ((z % 1.2) < 0.05) | (((x - st.curb_right) % 1.2) < 0.05)
    walk_col = _shade(slab, n, 0.2) * np.where(joints, 0.8, 1.0)[..., None]
    col = np.where(walk[..., None], walk_col, col)
    # beyond the sidewalks: terrain (nature) or more pavement (flat)
    outside = ~road & ~walk
    terrain = outside & (_noise(x * 0.2, z * 0.05, st.tex + 3) < rng.uniform(0.3, 0.8))
    grass = _shade(np.array([0.30, 0.42, 0.18]) * rng.uniform(0.7, 1.2), fine, 0.4)
    col = np.where(terrain[..., None], grass, col)
    label = np.where(terrain, NATURE, FLAT)
    win = (slice(0, cv.h), slice(0, cv.w))
    for lab in (FLAT, NATURE):
        cv.paint(win, t, hit & (label == lab), lab, col)


def _facade_side(
    cv: _Canvas,
    st: _Street,
    rng: np.random.Generator,
    side: int,
    x_plane: float,
    z0: float,
    z1: float,
    height: float,
    kind: int,
) -> None:
    """A vertical rectangle in the plane ``X = x_plane`` (a facade, hedge or wall)."""
    cam = cv.cam
    y_top = cam.height - height
    corners = np.array([[x_plane, y, z] for y in (y_top, cam.height) for z in (z0, z1)])
    win = cv.window(corners)
    if win is None:
        return
    xn, dy, dz = cv.xn[win], cv.dy[win], cv.dz[win]
    ok = xn * x_plane > 1e-9
    t = np.where(ok, x_plane / np.where(ok, xn, 1.0), _MISS)
    y, z = t * dy, t * dz
    hit = ok & (z >= z0) & (z <= z1) & (y <= cam.height)
    up = cam.height - y  # metres above the ground
    seed = st.tex + int(z0 * 10) + side * 977
    light = 1.0 + 0.18 * side * st.sun
    if kind == CONSTRUCTION:
        hit &= up <= height
        base = _pick(rng, _FACADES)
        col = _shade(base * light, _fbm(z * 2, up * 2, seed), 0.15)
        px, py = rng.uniform(2.2, 4.0), rng.uniform(2.8, 3.6)
        fx, fy = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.6)
        wz, wy = ((z - z0) % px) / px, (up % py) / py
        window = (np.abs(wz - 0.5) < fx / 2) & (np.abs(wy - 0.55) < fy / 2) & (up > 2.5)
        window &= up < height - 1.0
        glass = np.array([0.18, 0.22, 0.28]) * rng.uniform(0.6, 1.6)
        col = np.where(window[..., None], _shade(glass, _noise(z, up, seed + 5), 0.5), col)
        if rng.random() < 0.5:  # shop fronts at street level
            shop = (up > 0.3) & (up < 2.6) & (((z - z0) % 6.0) < 4.0)
            col = np.where(shop[..., None], glass * 0.8, col)
    else:  # hedge / vegetation wall with a ragged top
        top = height * (0.8 + 0.4 * _fbm(z * 0.8, np.zeros_like(z), seed, 2))
        hit &= up <= top
        leaf = np.array([0.20, 0.32, 0.12]) * rng.uniform(0.7, 1.3)
        col = _shade(leaf * light, _fbm(z * 6, up * 6, seed), 0.5)
    cv.paint(win, t, hit, kind, col)


def _facing(
    cv: _Canvas,
    x0: float,
    x1: float,
    y_top: float,
    y_bot: float,
    z: float,
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Window and per-pixel depth, world X and height above ground on the plane ``Z = z``."""
    corners = np.array([[x, y, z] for x in (x0, x1) for y in (y_top, y_bot)])
    win = cv.window(corners)
    if win is None or z <= _NEAR:
        return None
    t = z / cv.dz[win]
    x, y = t * cv.xn[win], t * cv.dy[win]
    inside = (x >= x0) & (x <= x1) & (y >= y_top) & (y <= y_bot)
    return win, t, x, cv.cam.height - y, inside


def _end_facade(cv: _Canvas, st: _Street, rng: np.random.Generator, z: float) -> None:
    """Buildings closing the street at distance ``z``."""
    h = cv.cam.height
    x = -80.0
    while x < 80.0:
        w, height = rng.uniform(8, 25), rng.uniform(8, 35)
        f = _facing(cv, x, x + w, h - height, h, z + rng.uniform(0, 8))
        if f is not None:
            win, t, xx, up, inside = f
            base = _pick(rng, _FACADES)
            col = _shade(base, _fbm(xx, up, st.tex + int(x)), 0.2)
            win_mask = ((xx % 3.0) < 1.5) & ((up % 3.2) < 1.6) & (up > 2.5)
            col = np.where(win_mask[..., None], col * 0.5, col)
            cv.paint(win, t, inside, CONSTRUCTION, col)
        x += w


def _tree(cv: _Canvas, st: _Street, rng: np.random.Generator, x: float, z: float) -> None:
    h = cv.cam.height
    trunk_h, r = rng.uniform(2.0, 3.5), rng.uniform(1.2, 3.0)
    tw = rng.uniform(0.15, 0.35)
    f = _facing(cv, x - tw / 2, x + tw / 2, h - trunk_h - r, h, z)
    if f is not None:
        win, t, _, _, inside = f
        cv.paint(win, t, inside, NATURE, np.array([0.28, 0.22, 0.16]) * rng.uniform(0.7, 1.2))
    cy = trunk_h + r * 0.9
    f = _facing(cv, x - r * 1.3, x + r * 1.3, h - cy - r * 1.3, h - cy + r * 1.3, z - 0.3)
    if f is not None:
        win, t, xx, up, _ = f
        rag = _fbm(xx * 1.5, up * 1.5, st.tex + int(z * 13), 2)
        inside = ((xx - x) / r) ** 2 + ((up - cy) / (0.9 * r)) ** 2 < 0.7 + 0.6 * rag
        leaf = np.array([0.22, 0.35, 0.12]) * rng.uniform(0.6, 1.3)
        col = _shade(leaf, _fbm(xx * 5, up * 5, st.tex + 17), 0.6)
        cv.paint(win, t, inside, NATURE, col)


def _pole(cv: _Canvas, st: _Street, rng: np.random.Generator, x: float, z: float) -> None:
    h = cv.cam.height
    tall, w = rng.uniform(3.0, 8.0), rng.uniform(0.1, 0.25)
    metal = np.array([0.45, 0.45, 0.47]) * rng.uniform(0.5, 1.3)
    f = _facing(cv, x - w / 2, x + w / 2, h - tall, h, z)
    if f is not None:
        win, t, _, _, inside = f
        cv.paint(win, t, inside, OBJECT, metal)
    kind = rng.random()
    if kind < 0.45:  # a sign: square or round plate
        s = rng.uniform(0.5, 0.9)
        up0 = tall - rng.uniform(0.0, 1.0) - s
        f = _facing(cv, x - s / 2, x + s / 2, h - up0 - s, h - up0, z - 0.05)
        if f is not None:
            win, t, xx, up, inside = f
            if rng.random() < 0.5:
                inside &= ((xx - x) ** 2 + (up - up0 - s / 2) ** 2) < (s / 2) ** 2
            colors = np.array([[0.8, 0.1, 0.1], [0.1, 0.3, 0.7], [0.9, 0.8, 0.1], [0.9, 0.9, 0.9]])
            cv.paint(win, t, inside, OBJECT, _pick(rng, colors, 0.05))
    elif kind < 0.75:  # a traffic light
        bw, bh = rng.uniform(0.3, 0.45), rng.uniform(0.8, 1.1)
        up0 = tall - bh
        f = _facing(cv, x - bw / 2, x + bw / 2, h - tall, h - up0, z - 0.05)
        if f is not None:
            win, t, xx, up, inside = f
            col = np.full((*t.shape, 3), 0.08)
            lamp = rng.integers(3)
            cyl = up0 + bh * (lamp + 0.5) / 3
            lit = ((xx - x) ** 2 + (up - cyl) ** 2) < (bw * 0.3) ** 2
            lamp_col = np.array([[0.2, 0.9, 0.3], [0.95, 0.7, 0.1], [0.95, 0.15, 0.1]])[lamp]
            col[lit] = lamp_col
            cv.paint(win, t, inside, OBJECT, col)


def _person(cv: _Canvas, st: _Street, rng: np.random.Generator, x: float, z: float) -> None:
    h = cv.cam.height
    tall = rng.uniform(1.5, 1.95)
    wide = tall * rng.uniform(0.24, 0.32)
    f = _facing(cv, x - wide / 2, x + wide / 2, h - tall, h, z)
    if f is None:
        return
    win, t, xx, up, inside = f
    rx = (xx - x) / (wide / 2)  # -1..1 across
    head = (rx * wide / 2) ** 2 + (up - tall + 0.12) ** 2 < 0.11**2
    torso = (up > 0.85 * tall * 0.55) & (up < tall - 0.22) & (np.abs(rx) < 0.85)
    gap = rng.uniform(0.05, 0.3)
    legs = (up <= 0.85 * tall * 0.55) & (np.abs(rx) < 0.6) & (np.abs(rx) > gap)
    body = inside & (head | torso | legs)
    col = np.broadcast_to(_pick(rng, _CLOTHES), (*t.shape, 3)).copy()
    col[legs] = _pick(rng, _CLOTHES)
    col[head] = np.array([0.75, 0.58, 0.45]) * rng.uniform(0.5, 1.1)
    cv.paint(win, t, body, HUMAN, col)


def _vehicle(
    cv: _Canvas, st: _Street, rng: np.random.Generator, x: float, z: float, big: bool
) -> None:
    """A car (or van/bus): its back or front face and the side facing the camera."""
    h = cv.cam.height
    if big:
        w, tall, length = rng.uniform(2.3, 2.6), rng.uniform(2.5, 3.4), rng.uniform(6, 12)
    else:
        w, tall, length = rng.uniform(1.65, 1.95), rng.uniform(1.35, 1.65), rng.uniform(3.8, 4.8)
    body = _pick(rng, _CARS)
    glass = np.array([0.12, 0.14, 0.17])
    x0, x1 = x - w / 2, x + w / 2
    cabin = 0.55 if not big else 0.35  # fraction of the height below the windows
    f = _facing(cv, x0, x1, h - tall, h, z)
    if f is not None:
        win, t, xx, up, inside = f
        inset = np.where(up > cabin * tall, 0.12 * w, 0.0)
        inside &= (xx > x0 + inset) & (xx < x1 - inset) & (up > 0.12)
        col = np.broadcast_to(body, (*t.shape, 3)).copy()
        win_band = (up > cabin * tall + 0.08) & (up < tall - 0.1)
        col[win_band] = glass
        lights = (up > cabin * tall - 0.3) & (up < cabin * tall - 0.1)
        lights &= (np.abs(xx - x0) < 0.35) | (np.abs(xx - x1) < 0.35)
        col[lights] = np.array([0.7, 0.1, 0.08])
        cv.paint(win, t, inside, VEHICLE, col)
    # the side visible from the camera
    xs = x0 if x > 0 else x1
    if abs(xs) < 0.3:
        return
    y_top = h - tall
    corners = np.array([[xs, y, zz] for y in (y_top, h) for zz in (z, z + length)])
    win = cv.window(corners)
    if win is None:
        return
    xn = cv.xn[win]
    ok = xn * xs > 1e-9
    t = np.where(ok, xs / np.where(ok, xn, 1.0), _MISS)
    zz, up = t * cv.dz[win], h - t * cv.dy[win]
    along = (zz - z) / length
    hit = ok & (along >= 0) & (along <= 1) & (up > 0.12) & (up <= tall)
    roof = np.where((along < 0.2) | (along > 0.85), cabin * tall + 0.1, tall)
    if not big:
        hit &= up <= roof
    col = np.broadcast_to(body * 0.85, (*t.shape, 3)).copy()
    col[(up > cabin * tall + 0.08) & (up < tall - 0.1)] = glass
    r = 0.33
    for a in (0.18, 0.8):
        wheel = ((along - a) * length) ** 2 + (up - r) ** 2 < r**2
        col[wheel] = 0.05
        hit |= ok & wheel & (up > 0)
    cv.paint(win, t, hit, VEHICLE, col)


def _sky(cv: _Canvas, rng: np.random.Generator, tex: int) -> np.ndarray:
    """Sky colour per pixel (gradient, clouds); also the colour haze fades to."""
    top = np.array([0.35, 0.55, 0.85]) * rng.uniform(0.7, 1.15)
    horizon = np.array([0.80, 0.85, 0.90]) * rng.uniform(0.85, 1.1)
    overcast = rng.random() < 0.35
    if overcast:
        top = horizon = np.array([0.72, 0.74, 0.76]) * rng.uniform(0.8, 1.15)
    elev = np.clip(-cv.dy / np.sqrt(cv.xn**2 + cv.dy**2 + cv.dz**2), 0, 1)
    a = np.clip(elev * 3, 0, 1)[..., None]
    col = horizon * (1 - a) + top * a
    cloud = _fbm(cv.xn * 4 / np.maximum(elev + 0.1, 0.1), cv.dy * 8, tex + 99, 4)
    amount = rng.uniform(0.0, 0.8)
    c = np.clip((cloud - (1 - amount)) * 3, 0, 1)[..., None]
    return col * (1 - c) + np.array([0.92, 0.92, 0.93]) * c


# ---- the scene ---------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """One rendered scene.

    Attributes
    ----------
    image : numpy.ndarray
        uint8 RGB, ``(H, W, 3)``.
    semseg : numpy.ndarray
        int64 ``(H, W)``: index in :data:`CATEGORIES`, or :data:`IGNORE`.
    depth : numpy.ndarray
        float32 ``(H, W)`` camera z-depth in metres; 0 = invalid.
    camera : Camera
        The camera it was rendered with.
    """

    image: np.ndarray
    semseg: np.ndarray
    depth: np.ndarray
    camera: Camera


def render_scene(height: int, width: int, seed: int | np.random.SeedSequence, far: float) -> Scene:
    """Render one street scene (a pure function of ``seed``).

    Parameters
    ----------
    height, width : int
        Image size in pixels; any size, the field of view is fixed by the camera.
    seed : int or numpy.random.SeedSequence
        Seed of everything in the scene.
    far : float
        Depth of the sky and cap of every depth, in metres (the config's depth ``far``).

    Returns
    -------
    Scene
        Image, labels in :data:`CATEGORIES` (``-1`` void) and depth (0 invalid).
    """
    rng = np.random.default_rng(seed)
    hfov = math.radians(rng.uniform(44, 56))
    focal = width / 2 / math.tan(hfov / 2)
    cam = Camera(
        height=rng.uniform(1.1, 1.9),
        pitch=math.radians(rng.uniform(-2.0, 4.0)),
        focal=focal,
        cx=width / 2 + rng.normal(0, 0.01 * width),
        cy=height / 2 + rng.normal(0, 0.02 * height),
    )
    cv = _Canvas(height, width, cam)
    tex = int(rng.integers(1 << 20))
    road_half = rng.uniform(3.0, 7.5)
    road_c = rng.uniform(-2.0, 2.0)
    st = _Street(
        road_c=road_c,
        road_half=road_half,
        walk=rng.uniform(1.5, 4.5),
        curb_left=road_c - road_half,
        curb_right=road_c + road_half,
        sun=float(rng.choice([-1.0, 1.0])),
        tex=tex,
    )
    sky_col = _sky(cv, rng, tex)
    cv.color[:] = sky_col
    _ground(cv, st, rng)

    # street sides: buildings (with setbacks and gaps) and hedges
    for side, curb in ((-1, st.curb_left), (1, st.curb_right)):
        base_x = curb + side * (st.walk + rng.uniform(0.0, 4.0))
        z = rng.uniform(-5, 10)
        open_side = rng.random() < 0.12
        while z < 140:
            length = rng.uniform(8, 35)
            if not open_side and rng.random() < 0.82:
                x_plane = base_x + side * rng.exponential(1.5)
                _facade_side(
                    cv, st, rng, side, x_plane, z, z + length, rng.uniform(6, 30), CONSTRUCTION
                )
            if rng.random() < 0.35:
                x_h = curb + side * (st.walk + rng.uniform(-0.5, 0.5))
                _facade_side(cv, st, rng, side, x_h, z, z + length, rng.uniform(0.8, 2.5), NATURE)
            z += length + (rng.exponential(6) if rng.random() < 0.3 else 0)
    if rng.random() < 0.6:
        _end_facade(cv, st, rng, rng.uniform(40, 200))

    # street furniture and vegetation along the curbs
    for _ in range(rng.poisson(4)):
        side = rng.choice([-1, 1])
        curb = st.curb_left if side < 0 else st.curb_right
        _tree(cv, st, rng, curb + side * rng.uniform(0.5, st.walk), rng.uniform(5, 70))
    for _ in range(rng.poisson(4)):
        side = rng.choice([-1, 1])
        curb = st.curb_left if side < 0 else st.curb_right
        _pole(cv, st, rng, curb + side * rng.uniform(0.2, 0.8), rng.uniform(3, 60))

    # traffic: lanes of moving cars, parked cars along the curbs
    lanes = max(1, round(2 * road_half / 3.3))
    lane_w = 2 * road_half / lanes
    for _ in range(rng.poisson(3.5)):
        lane = rng.integers(lanes)
        x = st.curb_left + lane_w * (lane + 0.5) + rng.normal(0, 0.3)
        _vehicle(cv, st, rng, x, rng.uniform(4, 70), big=rng.random() < 0.12)
    for _ in range(rng.poisson(3)):
        side = rng.choice([-1, 1])
        curb = st.curb_left if side < 0 else st.curb_right
        _vehicle(cv, st, rng, curb - side * 1.1, rng.uniform(3, 60), big=rng.random() < 0.08)

    # people: on the sidewalks, sometimes crossing
    for _ in range(rng.poisson(3.5)):
        side = rng.choice([-1, 1])
        curb = st.curb_left if side < 0 else st.curb_right
        _person(cv, st, rng, curb + side * rng.uniform(0.3, st.walk), rng.uniform(2.5, 40))
    for _ in range(rng.poisson(0.6)):
        _person(cv, st, rng, rng.uniform(st.curb_left, st.curb_right), rng.uniform(4, 30))

    return _finish(cv, rng, sky_col, far, tex)


def _finish(
    cv: _Canvas, rng: np.random.Generator, sky_col: np.ndarray, far: float, tex: int
) -> Scene:
    """Lighting, haze, the ego bonnet, depth holes, sensor noise; labels and depth out."""
    h, w = cv.h, cv.w
    depth = np.minimum(cv.depth, far)
    sky = cv.label == SKY
    depth[sky] = far
    col = cv.color
    # haze towards the sky colour with distance
    fog = rng.uniform(120, 700)
    a = (1 - np.exp(-np.where(sky, 0.0, depth) / fog))[..., None]
    col = col * (1 - a) + sky_col * a
    # exposure, white balance, a vignette
    col = col * rng.uniform(0.6, 1.35) * (1 + rng.normal(0, 0.06, 3))
    r2 = ((np.arange(w) + 0.5) / w - 0.5) ** 2 + ((np.arange(h)[:, None] + 0.5) / h - 0.5) ** 2
    col = col * (1 - rng.uniform(0, 0.5) * r2)[..., None]
    label = cv.label.copy()
    valid = np.ones((h, w), bool)
    if rng.random() < 0.3:  # the ego vehicle's bonnet: void, no depth
        cols = (np.arange(w) + 0.5) / w - 0.5
        edge = h * (1 - rng.uniform(0.05, 0.12) * (1 - (cols / 0.7) ** 2))
        hood = (np.arange(h)[:, None] + 0.5) > edge[None, :]
        label[hood] = IGNORE
        valid &= ~hood
        col[hood] = np.array([0.1, 0.1, 0.12]) * rng.uniform(0.5, 2.0)
    if rng.random() < 0.5:  # stereo-like holes in the depth
        yy, xx = np.mgrid[0:h, 0:w]
        holes = _noise(xx / max(w / 24, 1), yy / max(h / 12, 1), tex + 555) > rng.uniform(0.9, 0.98)
        valid &= ~holes
    # sensor noise and a slight optical blur
    col = col + rng.normal(0, rng.uniform(0.004, 0.03), col.shape)
    if rng.random() < 0.5:
        col = 0.5 * col + 0.125 * (
            np.roll(col, 1, 0) + np.roll(col, -1, 0) + np.roll(col, 1, 1) + np.roll(col, -1, 1)
        )
    image = np.clip(np.rint(col * 255), 0, 255).astype(np.uint8)
    depth = np.where(valid, depth, 0.0).astype(np.float32)
    return Scene(image, label, depth, cv.cam)
