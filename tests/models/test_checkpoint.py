"""Checkpoint loading: every accepted layout round-trips, every bad one fails in one line."""

from __future__ import annotations

import fractions
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgemoe.errors import CheckpointError
from edgemoe.host.app.cli import main
from edgemoe.models.checkpoint import load_checkpoint, load_checkpoint_result, save_sharded
from edgemoe.models.config import ModelConfig, load_config
from edgemoe.models.m3vit import M3ViT, random_model
from tests.conftest import assert_one_line_error

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
    assert "decoders.semseg.* (1 tensor)" in text


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
    # a head with a part missing is refused; a head absent altogether is an untrained task
    sd = {k: v for k, v in source_sd.items() if k != "heads.depth.bias"}
    _fails(target, sd, "heads.depth.bias", strict_heads=True)
    _fails(target, sd, "heads.depth.bias")
    sd = {k: v for k, v in source_sd.items() if not k.startswith("heads.depth.")}
    _fails(target, sd, "heads.depth.bias", "heads.depth.weight", strict_heads=True)
    result = load_checkpoint_result(target, sd)
    assert result.untrained == ("depth",)
    assert len(result.notices) == 1 and "depth" in result.notices[0]


def test_unexpected_key(target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    sd = dict(source_sd)
    sd["blocks.0.attn.extra.weight"] = torch.zeros(4, 64, 32)
    _fails(target, sd, "unexpected", "blocks.0.attn.extra.weight")


def test_shape_mismatch(target: M3ViT, source_sd: dict[str, torch.Tensor]) -> None:
    sd = dict(source_sd)
    sd["blocks.2.norm1.weight"] = torch.zeros(16)
    _fails(target, sd, "blocks.2.norm1.weight", "(32,)", "(16,)")


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


# -- M3ViT's own layout ------------------------------------------------------
#
# Written here from the published facts of M3ViT's checkpoints (no third-party code): a directory
# of ``{rank}.pth``, each ``{'epoch', 'backbone', 'state_dict', 'best_result',
# 'optimizer'}``; keys ``module.backbone.*`` and ``module.decoders.{task}.*``;
# rank 0 holds everything plus its E/W experts, ranks > 0 only their experts.

M3VIT_ORDER = ("semseg", "human_parts", "sal", "normals", "edge", "depth")
_GATE = re.compile(r"^blocks\.(\d+)\.mlp\.gate\.(\w+)\.w_gate$")


def m3vit_state_dict(
    model: M3ViT, *, gate: str = "multi", norm: str = "per_task", extras: bool = True
) -> dict[str, torch.Tensor]:
    """``model``'s tensors under M3ViT's names (all experts; no light heads).

    gate: ``multi`` (``gate.{k}``), ``shared`` (``gate.w_gate``, the first task's),
    ``conditioned`` (M3ViT's task-conditioned gate: input D+64, gate_task_represent),
    ``noisy`` (``multi`` plus ``w_noise``). norm: ``per_task``
    (``decoders.{t}.norm``) or ``single`` (a backbone ``norm``, the first task's).
    """
    cfg = model.cfg
    order = [t for t in M3VIT_ORDER if t in cfg.task_names]
    first = cfg.task_names[0]
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        v = v.detach().clone()
        if k.startswith("heads."):
            continue
        if k.startswith("norms."):
            _, t, p = k.split(".")
            if norm == "per_task":
                out[f"module.decoders.{t}.norm.{p}"] = v
            elif t == first:
                out[f"module.backbone.norm.{p}"] = v
            continue
        m = _GATE.match(k)
        if m:
            b, t = m.groups()
            pre = f"module.backbone.blocks.{b}.mlp"
            if gate in ("multi", "noisy"):
                out[f"{pre}.gate.{order.index(t)}.w_gate"] = v
                if gate == "noisy":
                    out[f"{pre}.gate.{order.index(t)}.w_noise"] = torch.zeros_like(v)
            elif t == first and gate == "shared":
                out[f"{pre}.gate.w_gate"] = v
            elif t == first and gate == "conditioned":
                out[f"{pre}.gate.w_gate"] = torch.cat([v, torch.zeros(64, v.shape[1])])
                out[f"{pre}.gate_task_represent.fc1.weight"] = torch.zeros(64, len(order))
            continue
        out[f"module.backbone.{k}"] = v
    if extras:
        d = cfg.embed_dim
        for t in cfg.task_names:
            out[f"module.decoders.{t}.conv_0.weight"] = torch.ones(8, d, 3, 3)
            out[f"module.decoders.{t}.syncbn_fc_0.running_mean"] = torch.zeros(8)
            out[f"module.decoders.{t}.cls_seg.weight"] = torch.ones(cfg.task_channels(t), 8, 1, 1)
        out["module.tam_model.fc.weight"] = torch.ones(4, 4)
    return out


def training_record(epoch: int = 30) -> dict:
    """What M3ViT saves beside the weights: numpy scalars and optimizer state."""
    return {
        "epoch": epoch,
        "backbone": "VisionTransformer_moe",
        "best_result": {
            "multi_task_performance": np.float64(-3.25),
            "semseg": {"mIoU": np.float32(41.5), "n": np.int64(500)},
            "depth": {"rmse": np.float64(6.125)},
        },
        "optimizer": {
            "state": {0: {"step": torch.tensor(120.0), "exp_avg": torch.zeros(3)}},
            "param_groups": [
                {"lr": 2e-5, "betas": (0.9, 0.999), "weight_decay": 1e-4, "params": [0]}
            ],
        },
    }


def write_m3vit_dir(
    directory: Path, sd: dict[str, torch.Tensor], world: int, name: str = "{r}.pth"
) -> Path:
    """Save ``sd`` as M3ViT's ranks do: rank 0 everything, ranks > 0 experts only."""
    directory.mkdir(parents=True, exist_ok=True)
    for r in range(world):
        state = {}
        for k, v in sd.items():
            if ".mlp.experts." in k:
                state[k] = torch.chunk(v, world, dim=0)[r].clone()
            elif r == 0:
                state[k] = v
        torch.save({**training_record(), "state_dict": state}, directory / name.format(r=r))
    return directory


def m3vit_model(cfg: ModelConfig, seed: int = 7, *, tie: str = "") -> M3ViT:
    """A trained-style model whose per-task norms (and gates) differ; ``tie`` makes
    the gates (``gates``) or the norms (``norms``) of every task equal."""
    model = random_model(cfg, seed=seed, style="trained")
    first = cfg.task_names[0]
    with torch.no_grad():
        for t in cfg.task_names[1:]:
            if tie == "gates":
                for b in cfg.moe_blocks:
                    model.blocks[b].mlp.gate[t].w_gate.copy_(model.blocks[b].mlp.gate[first].w_gate)
            if tie == "norms":
                model.norms[t].load_state_dict(model.norms[first].state_dict())
    return model


def same_forward(ref: M3ViT, got: M3ViT) -> float:
    """Max abs difference of ``forward`` over every task (0.0 when exactly equal)."""
    x = torch.randn(2, 3, *ref.cfg.image_size, generator=torch.Generator().manual_seed(3))
    worst = 0.0
    with torch.no_grad():
        for t in ref.cfg.task_names:
            a, b = ref(x, t), got(x, t)
            worst = max(worst, float((a - b).abs().max()))
            assert torch.equal(a, b), t
    return worst


def loaded(cfg: ModelConfig, source: object, ref: M3ViT) -> tuple[M3ViT, list[str]]:
    """A fresh model loaded from ``source``, with ``ref``'s light heads (M3ViT has none)."""
    model = M3ViT(cfg, seed=1)
    notices = load_checkpoint(model, source)  # type: ignore[arg-type]
    model.heads.load_state_dict(ref.heads.state_dict())
    return model, notices


@pytest.mark.parametrize("world", [1, 2, 4])
def test_m3vit_rank_directory(tmp_path: Path, mini: ModelConfig, world: int) -> None:
    ref = m3vit_model(mini)
    assert not torch.equal(ref.norms["semseg"].weight, ref.norms["depth"].weight)
    ck = write_m3vit_dir(tmp_path / "best_model.pth.tar", m3vit_state_dict(ref), world)
    if world > 1:
        rank1 = torch.load(ck / "1.pth", weights_only=False)["state_dict"]
        assert all(".mlp.experts." in k for k in rank1)
        assert rank1["module.backbone." + EXPERT_KEY].shape[0] == 4 // world
    model, notices = loaded(mini, ck, ref)
    assert same_forward(ref, model) == 0.0
    assert_loaded(model, ref.state_dict())
    assert any(f"world size {world}" in n for n in notices)
    ignored = [n for n in notices if n.startswith("ignored")]
    assert len(ignored) == 1
    for word in (
        "epoch",
        "backbone",
        "best_result",
        "optimizer",
        "decoders.semseg.* (3",
        "decoders.depth.*",
        "tam_model*",
    ):
        assert word in ignored[0], (word, ignored[0])
    assert any("0 -> semseg, 1 -> depth" in n for n in notices)


def test_m3vit_rank0_file_alone(tmp_path: Path, mini: ModelConfig) -> None:
    ref = m3vit_model(mini)
    ck = write_m3vit_dir(tmp_path / "ck", m3vit_state_dict(ref), 1)
    model, notices = loaded(mini, ck / "0.pth", ref)
    assert same_forward(ref, model) == 0.0
    assert not any("world size" in n for n in notices)


def test_numpy1_pickles_load(tmp_path: Path, mini: ModelConfig) -> None:
    """M3ViT's files were pickled under numpy 1.x: ``numpy.core.multiarray.scalar``."""
    ref = m3vit_model(mini)
    path = write_m3vit_dir(tmp_path / "ck", m3vit_state_dict(ref), 1) / "0.pth"
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info.filename)) for info in z.infolist()]
    new = b"numpy.core.multiarray\nscalar"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(b"numpy._core.multiarray\nscalar", new)
            z.writestr(info, data)
    model, _ = loaded(mini, path, ref)
    assert same_forward(ref, model) == 0.0


def test_rank_files_named_otherwise(tmp_path: Path, mini: ModelConfig) -> None:
    ref = m3vit_model(mini)
    ck = write_m3vit_dir(tmp_path / "ck", m3vit_state_dict(ref), 2, name="ckpt_rank{r}.pt")
    (ck / "log_file.txt").write_text("epoch 30\n")
    model, notices = loaded(mini, ck, ref)
    assert same_forward(ref, model) == 0.0
    assert any("log_file.txt" in n for n in notices)


def test_m3vit_shared_gate(tmp_path: Path, mini: ModelConfig) -> None:
    ref = m3vit_model(mini, tie="gates")
    ck = write_m3vit_dir(tmp_path / "ck", m3vit_state_dict(ref, gate="shared"), 2)
    model, notices = loaded(mini, ck, ref)
    assert same_forward(ref, model) == 0.0
    assert any("shared gate" in n and "every task" in n for n in notices)


def test_single_norm_fills_every_task(mini: ModelConfig) -> None:
    ref = m3vit_model(mini, tie="norms")
    model, notices = loaded(mini, {"state_dict": m3vit_state_dict(ref, norm="single")}, ref)
    assert same_forward(ref, model) == 0.0
    assert any("one final norm" in n and "every task" in n for n in notices)


def test_gate_order_from_the_config(mini: ModelConfig) -> None:
    ref = m3vit_model(mini)
    sd = m3vit_state_dict(ref)  # gate 0 = semseg, 1 = depth
    cfg = mini.replace(gate_order=("depth", "semseg"))
    model = M3ViT(cfg, seed=1)
    notices = load_checkpoint(model, sd)
    assert any("gate_order" in n and "0 -> depth" in n for n in notices)
    got = model.blocks[1].mlp.gate["depth"].w_gate
    assert torch.equal(got, ref.blocks[1].mlp.gate["semseg"].w_gate)


def test_project_safetensors_fp16(tmp_path: Path, mini: ModelConfig) -> None:
    from safetensors.torch import save_file

    ref = m3vit_model(mini)
    half = {k: v.detach().half().contiguous() for k, v in ref.state_dict().items()}
    path = tmp_path / "m3vit-mini.safetensors"
    save_file(half, str(path))
    with torch.no_grad():
        for k, v in ref.state_dict().items():
            v.copy_(half[k].float())
    model = M3ViT(mini, seed=1)
    notices = load_checkpoint(model, path)
    assert same_forward(ref, model) == 0.0
    assert any("float16" in n for n in notices)


def test_project_checkpoints_round_trip(tmp_path: Path, mini: ModelConfig) -> None:
    ref = m3vit_model(mini)
    torch.save(ref.state_dict(), tmp_path / "own.pth")
    model = M3ViT(mini, seed=1)
    assert load_checkpoint(model, tmp_path / "own.pth") == []
    assert same_forward(ref, model) == 0.0


# -- M3ViT variants and configs that are refused ------------------------------


@pytest.mark.parametrize(
    ("gate", "words"),
    [
        ("conditioned", ["task-conditioned", "gate_task_represent"]),
        ("noisy", ["w_noise"]),
    ],
)
def test_gate_variants_refused(mini: ModelConfig, target: M3ViT, gate: str, words: list[str]):
    sd = m3vit_state_dict(m3vit_model(mini), gate=gate)
    _fails(target, {"state_dict": sd}, *words)


def test_gate_input_width_refused(mini: ModelConfig, target: M3ViT) -> None:
    sd = m3vit_state_dict(m3vit_model(mini))
    key = "module.backbone.blocks.1.mlp.gate.0.w_gate"
    sd[key] = torch.cat([sd[key], torch.zeros(64, 4)])
    _fails(target, sd, "gate input width 96", "embed_dim 32", "task-conditioned")


def test_gate_count_must_match_the_tasks(mini: ModelConfig, target: M3ViT) -> None:
    sd = m3vit_state_dict(m3vit_model(mini))
    for b in mini.moe_blocks:
        sd[f"module.backbone.blocks.{b}.mlp.gate.2.w_gate"] = torch.zeros(32, 4)
    _fails(target, sd, "0, 1, 2", "'tasks'")


@pytest.mark.parametrize(
    ("change", "field", "want", "got"),
    [
        ({"expert_hidden": 128}, "expert_hidden", "64", "128"),
        ({"num_experts": 8}, "num_experts", "4", "8"),
        ({"embed_dim": 64}, "embed_dim", "32", "64"),
        ({"depth": 6}, "depth", "4", "6"),
        ({"mlp_hidden": 256}, "mlp_hidden", "128", "256"),
        ({"moe_blocks": (0, 1, 3)}, "moe_blocks", "[1, 3]", "[0, 1, 3]"),
    ],
)
def test_another_config_names_the_field(
    mini: ModelConfig, target: M3ViT, change: dict, field: str, want: str, got: str
) -> None:
    other = random_model(mini.replace(**change), seed=3)
    msg = _fails(target, {"state_dict": m3vit_state_dict(other)}, field)
    assert f"{field} is {want} in m3vit-mini, {got} in the checkpoint" in msg


# -- bad M3ViT directories and files: through the CLI, one line, exit 2 ---------


def _bad_rank_gap(d: Path, sd: dict) -> Path:
    write_m3vit_dir(d, sd, 4)
    (d / "2.pth").unlink()
    return d


def _bad_same_rank(d: Path, sd: dict) -> Path:
    write_m3vit_dir(d, sd, 2)
    shutil.copy(d / "1.pth", d / "rank1.pth")
    return d


def _bad_expert_split(d: Path, sd: dict) -> Path:
    write_m3vit_dir(d, sd, 2)
    shutil.copy(d / "1.pth", d / "2.pth")  # three ranks cannot split 4 experts
    return d


def _bad_not_a_checkpoint(d: Path, sd: dict) -> Path:
    d.mkdir()
    (d / "0.pth").write_bytes(b"PK\x03\x04 not really a zip, nor a pickle\n" * 4)
    return d


def _bad_global(d: Path, sd: dict) -> Path:
    d.mkdir()
    rec = {**training_record(), "state_dict": sd}
    rec["best_result"]["ratio"] = fractions.Fraction(1, 3)
    torch.save(rec, d / "0.pth")
    return d / "0.pth"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_bad_rank_gap, ["missing shard", "rank 2", "found ranks 0, 1, 3"]),
        (_bad_same_rank, ["two shards for rank 1", "1.pth", "rank1.pth"]),
        (_bad_expert_split, ["3 rank files", "num_experts=4", "does not divide"]),
        (_bad_not_a_checkpoint, ["0.pth", "not a PyTorch checkpoint"]),
        (_bad_global, ["fractions.Fraction", "weights-only"]),
    ],
    ids=["rank-gap", "same-rank", "experts-do-not-divide", "not-a-checkpoint", "bad-global"],
)
def test_bad_m3vit_inputs_through_the_cli(tmp_path: Path, capsys, mini: ModelConfig, make, words):
    source = make(tmp_path / "ck", m3vit_state_dict(m3vit_model(mini)))
    for argv in (
        ["verify", "--config", "m3vit-mini", "--checkpoint", str(source)],
        [
            "run",
            "--config",
            "m3vit-mini",
            "--backend",
            "torch",
            "--checkpoint",
            str(source),
            "--out",
            str(tmp_path / "out"),
        ],
    ):
        code = main(argv)
        _, err = capsys.readouterr()
        assert_one_line_error(code, err, *words)
    assert not (tmp_path / "out").exists()


# -- verify and run on an M3ViT directory: the task's own final norm --------------


@pytest.fixture(scope="module")
def flat_semseg_dir(tmp_path_factory) -> tuple[Path, M3ViT]:
    """An M3ViT rank directory (world 2, shared gate) whose semseg norm has scale 0:
    the semseg map is one colour if (and only if) semseg's own norm is used; the
    depth norm is an ordinary one, so the depth map varies."""
    cfg = load_config("m3vit-mini")
    ref = m3vit_model(cfg, tie="gates")
    with torch.no_grad():
        ref.norms["semseg"].weight.zero_()
        ref.norms["semseg"].bias.copy_(torch.linspace(-1, 1, cfg.embed_dim))
    ck = write_m3vit_dir(
        tmp_path_factory.mktemp("m3vit") / "ck", m3vit_state_dict(ref, gate="shared"), 2
    )
    return ck, ref


def test_verify_on_an_m3vit_directory(tmp_path: Path, capsys, flat_semseg_dir) -> None:
    ck, ref = flat_semseg_dir
    js = tmp_path / "v.json"
    code = main(
        [
            "verify",
            "--config",
            "m3vit-mini",
            "--checkpoint",
            str(ck),
            "--task",
            "depth",
            "--backends",
            "torch,golden,csim",
            "--json",
            str(js),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "top_k 2" in out
    assert "notice: one shared gate" in err and "world size 2" in err
    data = json.loads(js.read_text())
    assert data["top_k"] == 2 and data["pairs"]["golden-csim"]["bit_exact"]
    head = data["task_output"]
    assert head["norm"] == "norms.depth"
    # the host's head on torch's tokens is the model's own forward, to float rounding
    assert head["max_abs_vs_forward"]["torch"] < 1e-4
    code = main(
        [
            "verify",
            "--config",
            "m3vit-mini",
            "--checkpoint",
            str(ck),
            "--task",
            "semseg",
            "--backends",
            "torch,golden",
            "--top-k",
            "1",
            "--json",
            str(js),
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0 and "top_k 1" in out
    data = json.loads(js.read_text())
    assert data["top_k"] == 1 and data["task_output"]["norm"] == "norms.semseg"


@pytest.mark.parametrize("backend", ["torch", "golden", "csim"])
def test_run_uses_each_tasks_own_norm(tmp_path: Path, capsys, flat_semseg_dir, backend) -> None:
    ck, _ = flat_semseg_dir
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--config",
            "m3vit-mini",
            "--backend",
            backend,
            "--checkpoint",
            str(ck),
            "--untrained-heads",  # M3ViT's layout carries norms, not the light heads
            "--out",
            str(out),
        ]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "top_k 2" in stdout and "notice: one shared gate" in err
    assert json.loads((out / "report.json").read_text())["top_k"] == 2
    semseg = np.asarray(Image.open(out / "sample_semseg.png"))
    depth = np.asarray(Image.open(out / "sample_depth.png")).astype(np.int64)
    assert len(np.unique(semseg.reshape(-1, semseg.shape[-1]), axis=0)) == 1
    assert depth.std() > 1.0
