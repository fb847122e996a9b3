"""`edgemoe run --video`: a video through golden and csim by a schedule; each frame's tokens
are the single-image run's bit for bit; bad input is one line and exit 2."""

from __future__ import annotations

import hashlib
import json
import signal
import sys

import imageio.v2 as iio
import numpy as np
import pytest
from PIL import Image

from edgemoe.host.app.cli import main
from edgemoe.host.app.video import Schedule, parse_schedule
from edgemoe.host.contracts.images import scene_images
from edgemoe.host.contracts.profile import DEFAULT_PROFILE, load_profile
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.driver.backends import get_backend
from edgemoe.pipeline import Engine, float_workload, weight_source
from tests.conftest import assert_one_line_error, cfg

MINI = "m3vit-mini"
H, W = cfg(MINI).image_size


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["run", "--config", MINI, "--random", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two videos written here: 5 frames at the config's size (lossless frames folder and
    an mp4), 4 frames of another size (mp4, resized on the way in)."""
    d = tmp_path_factory.mktemp("videos")
    a = scene_images(cfg(MINI), 5, 3)
    iio.mimwrite(d / "a.mp4", list(a), fps=5, macro_block_size=1)
    iio.mimwrite(d / "a.gif", list(a), duration=200, loop=0)
    (d / "frames").mkdir()
    for i, f in enumerate(a):
        Image.fromarray(f).save(d / "frames" / f"f{i:03d}.png")
    big = np.stack([np.asarray(Image.fromarray(f).resize((2 * W + 16, 2 * H))) for f in a[:4]])
    iio.mimwrite(d / "b.mp4", list(big), fps=4, macro_block_size=1)
    return d


def decoded(path, at_size: bool) -> list[np.ndarray]:
    """The frames as the run sees them: decoded, resized (bilinear stretch) if needed."""
    frames = [np.asarray(f)[..., :3] for f in iio.mimread(path)]
    if at_size:
        return frames
    return [
        np.asarray(Image.fromarray(f).resize((W, H), Image.Resampling.BILINEAR)) for f in frames
    ]


def single_image_sha(backend: str, frames: list[np.ndarray], tasks: list[list[str]]) -> list[dict]:
    """Each frame alone (one image per call) for its tasks: SHA-256 of its tokens."""
    c = cfg(MINI)
    wl, _ = float_workload(c, load_profile(DEFAULT_PROFILE), weight_source(c, random=True))
    eng = Engine(wl, DEFAULT_TILING, get_backend(backend), max_images=1)
    out = []
    for f, ts in zip(frames, tasks, strict=True):
        d = {}
        for t in ts:
            tok = np.ascontiguousarray(eng.call(f[None], t).tokens[0])
            d[t] = hashlib.sha256(tok.tobytes()).hexdigest()
        out.append(d)
    return out


@pytest.mark.parametrize(
    ("backend", "name", "batch", "at_size"),
    [
        ("golden", "a.mp4", 4, True),
        ("golden", "a.gif", 1, True),
        ("csim", "b.mp4", 2, False),
        ("csim", "frames", 16, True),
    ],
)
def test_video_alternate_matches_single_images(
    capsys, videos, tmp_path, backend, name, batch, at_size
):
    out = tmp_path / "out.mp4"
    argv = ["--video", str(videos / name), "--backend", backend, "--schedule", "alternate"]
    code, stdout, err = run(capsys, *argv, "--batch", str(batch), "--out", str(out))
    assert code == 0, err
    rep = json.loads((tmp_path / "out.json").read_text())
    src = videos / name
    frames = (
        [np.asarray(Image.open(p).convert("RGB")) for p in sorted(src.iterdir())]
        if src.is_dir()
        else decoded(src, at_size)
    )
    n = len(frames)
    written = iio.mimread(out)
    assert len(written) == n == rep["video"]["frames"]
    assert written[0].shape[:2] == (H + 16, 2 * W)  # input | map, caption strip below
    seq = [f["tasks"] for f in rep["frames"]]
    assert seq == [["semseg"] if i % 2 == 0 else ["depth"] for i in range(n)]
    assert rep["frames_per_task"] == {"semseg": (n + 1) // 2, "depth": n // 2}
    assert rep["schedule"] == "alternate" and rep["batch"] == batch
    # batched per task: ceil(frames of a task / batch) calls per task
    assert rep["task_calls"] == sum(-(-k // batch) for k in rep["frames_per_task"].values())
    assert rep["fps"]["end_to_end"] > 0 and rep["fps"]["kernel_only"] > 0
    assert 0 < rep["kernel_busy_fraction"] <= 1
    want = single_image_sha(backend, frames, seq)
    assert [f["tokens_sha256"] for f in rep["frames"]] == want


def test_schedules():
    c = cfg(MINI)
    assert [parse_schedule("alternate", c).tasks(i) for i in range(3)] == [
        ["semseg"],
        ["depth"],
        ["semseg"],
    ]
    ev = parse_schedule("every:2", c)
    assert [ev.tasks(i)[0] for i in range(6)] == ["semseg"] * 2 + ["depth"] * 2 + ["semseg"] * 2
    assert parse_schedule("both", c).tasks(7) == ["semseg", "depth"]
    assert parse_schedule("depth", c) == Schedule("depth", ("depth",), 1)


def test_both_schedule_two_maps(capsys, videos, tmp_path):
    out = tmp_path / "both.gif"
    code, _, err = run(
        capsys,
        "--video",
        str(videos / "frames"),
        "--backend",
        "golden",
        "--schedule",
        "both",
        "--out",
        str(out),
    )
    assert code == 0, err
    rep = json.loads((tmp_path / "both.json").read_text())
    assert rep["frames_per_task"] == {"semseg": 5, "depth": 5}
    assert all(set(f["tokens_sha256"]) == {"semseg", "depth"} for f in rep["frames"])
    assert iio.mimread(out)[0].shape[1] == 3 * W


def test_bad_input(capsys, videos, tmp_path):
    out = str(tmp_path / "o.mp4")
    cases = [
        (["--video", str(tmp_path / "absent.mp4")], "no such file"),
        (["--video", str(videos / "a.mp4"), "--schedule", "sometimes"], "unknown schedule"),
        (["--video", str(videos / "a.mp4"), "--schedule", "every:0"], "every:N"),
        (["--schedule", "alternate"], "give --video"),
        (["--video", "7"], "camera"),
    ]
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    cases.append((["--video", str(junk)], "cannot"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((["--video", str(empty)], "no frames"))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (W, H)).save(mixed / "0.png")
    Image.new("RGB", (W + 16, H)).save(mixed / "1.png")
    cases.append((["--video", str(mixed), "--backend", "golden"], "share a size"))
    for argv, word in cases:
        code, _, err = run(capsys, *argv, "--out", out)
        assert_one_line_error(code, err, word)
    assert not (tmp_path / "o.json").exists()
    # an existing output is not replaced without --force
    (tmp_path / "o.mp4").write_bytes(b"keep")
    code, _, err = run(capsys, "--video", str(videos / "frames"), "--out", out)
    assert_one_line_error(code, err, "exists")
    assert (tmp_path / "o.mp4").read_bytes() == b"keep"


def test_missing_extra_names_it(capsys, videos, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    code, _, err = run(capsys, "--video", str(videos / "a.mp4"), "--out", str(tmp_path / "o.mp4"))
    assert_one_line_error(code, err, "edgemoe[video]")


def test_ctrl_c_keeps_the_frames_done(capsys, videos, tmp_path, monkeypatch):
    """Ctrl-C during the third task call: the video holds the two frames done, and says so."""
    calls = []
    real = Engine.call

    def call(self, pixels, task, **kw):
        calls.append(task)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, pixels, task, **kw)

    monkeypatch.setattr(Engine, "call", call)
    out = tmp_path / "cut.mp4"
    argv = ["--video", str(videos / "frames"), "--backend", "golden", "--batch", "1"]
    code, _, err = run(capsys, *argv, "--out", str(out))
    assert code == 130
    assert f"{out} holds 2 frame(s)" in err
    assert len(iio.mimread(out)) == 2
    rep = json.loads((tmp_path / "cut.json").read_text())
    assert rep["video"]["interrupted"] and rep["video"]["frames"] == 2
    assert [f["tasks"] for f in rep["frames"]] == [["semseg"], ["depth"]]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_pipelining_hides_the_host_behind_the_kernel(tmp_path, monkeypatch):
    """On the virtual board with a kernel delay L per call and a render delay R per frame,
    N one-frame batches take about N*L + R, not N*(pack + L + R): the render (and the
    packing, the head) of every batch but the last runs while the kernel runs."""
    import time

    from edgemoe.host.app import video
    from edgemoe.sim.virtual_board import VirtualBoard

    c, prof = cfg(MINI), load_profile(DEFAULT_PROFILE)
    wl, _ = float_workload(c, prof, weight_source(c, random=True))
    L, R, N = 0.2, 0.1, 8
    board = VirtualBoard(c, prof, DEFAULT_TILING, latency_s=L)
    engine = Engine(wl, DEFAULT_TILING, None, board=board, max_images=1)
    real = video.caption

    def slow_caption(rgb, text):
        time.sleep(R)
        return real(rgb, text)

    monkeypatch.setattr(video, "caption", slow_caption)
    frames = list(scene_images(c, N, 5))
    src = video.FrameSource("test frames", 10.0, iter(frames), (H, W))
    settings = video.VideoSettings(
        src,
        parse_schedule("alternate", c),
        1,
        tmp_path / "p.mp4",
        tmp_path / "p.json",
        "stretch",
        True,
        "csim",
    )
    rep = video.run_video(engine, settings, c)
    t = rep["times_s"]
    assert rep["video"]["frames"] == N and rep["task_calls"] == N
    assert t["kernel"] >= N * L * 0.99
    serial = sum(v for k, v in t.items() if k != "wall")  # pack + kernel + render + ...
    claimed = (N - 1) / N * min(t["render"], t["kernel"])  # all renders but the last hidden
    assert t["wall"] <= serial - 0.8 * claimed, t
    assert rep["overlap_s"] >= 0.8 * claimed
    assert rep["kernel_busy_fraction"] >= 0.75
    busy = rep["kernel_busy_fraction"]
    print(f"wall {t['wall']:.3f} s, serial {serial:.3f} s, kernel busy {busy:.3f}")


def test_estimate_speaks_in_frames(capsys, tmp_path):
    """`estimate --schedule`: frames/s from the call time, one backbone pass per task a
    frame runs, and the kernel's decoder per task-image for the tiny's pup heads."""
    fps = {}
    for sched in ("alternate", "both"):
        j = tmp_path / f"{sched}.json"
        argv = ["estimate", "--schedule", sched, "--batch", "16", "--json", str(j)]
        assert main(argv) == 0
        out, _ = capsys.readouterr()
        est = json.loads(j.read_text())
        fps[sched] = est["schedule"]["fps"]
        n = 2 if sched == "both" else 1
        dec = est["decoder"]["per_call"]["16"]["decoder_ms"]
        assert est["schedule"]["decoder_ms_per_task_image"] == dec > 0
        assert fps[sched] == pytest.approx(1e3 / (n * (est["call_ms"] / 16 + dec)))
        assert f"schedule {sched}: ESTIMATED" in out and "decoder run" in out
    assert fps["both"] == pytest.approx(fps["alternate"] / 2)
    code = main(["estimate", "--schedule", "sometimes"])
    assert_one_line_error(code, capsys.readouterr()[1], "unknown schedule")


def test_sigint_finishes_the_video(videos, tmp_path):
    """A real SIGINT to `edgemoe run --video`: exit 130, the video holds the frames done and
    the message says how many."""
    import subprocess
    import time

    long = tmp_path / "long.mp4"
    frames = [np.asarray(f) for f in iio.mimread(videos / "a.mp4")]
    iio.mimwrite(long, frames * 600, fps=25, macro_block_size=1)  # 3000 frames
    out = tmp_path / "sig.mp4"
    argv = [sys.executable, "-m", "edgemoe.host.app.cli", "run", "--config", MINI, "--random"]
    argv += ["--video", str(long), "--backend", "golden", "--batch", "1", "--out", str(out)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any("partial" in q.name for q in tmp_path.iterdir()):  # frames being written
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    n = json.loads((tmp_path / "sig.json").read_text())["video"]["frames"]
    assert 0 < n < 3000
    assert f"{out} holds {n} frame(s)" in err
    assert len(iio.mimread(out)) == n
