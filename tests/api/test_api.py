"""The Python API (``edgemoe.load`` / ``Model.run`` / ``Model.export``) and its README example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgemoe
from edgemoe.host.app.run import sample_scene
from edgemoe.host.export.bundle import pack
from tests.conftest import cfg, profile

ROOT = Path(__file__).resolve().parents[2]
MINI = "m3vit-mini"


@pytest.fixture(scope="module")
def m():
    return edgemoe.load(MINI, profile="lean", seed=0)


@pytest.fixture(scope="module")
def scene():
    return sample_scene(cfg(MINI), seed=3)


def readme_block() -> str:
    """The code block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one python block"
    return blocks[0]


def docstring_block(module) -> str:
    """The ``::`` example of a module's docstring, dedented."""
    text = module.__doc__.split("::\n", 1)[1]
    lines = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines) + "\n"


def run_as_written(code: str, root: Path) -> dict:
    """Execute ``code`` in a scratch copy of the repository root's layout (its relative paths
    resolve as in the checkout; its outputs stay out of it)."""
    (root / "samples").symlink_to(ROOT / "samples")
    scope: dict = {}
    cwd = Path.cwd()
    os.chdir(root)
    try:
        exec(compile(code, "example", "exec"), scope)
    finally:
        os.chdir(cwd)
    return scope


@pytest.mark.slow
def test_readme_example_runs_as_written(tmp_path):
    code = readme_block()
    assert code.count("import ") == 1
    scope = run_as_written(code, tmp_path)
    out, m = scope["out"], scope["m"]
    H, W = cfg("m3vit-tiny-128x256").image_size
    assert out["semseg"].labels.shape == (H, W)
    assert out["depth"].map.shape == (H, W)
    assert "trained on procedural street scenes" in out.weights
    assert (tmp_path / "build" / "tiny-lean.bin").read_bytes() == m.bundle


@pytest.mark.slow
@pytest.mark.parametrize("module", ["edgemoe", "edgemoe.api"])
def test_docstring_examples_run_as_written(tmp_path, module):
    import importlib

    scope = run_as_written(docstring_block(importlib.import_module(module)), tmp_path)
    assert scope["out"]["semseg"].labels.shape == cfg("m3vit-tiny-128x256").image_size


def test_public_names():
    assert set(edgemoe.__all__) >= {"load", "Model", "Result", "TaskOutput", "EdgeMoeError"}
    assert set(edgemoe.backends()) >= {"torch", "golden", "csim-direct", "csim", "pynq"}


def test_import_and_load_need_no_torch():
    """``import edgemoe`` and a seeded ``load`` leave torch unimported (the float model is lazy)."""
    code = (
        "import sys, edgemoe; m = edgemoe.load('m3vit-mini'); m.tasks, m.sample_image(); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---- input forms -----------------------------------------------------------------


def test_input_forms_agree(m, scene, tmp_path):
    """A path, a PIL image, a uint8 array, a list and a 4-D batch give the same outputs."""
    path = tmp_path / "scene.png"
    Image.fromarray(scene).save(path)
    forms = {
        "array": scene,
        "path": path,
        "str": str(path),
        "PIL": Image.fromarray(scene),
    }
    ref = m.run(scene, tasks="semseg", backend="golden")["semseg"]
    assert ref.values.shape == (7, *scene.shape[:2]) and ref.tokens.ndim == 2
    for name, image in forms.items():
        out = m.run(image, tasks="semseg", backend="golden")["semseg"]
        assert (out.tokens == ref.tokens).all(), name
        assert (out.values == ref.values).all(), name
    other = sample_scene(cfg(MINI), seed=4)
    for batch in ([path, Image.fromarray(other)], np.stack([scene, other])):
        res = m.run(batch, tasks=["semseg", "depth"], backend="golden")
        assert res.images.shape == (2, *scene.shape)
        assert res["semseg"].labels.shape == (2, *scene.shape[:2])
        assert (res["semseg"].tokens[0] == ref.tokens).all()
        assert res["depth"].map.shape == (2, *scene.shape[:2])
        assert res["depth"].rgb().shape == (2, *scene.shape)


def test_conversions_and_resizes_say_so(m, scene):
    gray = Image.fromarray(scene).convert("L").resize((100, 50))
    res = m.run(gray, tasks=0, backend="golden")
    assert res.images.shape == scene.shape
    assert [n.split(",")[0] for n in res.notices] == ["PIL image is L", "PIL image is 100x50 (WxH)"]
    small = np.ascontiguousarray(scene[::2, ::2])
    res = m.run(small, tasks="depth", backend="golden")
    assert res.images.shape == scene.shape and "stretched to" in res.notices[0]


def test_a_16_bit_image_is_scaled_like_a_16_bit_file(m, scene, tmp_path):
    """In memory or as a file, one rule: 16-bit pixels / 257 to 8 bits, with a notice."""
    wide = Image.fromarray(scene[..., 0].astype(np.uint16) * 257)
    assert wide.mode.startswith("I;16"), wide.mode
    res = m.run(wide, tasks=0, backend="golden")
    assert any("16-bit: scaled to 8 bits" in n for n in res.notices), res.notices
    wide.save(tmp_path / "wide.png")
    from_file = m.run(tmp_path / "wide.png", tasks=0, backend="golden")
    assert (res.images == from_file.images).all()
    assert (res.images[..., 0] == scene[..., 0]).all()


def test_task_output_kinds(m, scene):
    res = m.run(scene, backend="golden")
    assert list(res) == list(m.tasks) and len(res) == len(m.tasks)
    seg, depth = res["semseg"], res["depth"]
    assert seg.kind == "classes" and depth.kind == "scalar"
    assert (seg.map == seg.values.argmax(axis=0)).all()
    assert (depth.map == depth.values[0]).all()
    assert seg.rgb().shape == depth.rgb().shape == scene.shape
    assert seg.rgb().dtype == np.uint8
    # the shipped mini was trained on procedural scenes: metric depth
    assert depth.unit == "m" and depth.label == "depth (m)"


def test_depth_label_follows_the_training_data(m, scene, tmp_path):
    """A checkpoint trained on MTAN-layout data predicts disparity, and says so."""
    ckpt = tmp_path / "mtan.safetensors"
    ckpt.write_bytes(m.checkpoint.read_bytes())
    rec = json.loads(m.checkpoint.with_suffix(".json").read_text())
    ckpt.with_suffix(".json").write_text(json.dumps({**rec, "data": str(tmp_path / "mtan")}))
    model = edgemoe.load(MINI, checkpoint=ckpt)
    depth = model.run(scene, tasks="depth", backend="golden")
    assert depth["depth"].unit == "disparity"
    assert depth["depth"].label == "depth: disparity (MTAN scale)"
    # the bundle records it: the board reads it without the checkpoint's record
    bundle = model.export(tmp_path / "mtan.bin")
    ckpt.with_suffix(".json").unlink()
    from_bundle = edgemoe.load(bundle=bundle).run(scene, tasks="depth", backend="golden")
    assert from_bundle["depth"].unit == "disparity"


# ---- bad input: one line, an EdgeMoeError subclass ------------------------------------


def one_line(exc_info, *words: str) -> None:
    assert isinstance(exc_info.value, edgemoe.EdgeMoeError)
    text = str(exc_info.value)
    assert "\n" not in text and text
    for w in words:
        assert w in text, text


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"config": "m3vit-huge"}, ["unknown config", "m3vit-mini"]),
        ({"config": MINI, "profile": "fp64"}, ["unknown profile", "lean"]),
        ({"config": MINI, "seed": -1}, ["seed"]),
        ({"config": MINI, "top_k": 99}, ["top-k"]),
        ({"config": MINI, "checkpoint": "/no/such.pth"}, ["/no/such.pth"]),
        ({"config": MINI, "bundle": "/no/such.bin"}, ["/no/such.bin", "no such file"]),
        ({"config": MINI, "bundle": b"EMOE" + bytes(100)}, ["bundle"]),
    ],
)
def test_bad_load(kwargs, words):
    config = kwargs.pop("config")
    with pytest.raises(edgemoe.EdgeMoeError) as e:
        edgemoe.load(config, **kwargs)
    one_line(e, *words)


@pytest.mark.parametrize(
    ("image", "kwargs", "words"),
    [
        (np.zeros((32, 64, 3), np.float32), {}, ["float32", "uint8"]),
        (np.zeros((32, 64), np.uint8), {}, ["(32, 64)", "(H, W, 3)"]),
        (np.zeros((2, 3, 32, 64, 3), np.uint8), {}, ["(H, W, 3)"]),
        (42, {}, ["int", "path"]),
        ([], {}, ["empty"]),
        ("/no/such.png", {}, ["/no/such.png", "no such file"]),
        (np.zeros((16, 16, 3), np.uint8), {"resize": False}, ["16x16", "64x32"]),
        (None, {"tasks": "normals"}, ["unknown task", "semseg"]),
        (None, {"tasks": ["semseg", 0]}, ["twice"]),
        (None, {"tasks": []}, ["no task"]),
        (None, {"backend": "fpga"}, ["unknown backend", "csim"]),
        (None, {"backend": "golden", "board": object()}, ["not both"]),
        (None, {"batch": 0}, ["batch"]),
        (None, {"timeout_s": 0}, ["timeout_s"]),
    ],
)
def test_bad_run(m, scene, image, kwargs, words):
    with pytest.raises(edgemoe.EdgeMoeError) as e:
        m.run(scene if image is None else image, **{"backend": "golden", **kwargs})
    one_line(e, *words)


def test_not_a_file_is_refused(m, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(edgemoe.EdgeMoeError) as e:
        m.run(tmp_path / "notes.png", backend="golden")
    one_line(e, "not an image")


def test_labels_of_a_scalar_task(m, scene):
    with pytest.raises(edgemoe.EdgeMoeError) as e:
        _ = m.run(scene, tasks="depth", backend="golden")["depth"].labels
    one_line(e, "depth", "scalar")


def test_bundle_of_another_build_is_refused(tmp_path):
    path = edgemoe.load(MINI, profile="edge-moe").export(tmp_path / "edge.bin")
    with pytest.raises(edgemoe.EdgeMoeError) as e:
        edgemoe.load(MINI, profile="lean", bundle=path)
    one_line(e, str(path), "profile")


# ---- backends ---------------------------------------------------------------------


def test_fixed_point_backends_agree_bit_exactly(m, scene):
    """golden, csim-direct, csim (driver + virtual board) and a board given by hand."""
    from edgemoe.sim.virtual_board import VirtualBoard

    images = np.stack([scene, sample_scene(cfg(MINI), seed=5)])
    ref = m.run(images, backend="golden")
    runs = {
        "csim": m.run(images, backend="csim", batch=1),
        "csim-direct": m.run(images, backend="csim-direct"),
        "board": m.run(images, board=VirtualBoard(m.cfg, m.profile)),
    }
    for name, res in runs.items():
        assert res.backend == name
        for task in m.tasks:
            assert (res[task].tokens == ref[task].tokens).all(), (name, task)
            assert (res[task].values == ref[task].values).all(), (name, task)
    assert "kernel" in runs["csim"].seconds and "head" in runs["csim"].seconds


def test_torch_within_the_profiles_budget(m, scene):
    from edgemoe.host.app.fidelity import cosine

    ref = m.run(scene, tasks="semseg", backend="torch")["semseg"]
    fixed = m.run(scene, tasks="semseg", backend="golden")["semseg"]
    assert cosine(ref.tokens, fixed.tokens) >= profile("lean").budgets["cosine"]


def test_export_and_run_a_bundle(m, scene, tmp_path):
    """``Model.export`` writes the one bundle file; ``load(bundle=...)`` runs it alone."""
    from edgemoe.host.export.bundle import split_file

    path = m.export(tmp_path / "sub" / "mini.bin")
    assert path.read_bytes() == m.bundle
    kernel, host = split_file(m.bundle)
    assert bytes(kernel) == pack(m._workload().quantized, m.tiling) and host is not None
    ref = m.run(scene, backend="golden")
    for source in (path, str(path), path.read_bytes()):
        b = edgemoe.load(bundle=source)
        assert b.cfg == m.cfg and b.weights == m.weights and b.bundle == m.bundle
        for backend in ("csim", "golden"):
            out = b.run(scene, backend=backend)
            for t in m.tasks:
                assert (out[t].tokens == ref[t].tokens).all(), (backend, t)
                assert (out[t].values == ref[t].values).all(), (backend, t)
    assert "from a bundle" in repr(b)
    assert "values (" in repr(out["semseg"]) and len(repr(out)) < 300  # no arrays dumped
    assert m.quant_report.saturated >= 0
    # the torch backend on a bundle runs the float model it names (checked to be that one)
    tok = b.run(scene, tasks="semseg", backend="torch")["semseg"].tokens
    assert (tok == m.run(scene, tasks="semseg", backend="torch")["semseg"].tokens).all()


def test_the_shipped_weights_are_the_default_and_named(m):
    from edgemoe.models.shipped import shipped_checkpoint

    assert m.checkpoint == shipped_checkpoint(MINI)
    assert m.weights.startswith("checkpoint m3vit-mini.safetensors, trained on procedural")
    r = edgemoe.load(MINI, random=True, seed=3)
    assert r.checkpoint is None and r.weights == "random init, seed 3 (untrained)"
    with pytest.raises(edgemoe.EdgeMoeError) as e:
        edgemoe.load(MINI, random=True, checkpoint="x.pth")
    one_line(e, "random=", "checkpoint=")


def test_a_bundle_runs_without_torch_as_run_bundle_does(tmp_path):
    """The board path: an `edgemoe export` bundle through ``load(bundle=...)`` on csim with
    torch and onnxruntime unimportable gives the tokens of `edgemoe run --bundle`, bit for
    bit; a ``Model.export`` bundle runs through `edgemoe run --bundle` the same way."""
    import json

    from edgemoe.host.app.cli import main
    from tests.api.torchless import run_python, torchless_env

    bundle = tmp_path / "cli.bin"
    assert main(["export", "--config", MINI, "--out", str(bundle)]) == 0
    api_bundle = edgemoe.load(MINI, random=True, seed=2).export(tmp_path / "api.bin")
    image = tmp_path / "scene.png"
    Image.fromarray(sample_scene(cfg(MINI), seed=7)).save(image)
    env = torchless_env(tmp_path)
    code = (
        "import hashlib, json, sys, numpy as np, edgemoe\n"
        f"m = edgemoe.load(bundle={str(bundle)!r})\n"
        f"out = m.run({str(image)!r}, backend='csim')\n"
        "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n"
        "for backend in ('torch', 'pynq'):  # the float model; the board, not here\n"
        "    try:\n"
        "        m.run(m.sample_image(), backend=backend)\n"
        "    except edgemoe.EdgeMoeError as e:\n"
        "        print(backend, 'refused:', e)\n"
        "print(json.dumps({t: hashlib.sha256(np.ascontiguousarray(o.tokens).tobytes())"
        ".hexdigest() for t, o in out.items()}))\n"
    )
    lines = run_python(code, env)
    assert lines[0].startswith("torch refused: ") and "PyTorch is not installed" in lines[0]
    assert lines[1].startswith("pynq refused: ") and "ZCU104" in lines[1]
    api_sha = json.loads(lines[-1])
    edgemoe_cli = str(Path(sys.executable).with_name("edgemoe"))
    for path, name in ((bundle, "cli"), (api_bundle, "api")):
        out = tmp_path / f"out-{name}"
        argv = [edgemoe_cli, "run", "--bundle", str(path), "--image", str(image)]
        run = subprocess.run(
            [*argv, "--out", str(out), "--no-figures"], env=env, capture_output=True, text=True
        )
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
        report = json.loads((out / "report.json").read_text())
        shas = {t: e["tokens_sha256"] for t, e in report["images"][0]["tasks"].items()}
        if name == "cli":
            assert shas == api_sha
            assert "trained on procedural street scenes" in report["weights"]
        else:
            assert report["weights"] == "random init, seed 2 (untrained)"
