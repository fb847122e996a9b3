"""``edgemoe run --video``: frames in (a video file, a folder of frames, a camera), the task
chosen per frame by a schedule, frames batched per task call, a video out (input and task
map side by side, captioned) and a report beside it.

Three threads keep the kernel busy: a reader decodes and resizes frames, the main thread
batches them per task and calls the :class:`~edgemoe.pipeline.Engine` (pack, kernel, head),
a renderer colours, captions and encodes finished frames in order. While the kernel runs
batch k the reader prepares the frames of batch k+1 and the renderer writes batch k-1.

Video I/O is the ``[video]`` extra (``imageio`` with the ffmpeg binary of
``imageio-ffmpeg``); cameras need OpenCV (``opencv-python-headless``).
"""

from __future__ import annotations

import hashlib
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_json_atomic
from edgemoe.host.app.inputs import image_pixels
from edgemoe.host.app.plots import task_rgb
from edgemoe.host.driver.accelerator import KernelResult, PendingCall
from edgemoe.models.config import ModelConfig
from edgemoe.pipeline import Engine

#: What to install for ``--video``.
EXTRA = "pip install 'edgemoe[video]'"
#: File suffixes read as video files (a folder is read as frames; digits as a camera).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v")
#: Frame files of a folder.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
#: Height of the caption strip under each output frame, pixels (even: yuv420p).
CAPTION_H = 16
#: Frames per second of the output when the input does not say (a folder, a camera).
DEFAULT_FPS = 10.0


def need_video_io() -> None:
    """Raise the one-line error naming the extra when the video libraries are missing."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise EdgeMoeError(f"--video needs imageio and imageio-ffmpeg: {EXTRA}") from None


# ---- the schedule ----------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Which tasks run on frame ``i``.

    Attributes
    ----------
    name : str
        As given: a task name, ``alternate``, ``every:N`` or ``both``.
    cycle : tuple of str
        The config's tasks in the order the schedule walks them.
    period : int
        Frames per task before the next (``alternate``: 1); 0: every frame runs ``cycle``.
    """

    name: str
    cycle: tuple[str, ...]
    period: int

    def tasks(self, i: int) -> list[str]:
        """The tasks of frame ``i`` (0-based), in the order they run."""
        if self.period == 0:
            return list(self.cycle)
        return [self.cycle[(i // self.period) % len(self.cycle)]]


def parse_schedule(text: str, cfg: ModelConfig) -> Schedule:
    """``--schedule``: a task name (every frame), ``alternate`` (task by task, frame by
    frame), ``every:N`` (N frames per task, then the next) or ``both`` (every task on
    every frame).

    Raises
    ------
    EdgeMoeError
        Anything else (one line listing what is accepted).
    """
    names = tuple(cfg.task_names)
    accepted = ", ".join([*names, "alternate", "every:N", "both"])
    t = text.strip()
    if t in names:
        return Schedule(t, (t,), 1)
    if t == "alternate":
        return Schedule(t, names, 1)
    if t == "both":
        return Schedule(t, names, 0)
    if t.startswith("every:"):
        n = t.removeprefix("every:")
        if n.isdigit() and int(n) >= 1:
            return Schedule(t, names, int(n))
        raise EdgeMoeError(f"--schedule {text}: N of every:N must be a whole number >= 1")
    raise EdgeMoeError(f"--schedule {text}: unknown schedule (one of: {accepted})")


# ---- frames in -----------------------------------------------------------------


@dataclass
class FrameSource:
    """Frames of one input, opened and its first frame read (so an empty one fails early).

    Attributes
    ----------
    what : str
        How messages name the input.
    fps : float
        Its frame rate (the output's).
    frames : iterator of ndarray uint8 (H, W, 3)
        Every frame, the first included, at the input's size.
    size : tuple of int
        (H, W) of the first frame; every frame must have it.
    """

    what: str
    fps: float
    frames: Iterator[np.ndarray]
    size: tuple[int, int]
    close: object = None


def _rgb(frame: np.ndarray) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise EdgeMoeError(f"a frame of shape {a.shape} is not an RGB image")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def open_frames(src: str) -> FrameSource:
    """A video file, a folder of frames (name order) or a camera index.

    Raises
    ------
    EdgeMoeError
        The extra is missing; the input cannot be read, holds no frame, or the camera is
        absent (one line each).
    """
    if src.isdigit():
        return _camera(int(src))
    path = Path(src)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not files:
            raise EdgeMoeError(f"--video {src}: the folder holds no frames ({FRAME_SUFFIXES})")
        it = _folder(files)
        what = f"folder {src}"
        fps = DEFAULT_FPS
        close = None
    else:
        if not path.is_file():
            raise EdgeMoeError(f"--video {src}: no such file or folder")
        need_video_io()
        import imageio.v2 as iio

        try:
            reader = iio.get_reader(str(path))
            meta = reader.get_meta_data()
        except Exception as e:
            raise EdgeMoeError(f"--video {src}: cannot read it as a video ({_short(e)})") from None
        fps = float(meta.get("fps") or 0) or (
            1000.0 / meta["duration"] if meta.get("duration") else DEFAULT_FPS
        )
        it = _reader_frames(reader, src)
        what = f"video {src}"
        close = reader.close
    try:
        first = next(it)
    except StopIteration:
        raise EdgeMoeError(f"--video {src}: holds no frame") from None
    return FrameSource(what, fps, _chain(first, it), first.shape[:2], close)


def _short(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _folder(files: list[Path]) -> Iterator[np.ndarray]:
    from PIL import Image

    for p in files:
        try:
            with Image.open(p) as img:
                yield _rgb(np.asarray(img.convert("RGB")))
        except OSError as e:
            raise EdgeMoeError(f"--video: frame {p} cannot be read ({_short(e)})") from None


def _reader_frames(reader, src: str) -> Iterator[np.ndarray]:
    try:
        for frame in reader:
            yield _rgb(frame)
    except EdgeMoeError:
        raise
    except Exception as e:
        raise EdgeMoeError(f"--video {src}: cannot decode it ({_short(e)})") from None


def _camera(index: int) -> FrameSource:
    try:
        import cv2
    except ImportError:
        raise EdgeMoeError(
            f"--video {index}: a camera needs OpenCV (pip install opencv-python-headless)"
        ) from None
    cap = cv2.VideoCapture(index)
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise EdgeMoeError(f"--video {index}: no camera {index} (or it gives no frame)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or DEFAULT_FPS

    def frames() -> Iterator[np.ndarray]:
        yield _rgb(frame[..., ::-1])
        while True:
            ok, f = cap.read()
            if not ok:
                return
            yield _rgb(f[..., ::-1])

    it = frames()
    first = next(it)
    return FrameSource(f"camera {index}", fps, _chain(first, it), first.shape[:2], cap.release)


# ---- frames out ----------------------------------------------------------------


def caption(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with a black strip of :data:`CAPTION_H` pixels below it holding ``text``."""
    from PIL import Image, ImageDraw

    h, w, _ = rgb.shape
    canvas = Image.new("RGB", (w, h + CAPTION_H))
    canvas.paste(Image.fromarray(rgb), (0, 0))
    ImageDraw.Draw(canvas).text((3, h + 2), text, fill=(255, 255, 255))
    return np.asarray(canvas)


class VideoWriter:
    """An H.264 MP4 (or what the suffix names) written frame by frame through ffmpeg."""

    def __init__(self, path: Path, fps: float):
        need_video_io()
        import imageio.v2 as iio

        self.path, self.frames = path, 0
        gif = path.suffix.lower() == ".gif"  # Pillow writes GIFs, ffmpeg the rest
        self._w = iio.get_writer(
            str(path),
            **({"duration": 1000.0 / fps, "loop": 0} if gif else {"fps": fps}),
            **({} if gif else {"macro_block_size": 1, "quality": 8}),
        )

    def write(self, rgb: np.ndarray) -> None:
        self._w.append_data(rgb)
        self.frames += 1

    def close(self) -> None:
        self._w.close()


# ---- the run -------------------------------------------------------------------


@dataclass
class VideoSettings:
    """One ``edgemoe run --video``, checked."""

    source: FrameSource
    schedule: Schedule
    batch: int
    out: Path
    report: Path
    fit: str
    resize: bool
    backend_name: str
    header: dict = field(default_factory=dict)


@dataclass
class _Done:
    """A finished task call on frames ``idx``."""

    task: str
    idx: list[int]
    tokens: np.ndarray
    values: np.ndarray


class _Stop(Exception):
    pass


def run_video(engine: Engine, s: VideoSettings, cfg: ModelConfig) -> dict:
    """Every frame of ``s.source`` through ``engine`` by ``s.schedule``; the video written
    to ``s.out`` (through a temporary file beside it) and the report to ``s.report``.

    Ctrl-C stops reading, finishes the video with the frames done so far and reports them
    (``interrupted``), then raises ``KeyboardInterrupt`` again for the caller.
    """
    t0 = time.perf_counter()
    H, W = cfg.image_size
    frames_q: queue.Queue = queue.Queue(maxsize=2 * s.batch)
    done_q: queue.Queue = queue.Queue()
    stop = threading.Event()
    errors: list[BaseException] = []
    times = {"read": 0.0, "render": 0.0, "write": 0.0}
    notices: list[str] = []
    size0 = s.source.size

    def reader() -> None:
        try:
            for i, frame in enumerate(s.source.frames):
                if stop.is_set():
                    break
                t = time.perf_counter()
                if frame.shape[:2] != size0:
                    raise EdgeMoeError(
                        f"--video: frame {i} is {frame.shape[1]}x{frame.shape[0]}, frame 0 "
                        f"{size0[1]}x{size0[0]} (WxH): frames of one video must share a size"
                    )
                px = frame
                if frame.shape[:2] != (H, W):
                    from PIL import Image

                    own: list[str] = []
                    px = image_pixels(
                        Image.fromarray(frame),
                        cfg,
                        f"frame {i}",
                        own,
                        resize=s.resize,
                        fit=s.fit,
                        refuse_hint="drop --no-resize",
                    )
                    if i == 0:
                        notices.extend(n.replace("frame 0", "each frame") for n in own)
                times["read"] += time.perf_counter() - t
                frames_q.put((i, px))
        except BaseException as e:  # handed to the main thread
            errors.append(e)
        finally:
            frames_q.put(None)

    tmp = s.out.with_name(f".{s.out.stem}.partial{os.getpid()}{s.out.suffix}")
    writer = VideoWriter(tmp, s.source.fps)
    per_frame: list[dict] = []
    shown = 0

    def renderer() -> None:
        nonlocal shown
        pixels: dict[int, np.ndarray] = {}
        got: dict[int, dict[str, np.ndarray]] = {}
        nxt = 0
        try:
            while True:
                item = done_q.get()
                if item is None:
                    return
                if isinstance(item, tuple):  # (i, pixels): a frame read
                    pixels[item[0]] = item[1]
                    continue
                t = time.perf_counter()
                for j, i in enumerate(item.idx):
                    got.setdefault(i, {})[item.task] = item.values[j]
                while nxt in got and set(got[nxt]) == set(s.schedule.tasks(nxt)):
                    maps = [task_rgb(cfg.task_spec(k), got[nxt][k]) for k in s.schedule.tasks(nxt)]
                    rate = (nxt + 1) / max(time.perf_counter() - t0, 1e-9)
                    heads = s.header.get("heads", {})
                    names = [
                        f"{k} (untrained head)" if heads.get(k) == "untrained head" else k
                        for k in s.schedule.tasks(nxt)
                    ]
                    text = f"{'+'.join(names)}  frame {nxt}  {rate:.1f} fps  {s.backend_name}"
                    img = caption(np.concatenate([pixels.pop(nxt), *maps], axis=1), text)
                    times["render"] += time.perf_counter() - t
                    t = time.perf_counter()
                    writer.write(img)
                    times["write"] += time.perf_counter() - t
                    t = time.perf_counter()
                    del got[nxt]
                    nxt += 1
                    shown = nxt
                times["render"] += time.perf_counter() - t
        except BaseException as e:
            errors.append(e)

    rd = threading.Thread(target=reader, name="video-read", daemon=True)
    rn = threading.Thread(target=renderer, name="video-render", daemon=True)
    rd.start()
    rn.start()

    call_times: dict[str, float] = {}
    waiting: dict[str, list[tuple[int, np.ndarray]]] = {t: [] for t in s.schedule.cycle}
    frames_seen = 0
    calls = 0
    interrupted = False

    acc = engine.acc
    pending: list[tuple[str, list[int], PendingCall, float]] = []
    kernel_s = 0.0

    def add_times(t: dict[str, float]) -> None:
        for k, v in t.items():
            call_times[k] = call_times.get(k, 0.0) + v

    def finished(task: str, idx: list[int], tokens: np.ndarray, values: np.ndarray) -> None:
        for j, i in enumerate(idx):
            tok = np.ascontiguousarray(tokens[j])
            per_frame[i]["tokens_sha256"][task] = hashlib.sha256(tok.tobytes()).hexdigest()
        done_q.put(_Done(task, idx, tokens, values))

    def wait_pending() -> tuple[str, list[int], KernelResult]:
        nonlocal kernel_s
        task, idx, pc, pack_s = pending.pop()
        res = acc.wait(pc, engine.timeout_s)
        kernel_s += res.times["kernel"]
        add_times({"pack": pack_s, **res.times})
        return task, idx, res

    def host_side(task: str, idx: list[int], res: KernelResult) -> None:
        t = time.perf_counter()
        tokens, logits = engine.kernel_outputs(res)
        t1 = time.perf_counter()
        values, _ = engine.task_values(tokens, logits, task)
        add_times({"unpack": t1 - t, "head": time.perf_counter() - t1})
        finished(task, idx, tokens, values)

    def flush(task: str) -> None:
        nonlocal calls, kernel_s
        batch = waiting[task]
        if not batch:
            return
        waiting[task] = []
        idx = [i for i, _ in batch]
        px = np.stack([p for _, p in batch])
        calls += 1
        if acc is None:  # a backend without a driver: one blocking call
            c = engine.call(px, task)
            add_times(c.times)
            kernel_s += c.times.get("backbone", 0.0)
            finished(task, idx, c.tokens, c.values)
            return
        # batch k+1 packed while the kernel runs batch k; k's head while k+1 runs
        t = time.perf_counter()
        patches = acc.pack(px)
        pack_s = time.perf_counter() - t
        prev = wait_pending() if pending else None
        pending.append((task, idx, acc.start(patches, task), pack_s))
        if prev is not None:
            host_side(*prev)

    try:
        while True:
            item = frames_q.get()
            if item is None:
                break
            if errors:
                raise _Stop
            i, px = item
            frames_seen += 1
            tasks = s.schedule.tasks(i)
            per_frame.append({"frame": i, "tasks": tasks, "tokens_sha256": {}})
            done_q.put((i, px))
            for task in tasks:
                waiting[task].append((i, px))
                if len(waiting[task]) >= s.batch:
                    flush(task)
            if errors:
                raise _Stop
        if errors:
            raise _Stop
        for task in s.schedule.cycle:
            flush(task)
        if pending:
            host_side(*wait_pending())
    except KeyboardInterrupt:
        interrupted = True
        if pending and not errors:  # the call running: its frames are done work
            try:
                host_side(*wait_pending())
            except (EdgeMoeError, KeyboardInterrupt):
                pass
    except _Stop:
        pass
    finally:
        stop.set()
        done_q.put(None)
        rn.join()
        writer.close()
        if s.source.close is not None:
            s.source.close()
    wall = time.perf_counter() - t0
    if errors and not interrupted:
        _finish_partial(tmp, s.out, shown)
        raise errors[0]
    n = shown
    _finish_partial(tmp, s.out, n)
    report = {
        **s.header,
        "video": {
            "input": s.source.what,
            "input_fps": s.source.fps,
            "output": str(s.out),
            "frames": n,
            "interrupted": interrupted,
        },
        "schedule": s.schedule.name,
        "batch": s.batch,
        "task_calls": calls,
        "frames_per_task": {
            t: sum(t in f["tasks"] for f in per_frame[:n]) for t in s.schedule.cycle
        },
        "frames": per_frame[:n],
        "notices": notices,
        "times_s": {"wall": wall, **times, **call_times},
        "fps": {
            "end_to_end": n / wall if wall > 0 else 0.0,
            "kernel_only": n / kernel_s if kernel_s > 0 else None,
        },
        "kernel_busy_fraction": kernel_s / wall if wall > 0 else 0.0,
        # every stage's time summed (what one thread doing it all would take) less the wall
        # time: the host work the pipeline hid behind the kernel
        "overlap_s": sum(times.values()) + sum(call_times.values()) - wall,
    }
    write_json_atomic(s.report, report)
    if interrupted:
        print(
            f"interrupted: {s.out} holds {n} frame(s); {s.report} describes them", file=sys.stderr
        )
        raise KeyboardInterrupt
    return report


def _finish_partial(tmp: Path, out: Path, frames: int) -> None:
    """Move the written video into place (a video of no frame is removed)."""
    if frames == 0:
        tmp.unlink(missing_ok=True)
        return
    tmp.replace(out)


# ---- the demo's drive ----------------------------------------------------------


def drive_frames(cfg: ModelConfig, frames: int, seed: int, per_street: int = 20) -> np.ndarray:
    """A seeded procedural drive (frames, H, W, 3) uint8 at the config's size: the camera
    moving down a street, street after street.

    Each street is one rendered scene (:func:`edgemoe.models.scenes.render_scene`, at
    twice the config's size); the forward motion over ``per_street`` frames is a zoom
    toward the scene's principal point (where the street vanishes), 1x to 2x, and the
    last quarter of a street cross-fades into the next. A zoom has no parallax: near and
    far things grow at one rate, an approximation of a true fly-through.
    """
    from PIL import Image

    from edgemoe.models.scenes import render_scene

    H, W = cfg.image_size
    far = next((t.far for t in map(cfg.task_spec, cfg.task_names) if t.far), 80.0)
    streets = -(-frames // per_street) + 1
    rendered = [
        render_scene(2 * H, 2 * W, np.random.SeedSequence([seed, k]), far) for k in range(streets)
    ]
    fade = max(1, per_street // 4)

    def view(k: int, f: int) -> np.ndarray:
        sc = rendered[k]
        img = Image.fromarray(sc.image)
        zoom = 1.0 + f / per_street  # 1x .. 2x
        cx, cy = sc.camera.cx, sc.camera.cy
        w, h = 2 * W / zoom, 2 * H / zoom
        x0 = min(max(cx - w / 2, 0.0), 2 * W - w)
        y0 = min(max(cy - h / 2, 0.0), 2 * H - h)
        box = (x0, y0, x0 + w, y0 + h)
        return np.asarray(img.resize((W, H), Image.Resampling.BILINEAR, box=box), np.float64)

    out = np.empty((frames, H, W, 3), np.uint8)
    for i in range(frames):
        k, f = divmod(i, per_street)
        px = view(k, f)
        if f >= per_street - fade:  # the next street fades in
            a = (f - (per_street - fade) + 1) / (fade + 1)
            px = (1 - a) * px + a * view(k + 1, 0)
        out[i] = np.clip(np.round(px), 0, 255).astype(np.uint8)
    return out
