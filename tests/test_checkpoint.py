"""Checkpoint loading: every accepted layout round-trips, every bad one fails in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgemoe.errors import CheckpointError
from edgemoe.models.checkpoint import load_checkpoint, save_sharded
from edgemoe.models.config import ModelConfig, load_config
from edgemoe.models.m3vit import M3ViT, random_model

EXPERT_KEY = "blocks.1.mlp.experts.htoh4.weight"


@pytest.fixture(scope="module")
def mini() -> ModelConfig:
    return load_config("m3vit-mini")


@pytest.fixture(scope="module")
def source_sd(mini: ModelConfig) -> dict[str, torch.Tensor]:
    return random_model(mini, seed=7, style="trained").state_dict()


@pytest.fixture
def target(mini: ModelConfig) -> M3ViT:
    return M3ViT(mini, seed=1)


def assert_loaded(model: M3ViT, sd: dict[str, torch.Tensor], skip: str = "\0") -> None:
    got = model.state_dict()
    for k, v in sd.items():
        if not k.startswith(skip):
            assert torch.equal(got[k], v), k


# -- accepted layouts -------------------------------------------------------


def test_plain_file(tmp_path: Path, target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "plain.pth"
    torch.save(source_sd, path)
    assert load_checkpoint(target, path) == []
    assert_loaded(target, source_sd)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_module_prefix(
    tmp_path: Path, target: M3ViT, source_sd: dict[str, torch.Tensor], wrapper: str
) -> None:
    path = tmp_path / "wrapped.pt"
    wrapped = {"module." + k: v for k, v in source_sd.items()}
    torch.save({wrapper: wrapped, "epoch": torch.tensor(3)}, path)
    load_checkpoint(target, str(path))
    assert_loaded(target, source_sd)


def test_in_memory_dict(target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    load_checkpoint(target, {"state_dict": dict(source_sd)})
    assert_loaded(target, source_sd)


def test_backbone_prefix_and_missing_heads(
    target: M3ViT, source_sd: dict[str, torch.Tensor]
) -> None:
    before = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("heads.")}
    m3vit_style = {
        f"module.backbone.{k}": v for k, v in source_sd.items() if not k.startswith("heads.")
    }
    m3vit_style["module.decoders.semseg.conv.weight"] = torch.zeros(2, 2)
    notices = load_checkpoint(target, {"state_dict": m3vit_style})
    assert_loaded(target, source_sd, skip="heads.")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in before.items())
    text = " ".join(notices)
    assert "semseg" in text and "depth" in text and "initial values" in text
    assert "decoders.semseg.conv.weight" in text


@pytest.mark.parametrize("world", [2, 4])
def test_rank_shards(
    tmp_path: Path, target: M3ViT, source_sd: dict[str, torch.Tensor], world: int
) -> None:
    paths = save_sharded(source_sd, tmp_path, world)
    assert [p.name for p in paths] == [f"checkpoint_rank{r}.pth" for r in range(world)]
    shard = torch.load(paths[1], weights_only=True)["state_dict"]
    assert shard["module." + EXPERT_KEY].shape[0] == 4 // world
    notices = load_checkpoint(target, tmp_path)
    assert any(f"{world} rank" in n for n in notices)
    assert_loaded(target, source_sd)


def test_rank_order_is_numeric(tmp_path: Path, mini: ModelConfig) -> None:
    # With 12 ranks, "rank10" sorts before "rank2" as text; experts follow the rank number.
    cfg = mini.replace(num_experts=12)
    sd = random_model(cfg, seed=2).state_dict()
    save_sharded(sd, tmp_path, 12)
    target = M3ViT(cfg)
    load_checkpoint(target, tmp_path)
    assert_loaded(target, sd)


# -- errors -------------------------------------------------------------


def _fails(target: M3ViT, source: object, *needles: str, **kw: bool) -> str:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(target, source, **kw)  # type: ignore[arg-type]
    msg = str(err.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def test_missing_key(target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    sd = dict(source_sd)
    del sd["blocks.2.attn.qkv.bias"]
    _fails(target, sd, "blocks.2.attn.qkv.bias", "lacks")


def test_many_missing_keys_are_abridged(target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    sd = {k: v for k, v in source_sd.items() if not k.startswith("blocks.")}
    msg = _fails(target, sd, "and ")
    assert msg.count("blocks.") == 5


def test_missing_heads_strict(target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    sd = {k: v for k, v in source_sd.items() if k != "heads.depth.bias"}
    _fails(target, sd, "heads.depth.bias", strict_heads=True)
    assert len(load_checkpoint(target, sd)) == 1


def test_unexpected_key(target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    sd = dict(source_sd)
    sd["blocks.0.mlp.experts.htoh4.weight"] = torch.zeros(4, 64, 32)
    _fails(target, sd, "unexpected", "blocks.0.mlp.experts.htoh4.weight")


def test_shape_mismatch(target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    sd = dict(source_sd)
    sd[EXPERT_KEY] = torch.zeros(2, 64, 32)
    _fails(target, sd, EXPERT_KEY, "(4, 64, 32)", "(2, 64, 32)")


@pytest.mark.parametrize(("value", "label"), [(float("nan"), "3 NaN"), (float("inf"), "3 Inf")])
def test_non_finite(
    target: M3ViT, source_sd: dict[str, torch.Tensor], value: float, label: str
) -> None:
    sd = dict(source_sd)
    bad = sd["blocks.3.mlp.gate.depth.w_gate"].clone()
    bad[0, :3] = value
    sd["blocks.3.mlp.gate.depth.w_gate"] = bad
    _fails(target, sd, "blocks.3.mlp.gate.depth.w_gate", label)
    # Nothing was loaded.
    assert not torch.equal(
        target.state_dict()["norms.semseg.weight"], source_sd["norms.semseg.weight"]
    )


def test_missing_file(tmp_path: Path, target: M3ViT) -> None:
    _fails(target, tmp_path / "nope.pth", "not found", "nope.pth")


def test_garbage_file(tmp_path: Path, target: M3ViT) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint\n" * 10)
    _fails(target, path, "garbage.pth", "not a PyTorch checkpoint")


def test_not_a_state_dict(tmp_path: Path, target: M3ViT) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    _fails(target, path, "list.pth", "not a checkpoint")
    _fails(target, {"a": 1}, "non-tensor", "a")


def test_shards_disagree(tmp_path: Path, target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    paths = save_sharded(source_sd, tmp_path, 2)
    shard = torch.load(paths[1], weights_only=True)
    shard["state_dict"]["module.blocks.0.norm1.weight"] += 1.0
    torch.save(shard, paths[1])
    _fails(target, tmp_path, "disagree", "blocks.0.norm1.weight")


def test_shards_disagree_on_keys(
    tmp_path: Path, target: M3ViT, source_sd: dict[str, torch.Tensor]
) -> None:
    paths = save_sharded(source_sd, tmp_path, 2)
    shard = torch.load(paths[0], weights_only=True)
    del shard["state_dict"]["module.pos_embed"]
    torch.save(shard, paths[0])
    _fails(target, tmp_path, "disagree", "pos_embed")


def test_shard_missing_rank(
    tmp_path: Path, target: M3ViT, source_sd: dict[str, torch.Tensor]
) -> None:
    paths = save_sharded(source_sd, tmp_path, 4)
    paths[2].unlink()
    _fails(target, tmp_path, "rank 2")


def test_empty_directory(tmp_path: Path, target: M3ViT) -> None:
    _fails(target, tmp_path, "no per-rank")
