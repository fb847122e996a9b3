"""Precision profiles: the fixed-point format of every stored quantity (docs/numerics.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.models.config import ModelConfig, read_named_yaml

PROFILE_DIR = Path(__file__).resolve().parents[2] / "models" / "profiles"
DEFAULT_PROFILE = "lean"

#: Every format a profile names, and what it holds.
FORMAT_NAMES = {
    "pixel": "input pixels",
    "act": "activations (residual stream and every stage output)",
    "weight": "linear weights (qkv, proj, fc1/fc2, experts)",
    "bias": "fc and expert biases",
    "attn_bias": "qkv and proj biases",
    "ln": "LayerNorm gamma and beta",
    "patch_weight": "patch-embedding weights (pixel normalisation folded in)",
    "gate_weight": "gate weights (log2(e) folded in)",
    "token_bias": "per-token bias: CLS, position embedding, patch bias",
    "attn_qkv": "Q, K and V entering attention",
    "attn_score": "attention scores in base-2 units",
    "prob": "exp2 outputs (attention and gate probabilities)",
    "ln_stat": "LayerNorm input as summed for the statistics",
    "ln_norm": "(x - mean) * rstd inside LayerNorm",
    "dec_feat": "decoder feature maps after ReLU, and their bilinear x2 upsamplings",
    "dec_out": "decoder logits: the classifier convolution's outputs",
}

#: The formats of what the linear unit multiplies and adds (docs/design.md): their
#: binary point may be left to export, ``fixed<W,*>`` -- the profile gives the width,
#: the bundle each tensor's binary point (its scale table, edgemoe.host.export.bundle), so one
#: bitstream serves any checkpoint of the config. Every other format is compile-time.
PER_TENSOR_CLASSES = ("weight", "bias", "attn_bias", "patch_weight", "gate_weight")

#: Internal widths of the nonlinear units (docs/numerics.md), with their allowed ranges.
UNIT_RANGES = {
    "exp2_lut_bits": (2, 10),
    "exp2_frac": (8, 30),
    "recip_lut_bits": (2, 10),
    "rsqrt_lut_bits": (2, 10),
    "newton_frac": (8, 24),
    "gelu_range": (2, 16),
    "gelu_lut_bits": (2, 10),
    "gelu_frac": (8, 30),
    "attn_guard": (0, 20),
    "ln_mean_guard": (0, 12),
}

#: Error budgets a profile states for golden vs float on trained weights over scene
#: images, and their allowed ranges; ``task_metric_delta`` bounds |delta mIoU| and
#: |delta abs_rel| of the task heads (issue 14). Zero saturation goes with them.
BUDGETS = {
    "rel_rms": (0.0, 1.0),
    "cosine": (0.0, 1.0),
    "routing_agreement": (0.0, 1.0),
    "task_metric_delta": (0.0, 1.0),
}
#: The budgets on random-init weights (``random_init_budgets``): their gates are
#: near ties everywhere, so a single routing flip costs more than trained weights allow.
RANDOM_INIT_BUDGETS = {k: BUDGETS[k] for k in ("rel_rms", "cosine", "routing_agreement")}


@dataclass(frozen=True)
class Profile:
    """A precision profile.

    Attributes
    ----------
    name : str
    id : int
        Small integer stored in the bundle header.
    description : str
    formats : dict[str, Fmt]
        One entry per key of :data:`FORMAT_NAMES`.
    units : dict[str, int]
        One entry per key of :data:`UNIT_RANGES`.
    budgets : dict[str, float]
        Error budgets of golden vs the float reference on trained weights (keys of
        :data:`BUDGETS`).
    random_init_budgets : dict[str, float]
        The same on random-init weights (keys of :data:`RANDOM_INIT_BUDGETS`).
    """

    name: str
    id: int
    description: str
    formats: dict[str, Fmt]
    units: dict[str, int]
    budgets: dict[str, float]
    random_init_budgets: dict[str, float]

    def budgets_for(self, trained: bool) -> dict[str, float]:
        """The budgets that apply: trained weights (a checkpoint) or random init."""
        return self.budgets if trained else self.random_init_budgets

    def __getattr__(self, item: str) -> Any:
        # profile.act, profile.weight, ... for readability in the datapath code
        formats = self.__dict__.get("formats", {})
        if item in formats:
            return formats[item]
        units = self.__dict__.get("units", {})
        if item in units:
            return units[item]
        raise AttributeError(item)

    def __hash__(self) -> int:
        return hash(self.canonical())

    def canonical(self) -> str:
        """Canonical text: what the bundle hash covers."""
        return json.dumps(
            {
                "name": self.name,
                "id": self.id,
                "formats": {k: str(v) for k, v in sorted(self.formats.items())},
                "units": dict(sorted(self.units.items())),
            },
            sort_keys=True,
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.canonical())


def list_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> Profile:
    """Load a profile by name (``lean``, ``edge-moe``) or YAML path, validated.

    Raises
    ------
    ConfigError
        Unknown name, unreadable file, missing, unknown or malformed field.
    """
    data, source = read_named_yaml(name_or_path, PROFILE_DIR, "profile", list_profiles)
    return _from_dict(data, source)


def _from_dict(d: Any, source: str) -> Profile:
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: a profile must be a YAML mapping")
    top = {"name", "id", "description", "formats", "units", "budgets", "random_init_budgets"}
    unknown = sorted(set(d) - top)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(map(repr, unknown))}")
    missing = sorted(top - set(d))
    if missing:
        raise ConfigError(f"{source}: missing field(s) {', '.join(map(repr, missing))}")
    pid = d["id"]
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 256:
        raise ConfigError(f"{source}: field 'id' must be an integer in 1..255")
    sections = (
        ("formats", FORMAT_NAMES),
        ("units", UNIT_RANGES),
        ("budgets", BUDGETS),
        ("random_init_budgets", RANDOM_INIT_BUDGETS),
    )
    for section, names in sections:
        sec = d[section]
        if not isinstance(sec, dict):
            raise ConfigError(f"{source}: field {section!r} must be a mapping")
        unknown = sorted(set(sec) - set(names))
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {section}.{', '.join(unknown)}")
        missing = sorted(set(names) - set(sec))
        if missing:
            raise ConfigError(f"{source}: missing field(s) {section}.{', '.join(missing)}")
    formats = {k: Fmt.parse(v, f"{source}: field formats.{k}") for k, v in d["formats"].items()}
    units = {}
    for k, v in d["units"].items():
        lo, hi = UNIT_RANGES[k]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"{source}: field units.{k} must be an integer in {lo}..{hi}")
        units[k] = v
    budgets: dict[str, dict[str, float]] = {}
    for section, ranges in (("budgets", BUDGETS), ("random_init_budgets", RANDOM_INIT_BUDGETS)):
        budgets[section] = {}
        for k, v in d[section].items():
            lo, hi = ranges[k]
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise ConfigError(f"{source}: field {section}.{k} must be a number in [{lo}, {hi}]")
            budgets[section][k] = float(v)
    prof = Profile(
        str(d["name"]),
        pid,
        str(d["description"]),
        formats,
        units,
        budgets["budgets"],
        budgets["random_init_budgets"],
    )
    try:
        check_profile(prof)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return prof


def check_profile(p: Profile) -> None:
    """Structural rules every datapath implementation relies on."""
    f = p.formats
    for k in FORMAT_NAMES:
        if f[k].per_tensor and k not in PER_TENSOR_CLASSES:
            raise ConfigError(
                f"field formats.{k} needs its integer bits (only "
                f"{', '.join(PER_TENSOR_CLASSES)} may be fixed<W,*>)"
            )
        if k in ("pixel", "prob"):
            if f[k].signed:
                raise ConfigError(f"field formats.{k} must be unsigned (ufixed)")
        elif not f[k].signed:
            raise ConfigError(f"field formats.{k} must be signed (fixed)")
    for k in ("act", "dec_feat", "dec_out"):
        if f[k].width > 32:
            raise ConfigError(f"field formats.{k} wider than 32 bits does not fit a DDR word")
    if f["prob"].int_bits != 1:
        raise ConfigError("field formats.prob must have 1 integer bit (probabilities <= 1)")
    if f["ln_stat"].int_bits != f["act"].int_bits or f["ln_stat"].frac > f["act"].frac:
        raise ConfigError(
            "field formats.ln_stat must keep act's integer bits and fewer fraction bits"
        )
    if f["attn_qkv"].frac > f["act"].frac or f["pixel"].frac > f["act"].frac:
        raise ConfigError("fields formats.attn_qkv and pixel need at most act's fraction bits")
    if f["attn_score"].frac > 2 * f["attn_qkv"].frac:
        raise ConfigError("field formats.attn_score has more fraction bits than q.k produces")
    if p.units["gelu_lut_bits"] > f["act"].frac:
        raise ConfigError("field units.gelu_lut_bits exceeds act's fraction bits")
    if p.units["exp2_lut_bits"] > f["attn_score"].frac:
        raise ConfigError("field units.exp2_lut_bits exceeds attn_score's fraction bits")


def config_hash(cfg: ModelConfig, profile: Profile) -> int:
    """32-bit hash of the canonical (config, profile) pair, stored in the bundle header."""
    text = json.dumps(
        {"config": cfg.to_dict(), "profile": json.loads(profile.canonical())}, sort_keys=True
    )
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
