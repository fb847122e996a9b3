"""Issue 17's promises of the CLI: images, --out, options and help, verify pairs, figures."""

from __future__ import annotations

import argparse
import errno
import json
import os

import numpy as np
import pytest
from PIL import Image

from edgemoe.host.app import outputs
from edgemoe.host.app.cli import build_parser, main
from tests.conftest import assert_one_line_error, cfg

MINI = "m3vit-mini"
H, W = cfg(MINI).image_size


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def golden_run(capsys, out, *argv: str) -> tuple[int, str, str]:
    return cli(
        capsys, "run", "--config", MINI, "--backend", "golden", "--task", "semseg",
        "--no-figures", "--out", str(out), *argv,
    )  # fmt: skip


# ---- images ------------------------------------------------------------------


def test_16_bit_png_is_scaled_not_clipped(tmp_path, capsys):
    ramp = np.linspace(0, 65535, W * H).reshape(H, W).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I;16")
    code, _, err = golden_run(capsys, tmp_path / "out", "--image", str(path))
    assert code == 0, err
    assert "16-bit: scaled to 8 bits" in err
    got = np.asarray(Image.open(tmp_path / "out" / "deep_input.png"))
    want = np.round(ramp / 257.0).astype(np.uint8)
    assert (got[..., 0] == want).all() and (got[..., 1] == want).all()
    assert (got == 255).mean() < 0.01  # was 99.6 % before


def test_float_image_is_scaled(tmp_path, capsys):
    a = np.linspace(0.0, 1.0, W * H, dtype=np.float32).reshape(H, W)
    path = tmp_path / "f.tiff"
    Image.fromarray(a).save(path)
    code, _, err = golden_run(capsys, tmp_path / "out", "--image", str(path))
    assert code == 0, err
    assert "float in [0, 1]: scaled to 8 bits" in err
    got = np.asarray(Image.open(tmp_path / "out" / "f_input.png"))[..., 0]
    assert got.min() == 0 and got.max() == 255


@pytest.mark.parametrize("fit", ["stretch", "crop", "pad"])
def test_fit_modes(tmp_path, capsys, fit):
    wide = np.full((H, 4 * W, 3), 200, np.uint8)  # twice as wide (relative) as the config
    wide[:, : W // 2] = 0
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    code, _, err = golden_run(capsys, tmp_path / "out", "--image", str(path), "--fit", fit)
    assert code == 0, err
    got = np.asarray(Image.open(tmp_path / "out" / "wide_input.png"))
    assert got.shape == (H, W, 3)
    if fit == "stretch":
        assert "aspect ratio changed" in err and "--fit crop or pad" in err
    elif fit == "crop":
        assert "cropped to the central" in err and (got > 150).all()  # the black edge is cut
    else:
        assert "padded (black)" in err
        assert (got[0] == 0).all() and (got[-1] == 0).all()  # borders above and below


def test_same_aspect_resize_does_not_warn_about_aspect(tmp_path, capsys):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((2 * H, 2 * W, 3), np.uint8)).save(path)
    code, _, err = golden_run(capsys, tmp_path / "out", "--image", str(path))
    assert code == 0, err
    assert f"stretched to {W}x{H}" in err and "aspect ratio" not in err


# ---- --out ---------------------------------------------------------------------


def test_out_on_a_mount_point(tmp_path, capsys, monkeypatch):
    """``--out`` an existing (empty) folder on another file system: a rename from its
    parent would fail with EXDEV, so staging happens inside it."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    real = os.replace

    def cross_device(src, dst):
        inside = lambda p: str(os.path.abspath(p)).startswith(str(mount))  # noqa: E731
        if inside(src) != inside(dst):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", cross_device)
    code, _, err = golden_run(capsys, mount)
    assert code == 0, err
    assert sorted(p.name for p in mount.iterdir()) == [
        "report.json", "sample_input.png", "sample_semseg.png", "sample_semseg_overlay.png",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"]


def test_out_falls_back_to_copying_across_devices(tmp_path, monkeypatch):
    """Even a staging rename that crosses devices (a bind mount) ends in place."""
    staging = tmp_path / "stage"
    staging.mkdir()
    (staging / "a.txt").write_text("a")
    out = tmp_path / "out"
    real = os.replace

    def exdev(src, dst):
        if str(src).startswith(str(staging)) and not str(dst).startswith(str(staging)):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", exdev)
    outputs.publish(staging, out)
    assert (out / "a.txt").read_text() == "a" and not staging.exists()


def test_out_has_normal_permissions(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        code, _, err = golden_run(capsys, tmp_path / "new" / "out")
    finally:
        os.umask(old)
    assert code == 0, err
    assert (tmp_path / "new" / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "new" / "out" / "report.json").stat().st_mode & 0o777 == 0o644


# ---- output files of verify / estimate, checked before the work ----------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["estimate", "--plot", "est.txt"], ["--plot", "name it *.png"]),
        (["estimate", "--json", "/proc/edgemoe/e.json"], ["cannot write --json"]),
        (["estimate", "--plot", "/proc/edgemoe/e.png"], ["cannot write --plot"]),
        (["estimate", "--json", ""], ["--json ''", "empty path"]),
        (["verify", "--config", MINI, "--json", "/proc/x.json"], ["cannot write --json"]),
        (["verify", "--config", MINI, "--plot", "layers.jpg"], ["--plot", "*.png"]),
        (["verify", "--images", "100000"], ["--images", "1..16"]),
        (["verify", "--seed", "-1"], ["--seed", "outside"]),
        (["export", "--seed", "1e20"], ["--seed", "not a seed"]),
        (["export", "--out", ""], ["--out ''"]),
        (["estimate", "--design", "edge-moe-published", "--tiling", "32x32"], ["--tiling"]),
        (["estimate", "--design", "edge-moe-published", "--weight-ports", "2"], ["--weight-p"]),
        (["estimate", "--design", "edge-moe-published", "--profile", "lean"], ["--profile lean"]),
        (["estimate", "--weight-ports", "5"], ["--weight-ports", "1..4"]),
        (["estimate", "--clock-mhz", "1e9"], ["--clock-mhz", "50..600"]),
        (["run", "--bundle"], ["--bundle", "expected one argument"]),
        (["frobnicate"], ["invalid choice", "frobnicate"]),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, *argv)
    assert_one_line_error(code, err, *words)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_csim_cache_is_one_line(monkeypatch):
    from edgemoe.sim import csim

    monkeypatch.setattr(csim, "CACHE", csim.Path("/proc/edgemoe-cache"))
    with pytest.raises(csim.CSimError) as e:
        csim.build(cfg(MINI), __import__("tests.conftest").conftest.profile("lean"))
    assert "cannot write the C-sim cache" in str(e.value) and "EDGEMOE_CACHE" in str(e.value)


def test_estimate_plot_into_a_missing_folder(tmp_path, capsys):
    plot = tmp_path / "new" / "est.png"
    code, _, err = cli(capsys, "estimate", "--config", MINI, "--plot", str(plot))
    assert code == 0, err
    assert Image.open(plot).format == "PNG"
    assert [p.name for p in plot.parent.iterdir()] == ["est.png"]


# ---- options and help ------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def test_every_option_has_help_and_help_shows_defaults(capsys):
    subs = _subparsers(build_parser())
    for name, sp in subs.items():
        for a in sp._actions:
            if a.option_strings and a.dest != "help":
                assert a.help, f"{name} {a.option_strings[0]} has no help"
    code, out, _ = cli(capsys, "run", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "(default: csim)" in text and "(default: run-out)" in text
    assert "(default: 16)" in text
    code, out, _ = cli(capsys, "export", "--help")
    assert "(default: m3vit-tiny-128x256)" in " ".join(out.split())


def test_export_defaults_like_the_others(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "export", "--config", MINI)
    assert code == 0, err
    assert (tmp_path / "build" / "bundle.bin").exists() and "lean" in out


def test_verify_reports_and_plots_every_pair(tmp_path, capsys):
    js, plot = tmp_path / "v.json", tmp_path / "v.png"
    code, out, err = cli(
        capsys, "verify", "--config", MINI, "--backends", "torch,golden,csim-direct",
        "--json", str(js), "--plot", str(plot),
    )  # fmt: skip
    assert code == 0, out + err
    result = json.loads(js.read_text())
    pairs = ["torch-golden", "torch-csim-direct", "golden-csim-direct"]
    assert list(result["pairs"]) == pairs
    for row in result["layers"]:
        assert set(row) == {"stage", *pairs}, row
    assert row["golden-csim-direct"] == 0.0  # bit-exact
    for p in pairs:
        a, b = p.split("-", 1)
        assert f"{a} vs {b}:" in out
    assert Image.open(plot).format == "PNG"


# ---- figures by the task's declared kind ----------------------------------------


def test_figures_follow_the_declared_kind(tmp_path):
    from edgemoe.host.app.plots import class_palette, task_figure, task_rgb

    small = cfg("m3vit-small-512x512")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for spec in small.task_specs:
        output = rng.normal(size=(spec.channels, 32, 32))
        rgb = task_rgb(spec, output)
        assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
        if spec.kind == "classes":
            palette = class_palette(spec.classes)
            assert len(set(palette)) == spec.channels  # 21 classes: no colour twice
            want = np.array(palette, np.uint8)[output.argmax(axis=0)]
            assert (rgb == want).all()
        elif spec.kind == "vector":
            # every channel drives the colour, not channel 0 alone
            assert not (rgb[..., 0] == rgb[..., 1]).all()
            v = output[:3] / np.linalg.norm(output[:3], axis=0)
            assert np.abs(rgb / 127.5 - 1 - v.transpose(1, 2, 0)).max() < 0.01
        path = tmp_path / f"{spec.name}.png"
        task_figure(path, image, spec, output, spec.name, "weights: random init, seed 0")
        assert Image.open(path).format == "PNG"
    one = small.task_spec("semseg")
    task_figure(tmp_path / "one.png", image, one, np.zeros((one.channels, 32, 32)), "t", "s")


def test_figure_subtitle_names_the_weights(tmp_path, capsys, monkeypatch):
    seen = []
    import edgemoe.host.app.run as run_mod

    real = run_mod.task_figure

    def spy(path, image, spec, output, title, subtitle="", unit=None):
        seen.append(subtitle)
        assert unit is None  # random init: no training data, the colour bar says metres
        real(path, image, spec, output, title, subtitle, unit)

    monkeypatch.setattr(run_mod, "task_figure", spy)
    code, _, err = cli(
        capsys, "run", "--config", MINI, "--backend", "golden", "--task", "depth", "--seed",
        "4", "--random", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 0, err
    assert seen == ["weights: random init, seed 4 (untrained)"]
    assert (tmp_path / "o" / "sample_depth_figure.png").exists()
