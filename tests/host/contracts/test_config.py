"""Configs and precision profiles: loading, validation, accumulator bit growth."""

import dataclasses

import pytest
import yaml

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.accumulators import accumulator_bits
from edgemoe.host.contracts.profile import config_hash, list_profiles, load_profile
from edgemoe.models import list_configs, load_config

CONFIGS = ["m3vit-mini", "m3vit-mini-pup", "m3vit-tiny-128x256", "m3vit-small-512x512"]


def test_shipped_configs_match_design_table():
    assert set(CONFIGS) <= set(list_configs())
    tiny = load_config("m3vit-tiny-128x256")
    assert (tiny.num_tokens, tiny.embed_dim, tiny.depth, tiny.num_heads) == (129, 192, 12, 3)
    assert (tiny.num_experts, tiny.expert_hidden, tiny.top_k, tiny.mlp_hidden) == (16, 384, 2, 768)
    assert tiny.moe_blocks == (1, 3, 5, 7, 9, 11)
    assert tiny.tasks == (("semseg", 7), ("depth", 1))
    assert tiny.task_spec("semseg").classes == (
        "flat",
        "construction",
        "object",
        "nature",
        "sky",
        "human",
        "vehicle",
    )
    assert tiny.task_spec("depth").kind == "scalar" and tiny.task_spec("depth").far == 80.0
    small = load_config("m3vit-small-512x512")
    assert (small.num_tokens, small.embed_dim, small.num_heads) == (1025, 384, 12)
    assert len(small.tasks) == 5
    mini = load_config("m3vit-mini")
    assert (mini.num_tokens, mini.embed_dim, mini.patch_dim) == (9, 32, 768)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mini.depth = 3


def _write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    "change, message",
    [
        ({"embed_dim": "big"}, "'embed_dim' must be an integer"),
        ({"num_heads": 5}, "'num_heads'"),
        ({"top_k": 9}, "'top_k'"),
        ({"moe_blocks": [1, 7]}, "'moe_blocks'"),
        ({"image_size": [30, 64]}, "'image_size'"),
        ({"colour": "red"}, "unknown field(s) 'colour'"),
        ({"pixel_std": [0.2, 0.2]}, "'pixel_std'"),
        ({"tasks": {}}, "'tasks'"),
        ({"ln_eps": 0}, "'ln_eps'"),
    ],
)
def test_bad_config_field_is_named(tmp_path, change, message):
    data = load_config("m3vit-mini").to_dict()
    data.update(change)
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, data))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_field_and_unknown_name(tmp_path):
    data = load_config("m3vit-mini").to_dict()
    del data["depth"]
    with pytest.raises(ConfigError, match="missing field.*'depth'"):
        load_config(_write(tmp_path, data))
    with pytest.raises(ConfigError, match="unknown config 'm3vit-huge'"):
        load_config("m3vit-huge")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_profiles_load_and_validate(tmp_path):
    assert {"edge-moe", "lean"} <= set(list_profiles())
    em = load_profile("edge-moe")
    # the published widths; the integer bits are sized by calibration (issue 14)
    assert str(em.act) == "fixed<32,10>" and str(em.pixel) == "ufixed<8,0>"
    for k in ("weight", "bias", "attn_bias", "ln", "patch_weight", "gate_weight"):
        assert em.formats[k].width == 16, k
    with pytest.raises(ConfigError, match="unknown profile 'fp8'"):
        load_profile("fp8")
    data = yaml.safe_load((load_profile.__globals__["PROFILE_DIR"] / "lean.yaml").read_text())
    for section, key, value, message in [
        ("formats", "act", "fixed<33,10>", "formats.act"),
        ("formats", "weight", "float16", "formats.weight"),
        ("formats", "prob", "fixed<17,1>", "formats.prob"),
        ("units", "exp2_frac", 99, "units.exp2_frac"),
        ("budgets", "cosine", 2, "budgets.cosine"),
        ("random_init_budgets", "rel_rms", 3, "random_init_budgets.rel_rms"),
        ("formats", "bogus", "fixed<8,1>", "formats.bogus"),
    ]:
        bad = yaml.safe_load(yaml.safe_dump(data))
        bad[section][key] = value
        with pytest.raises(ConfigError) as e:
            load_profile(_write(tmp_path, bad, "p.yaml"))
        assert message in str(e.value) and "\n" not in str(e.value)


def test_config_hash_distinguishes_config_and_profile():
    mini, tiny = load_config("m3vit-mini"), load_config("m3vit-tiny-128x256")
    em, lean = load_profile("edge-moe"), load_profile("lean")
    hashes = {config_hash(c, p) for c in (mini, tiny) for p in (em, lean)}
    assert len(hashes) == 4
    assert config_hash(mini, em) == config_hash(load_config("m3vit-mini"), load_profile("edge-moe"))


@pytest.mark.parametrize("cname", CONFIGS)
@pytest.mark.parametrize("pname", ["edge-moe", "lean"])
def test_accumulators_never_overflow(cname, pname):
    """Bit growth of every reduction: int64 for golden and C-sim."""
    bits = accumulator_bits(load_config(cname), load_profile(pname))
    assert max(bits.values()) <= 64, bits


@pytest.mark.parametrize("cname", CONFIGS)
def test_lean_linear_unit_fits_dsp48e2(cname):
    """Lean: a 27x18 signed multiply and a 48-bit accumulator per linear-unit MAC."""
    p = load_profile("lean")
    assert p.act.width <= 27 and p.weight.width <= 18
    assert p.gate_weight.width <= 18 and p.patch_weight.width <= 18
    bits = accumulator_bits(load_config(cname), p)
    for k in ("patch_embed", "linear_in_dim", "linear_in_hidden", "gate"):
        assert bits[k] <= 48, (k, bits[k])
    for k in ("dec_conv_first", "dec_conv", "dec_upsample"):  # a config with a pup head
        assert bits.get(k, 0) <= 48, (k, bits[k])
