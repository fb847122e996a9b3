"""ONNX export: onnxruntime agrees with torch, and the exported top-k keeps the tie rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgemoe.models.config import ModelConfig, load_config
from edgemoe.models.m3vit import M3ViT, random_model
from edgemoe.models.onnx_export import export_onnx

# onnxruntime vs torch, float32, whole mini model: only op-order rounding.
ONNX_ATOL = 1e-4
BATCH = 2


@pytest.fixture(scope="module")
def mini() -> ModelConfig:
    return load_config("m3vit-mini")


@pytest.fixture(scope="module")
def images(mini: ModelConfig) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.randn(BATCH, mini.in_chans, *mini.image_size, generator=g)


def run_onnx(path: Path, images: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})[0]


def torch_out(model: M3ViT, images: torch.Tensor, task: str) -> np.ndarray:
    with torch.no_grad():
        return model(images, task).numpy()


def test_onnx_matches_torch(tmp_path: Path, mini: ModelConfig, images: torch.Tensor) -> None:
    model = random_model(mini, seed=9, style="trained")
    path = export_onnx(model, "semseg", tmp_path / "mini.onnx", batch=BATCH)
    assert model.moe_dense is False  # restored after export
    proto = onnx.load(str(path))
    assert not list(tmp_path.glob("*.data"))  # weights embedded: one file
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [o.name for o in proto.graph.output] == ["semseg"]
    got = run_onnx(path, images)
    want = torch_out(model, images, "semseg")
    assert got.shape == (BATCH, mini.task_channels("semseg"), *mini.image_size)
    np.testing.assert_allclose(got, want, atol=ONNX_ATOL, rtol=0)


@pytest.mark.parametrize("variant", [(4, 4), (2, 2)])
def test_onnx_of_m3vit_decoder_matches_torch(
    tmp_path: Path, mini: ModelConfig, images: torch.Tensor, variant: tuple[int, int]
) -> None:
    import dataclasses

    from edgemoe.models.config import HeadSpec

    head = HeadSpec("pup", *variant, True, 16, False)
    cfg = dataclasses.replace(
        mini, task_specs=tuple(dataclasses.replace(s, head=head) for s in mini.task_specs)
    )
    model = random_model(cfg, seed=9, style="trained")
    path = export_onnx(model, "depth", tmp_path / "pup.onnx", batch=BATCH)
    got = run_onnx(path, images)
    want = torch_out(model, images, "depth")
    assert got.shape == (BATCH, 1, *mini.image_size)
    np.testing.assert_allclose(got, want, atol=ONNX_ATOL, rtol=0)


def test_onnx_topk_ties_go_to_lower_index(
    tmp_path: Path, mini: ModelConfig, images: torch.Tensor
) -> None:
    model = random_model(mini, seed=4, style="trained")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".w_gate"):
                p.zero_()  # p = 1/E for every expert: a tie everywhere, experts 0 and 1 win
    path = export_onnx(model, "depth", tmp_path / "ties.onnx", batch=BATCH)
    got = run_onnx(path, images)
    np.testing.assert_allclose(got, torch_out(model, images, "depth"), atol=ONNX_ATOL, rtol=0)

    # Control: the experts are distinct enough that another choice would show.
    flipped = random_model(mini, seed=4, style="trained")
    flipped.load_state_dict(model.state_dict())
    with torch.no_grad():
        for block in flipped.blocks:
            experts = getattr(block.mlp, "experts", None)
            if experts is not None:
                for layer in (experts.htoh4, experts.h4toh):
                    layer.weight.copy_(layer.weight.flip(0))
                    layer.bias.copy_(layer.bias.flip(0))
    assert np.abs(got - torch_out(flipped, images, "depth")).max() > 10 * ONNX_ATOL
