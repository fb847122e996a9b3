"""Procedural street scenes, the preprocessed-Cityscapes loader and the task metrics."""

from __future__ import annotations

import numpy as np
import pytest

from edgemoe.errors import DataError
from edgemoe.host.app.cli import main
from edgemoe.models.data import CityscapesNpy, ProceduralScenes, open_source
from edgemoe.models.metrics import confusion, depth_metrics, disparity_metrics, semseg_metrics
from edgemoe.models.scenes import CATEGORIES, SKY, render_scene
from tests.conftest import assert_one_line_error, cfg


def test_scene_is_a_pure_function_of_its_seed():
    a, b = render_scene(64, 128, 5, 80.0), render_scene(64, 128, 5, 80.0)
    c = render_scene(64, 128, 6, 80.0)
    assert (a.image == b.image).all() and (a.semseg == b.semseg).all()
    assert (a.depth == b.depth).all()
    assert not (a.image == c.image).all()


def test_scene_labels_and_depth():
    far = 80.0
    counts = np.zeros(len(CATEGORIES), np.int64)
    for seed in range(12):
        s = render_scene(128, 256, seed, far)
        assert s.image.shape == (128, 256, 3) and s.image.dtype == np.uint8
        assert s.semseg.shape == (128, 256) and s.semseg.min() >= -1 and s.semseg.max() < 7
        assert s.depth.dtype == np.float32 and s.depth.min() >= 0 and s.depth.max() <= far
        # the sky reads the config's far value; void pixels have no depth
        sky = s.semseg == SKY
        assert (s.depth[sky & (s.depth > 0)] == far).all()
        assert (s.depth[s.semseg == -1] == 0).all()
        counts += np.bincount(s.semseg[s.semseg >= 0], minlength=7)
        # the bottom row sees the ground (or the bonnet), the nearest thing in view
        bottom = s.depth[-1][s.depth[-1] > 0]
        if bottom.size:
            assert bottom.max() < 20
    assert (counts > 0).all(), dict(zip(CATEGORIES, counts, strict=True))


def test_ground_depth_follows_the_camera():
    # ground rows: depth = h / (yn cos(phi) + sin(phi)) for the scene's own camera
    s = render_scene(128, 256, 3, 80.0)
    cam = s.camera
    v = np.arange(128) + 0.5
    yn = (v - cam.cy) / cam.focal
    ground = cam.height / (yn * np.cos(cam.pitch) + np.sin(cam.pitch))
    flat = (s.semseg == 0) & (s.depth > 0) & (s.depth < 80)
    rows, cols = np.nonzero(flat)
    assert rows.size > 1000
    np.testing.assert_allclose(s.depth[rows, cols], ground[rows], rtol=1e-5)


def test_procedural_splits_are_disjoint_and_seeded(mini):
    src = ProceduralScenes(mini, seed=0)
    train = src.batch("train", np.arange(4))
    val = src.batch("val", np.arange(4))
    again = ProceduralScenes(mini, seed=0).batch("val", np.arange(4))
    assert train.images.shape == (4, 32, 64, 3)
    assert (val.images == again.images).all()
    assert not any((t == v).all() for t in train.images for v in val.images)
    assert set(val.labels) == {"semseg", "depth"}
    assert val.labels["semseg"].dtype == np.int64


def test_procedural_needs_cityscapes_categories():
    with pytest.raises(DataError, match="labels for semseg and depth"):
        ProceduralScenes(cfg("m3vit-small-512x512"))


def _write_fixture(root, n=(3, 2), size=(32, 64), bad=None):
    """A folder in MTAN's preprocessed-Cityscapes layout ({split}/image|label_7|depth/{i}.npy).

    As MTAN writes it: images H×W×3 float in [0, 1], label_7 H×W float class ids
    with −1 void, depth H×W×1 float *disparity* (inverse depth; here in MTAN's
    range, up to ~0.3) with 0 where there is none.
    """
    rng = np.random.default_rng(0)
    h, w = size
    for split, count in zip(("train", "val"), n, strict=True):
        for folder in ("image", "label_7", "depth"):
            (root / split / folder).mkdir(parents=True)
        for i in range(count):
            img = rng.random((h, w, 3)).astype(np.float32)
            lab = rng.integers(-1, 7, (h, w)).astype(np.float32)
            dep = (rng.random((h, w, 1)) * 0.3).astype(np.float32)
            dep[rng.random((h, w, 1)) < 0.1] = 0.0  # no disparity there
            if bad == "dtype" and split == "val":
                img = (img * 255).astype(np.uint8)
            if bad == "size" and split == "train" and i == 0:
                dep = dep[:-1]
            np.save(root / split / "image" / f"{i}.npy", img)
            np.save(root / split / "label_7" / f"{i}.npy", lab)
            np.save(root / split / "depth" / f"{i}.npy", dep)


def test_cityscapes_fixture_loads(tmp_path, mini):
    _write_fixture(tmp_path)
    src = open_source(tmp_path, mini)
    assert isinstance(src, CityscapesNpy)
    assert src.size("train") == 3 and src.size("val") == 2
    b = src.batch("val", np.array([0, 1]))
    assert b.images.dtype == np.uint8 and b.images.shape == (2, 32, 64, 3)
    ref = np.load(tmp_path / "val" / "image" / "1.npy")
    assert (b.images[1] == np.rint(ref * 255).astype(np.uint8)).all()
    assert b.labels["semseg"].shape == (2, 32, 64) and b.labels["semseg"].min() == -1
    assert b.labels["depth"].shape == (2, 32, 64)


@pytest.mark.parametrize(
    "bad, words",
    [
        ("split", ["missing split val/"]),
        ("size", ["depth/0.npy", "(32, 64, 1)"]),
        ("dtype", ["image/0.npy", "uint8"]),
        ("count", ["disagree on the scene count"]),
        ("resolution", ["image/0.npy", "needs (32, 64, 3)"]),
    ],
)
def test_broken_fixture_is_one_line(tmp_path, capsys, bad, words):
    if bad == "resolution":
        _write_fixture(tmp_path, size=(48, 64))
    else:
        _write_fixture(tmp_path, bad=bad)
    if bad == "split":
        import shutil

        shutil.rmtree(tmp_path / "val")
    if bad == "count":
        (tmp_path / "train" / "depth" / "2.npy").unlink()
    argv = ["train", "--config", "m3vit-mini", "--data", str(tmp_path), "--steps", "1"]
    code = main([*argv, "--out", str(tmp_path / "ck"), "--quiet"])
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, *words)


def test_metrics_on_known_maps():
    label = np.array([[0, 0, 1, 1], [2, 2, -1, -1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]])
    m = semseg_metrics(confusion(pred, label, 4), ("a", "b", "c", "d"))
    assert m["pixels"] == 6
    assert m["pixel_acc"] == pytest.approx(4 / 6)
    assert m["iou"] == {"a": pytest.approx(1 / 3), "b": pytest.approx(2 / 3), "c": 0.5, "d": None}
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0.5) / 3)
    d = depth_metrics(np.array([10.0, 12.0, 5.0, 7.0]), np.array([10.0, 10.0, 0.0, 5.0]))
    assert d["pixels"] == 3
    assert d["abs_err"] == pytest.approx(4 / 3)
    assert d["abs_rel"] == pytest.approx((0 + 0.2 + 0.4) / 3)
    assert d["rmse"] == pytest.approx(np.sqrt(8 / 3))
    assert d["delta1"] == pytest.approx(2 / 3)


def test_metrics_as_m3vit_reports_them():
    # 255 is ignored like -1 (M3ViT maps -1 to 255); other labels out of range are refused
    label = np.array([[0, 0, 1, 255], [2, 2, -1, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]])
    conf = confusion(pred, label, 4)
    assert conf.sum() == 6
    with pytest.raises(ValueError, match="outside"):
        confusion(pred, np.full_like(label, 4), 4)
    m = semseg_metrics(conf, ("a", "b", "c", "d"), absent_as_zero=True)
    # M3ViT's mean over every class: class d (absent) counts 0
    assert m["miou"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 3 + 0) / 4)
    # disparity on valid pixels (label != 0), predictions <= 0 clamped to 1e-9
    pred_d = np.array([0.1, 0.2, 0.5, -1.0])
    gt_d = np.array([0.1, 0.1, 0.0, 0.2])
    d = disparity_metrics(pred_d, gt_d)
    assert d["pixels"] == 3
    assert d["rmse"] == pytest.approx(np.sqrt((0 + 0.01 + (0.2 - 1e-9) ** 2) / 3))
    log_sq = 0 + np.log(0.5) ** 2 + (np.log(0.2) - np.log(1e-9)) ** 2
    assert d["log_rmse"] == pytest.approx(np.sqrt(log_sq / 3))


def test_mtan_layout_is_disparity_and_procedural_is_metres(tmp_path, mini):
    from edgemoe.models.m3vit import random_model
    from edgemoe.models.train import evaluate

    _write_fixture(tmp_path)
    src = open_source(tmp_path, mini)
    assert src.depth_unit == "disparity"
    assert ProceduralScenes(mini).depth_unit == "m"
    b = src.batch("val", np.array([0, 1]))
    raw = np.load(tmp_path / "val" / "depth" / "0.npy")[..., 0]
    assert (b.labels["depth"][0] == raw).all()  # read as it is: disparity, 0 invalid
    model = random_model(mini, 0)
    on_files = evaluate(model, src, 2)["depth"]
    assert set(on_files) == {"rmse", "log_rmse", "pixels"}
    assert on_files["pixels"] == int((b.labels["depth"] != 0).sum())
    procedural = evaluate(model, ProceduralScenes(mini), 2)["depth"]
    assert {"abs_rel", "rmse", "delta1"} <= set(procedural)


def test_category_names_and_colours_are_cityscapes():
    from edgemoe.host.app.plots import NAMED_COLOURS
    from edgemoe.models.scenes import CATEGORY_COLOURS

    assert tuple(CATEGORY_COLOURS) == CATEGORIES
    # the representative label's colour in cityscapesScripts' labels.py
    for category, label in (("flat", "road"), ("human", "person"), ("vehicle", "car")):
        assert CATEGORY_COLOURS[category] == NAMED_COLOURS[label]
    for category, colour in CATEGORY_COLOURS.items():
        assert NAMED_COLOURS[category] == colour
