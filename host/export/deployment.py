"""What a bundle file carries beyond the kernel image: the rest of the deployment.

A bundle file is the kernel image (:mod:`edgemoe.host.export.bundle`: 64-byte header,
payload) followed by its *host section*, which the kernel never sees::

    host tensors    each task's final LayerNorm and light head, float, 64-byte aligned
    JSON            config and profile (name, hash, full definition), tiling, the
                    weights it was exported from (checkpoint path + SHA-256 and the
                    tasks whose head it lacked, or the seed of the random init), the
                    kernel image's SHA-256, and the name, dtype, shape and offset of
                    every host tensor
    footer (32 B)   'EMOEHOST', format version, CRC32 of the two parts above, their sizes

So ``edgemoe run --bundle B`` needs nothing else -- no config or profile flags,
no float model, no torch -- and uses exactly the model the bundle came from.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.profile import Profile, config_hash
from edgemoe.host.contracts.profile import _from_dict as profile_from_dict
from edgemoe.host.contracts.tiling import Tiling
from edgemoe.host.export.bundle import (
    ALIGN,
    FOOTER_BYTES,
    FOOTER_STRUCT,
    FORMAT_VERSION,
    HOST_MAGIC,
    MAGIC,
    BundleError,
    read_header,
    split_file,
    version_message,
)
from edgemoe.models.config import ModelConfig
from edgemoe.models.config import _from_dict as config_from_dict
from edgemoe.models.heads import host_param_names, host_params


@dataclass(frozen=True)
class WeightSource:
    """Where a bundle's float weights came from.

    Attributes
    ----------
    checkpoint : str or None
        The checkpoint path given to ``export`` (None: random init).
    checkpoint_sha256 : str or None
        :func:`checkpoint_digest` of that checkpoint.
    seed : int
        Seed of the random init (also of the parameters a checkpoint leaves out).
    trained_on : str or None
        What the checkpoint was trained on, from its training record (``procedural
        street scenes, 1500 steps``); None: no record (or random init).
    untrained_heads : tuple of str
        Tasks, in config order, whose head (or decoder) the checkpoint lacks: left at
        their initial values, so their outputs are not results. Known once the
        checkpoint is loaded (:func:`edgemoe.pipeline.check_heads`) and recorded in a
        bundle. Empty for the random init, which :meth:`describe` names as such.
    depth_unit : str or None
        What the checkpoint's depth output is in, ``m`` or ``disparity``: that of the
        data its training record names (:func:`edgemoe.models.data.trained_depth_unit`),
        recorded in a bundle; None: no record (readers take metres).
    """

    checkpoint: str | None
    checkpoint_sha256: str | None
    seed: int
    trained_on: str | None = None
    untrained_heads: tuple[str, ...] = ()
    depth_unit: str | None = None

    def describe(self) -> str:
        """What the weights are and what they were trained on, for figures, reports and
        messages: ``checkpoint NAME, trained on …`` (``; untrained head: TASK, …`` where
        the checkpoint lacks heads) or ``random init, seed N (untrained)``."""
        if self.checkpoint is None:
            return f"random init, seed {self.seed} (untrained)"
        text = f"checkpoint {Path(self.checkpoint).name}"
        text += f", trained on {self.trained_on}" if self.trained_on else ""
        if self.untrained_heads:
            text += f"; untrained head: {', '.join(self.untrained_heads)}"
        return text

    def head(self, task: str) -> str:
        """What ``task``'s head is: ``trained``, ``untrained head`` (the checkpoint lacks
        it) or ``random init``."""
        if self.checkpoint is None:
            return "random init"
        return "untrained head" if task in self.untrained_heads else "trained"


@dataclass
class Deployment:
    """A bundle file, decoded: everything ``run`` needs to use it.

    Attributes
    ----------
    cfg : ModelConfig
    profile : Profile
    tiling : Tiling
    source : WeightSource
    host : dict[str, ndarray]
        ``norms.{task}.*`` and ``heads.{task}.*`` in the float model's dtype.
    kernel_image : memoryview
        Header and payload: what goes into the device's bundle buffer.
    kernel_sha256 : str
        SHA-256 of the kernel image the host section was written for.
    """

    cfg: ModelConfig
    profile: Profile
    tiling: Tiling
    source: WeightSource
    host: dict[str, np.ndarray]
    kernel_image: memoryview
    kernel_sha256: str
    meta: dict[str, Any] = field(default_factory=dict)


def checkpoint_digest(path: str | Path) -> str:
    """SHA-256 of a checkpoint file, or of a checkpoint folder's files (names and bytes).

    Raises
    ------
    ConfigError
        The path cannot be read.
    """
    path = Path(path)
    h = hashlib.sha256()
    try:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if path.is_dir():
                h.update(str(f.relative_to(path)).encode() + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint {path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"checkpoint {path}: cannot read it ({e.strerror or e})") from None
    return h.hexdigest()


def _profile_dict(p: Profile) -> dict[str, Any]:
    return {
        "name": p.name,
        "id": p.id,
        "description": p.description,
        "formats": {k: str(v) for k, v in p.formats.items()},
        "units": dict(p.units),
        "budgets": dict(p.budgets),
        "random_init_budgets": dict(p.random_init_budgets),
    }


def host_tensors(state: dict[str, np.ndarray], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """The host's parameters of a state dict (:func:`~edgemoe.models.heads.host_params`):
    norms, light heads, and decoders with each batch norm folded into its conv."""
    try:
        return host_params(state, cfg)
    except KeyError as e:
        raise BundleError(f"the model has no {e.args[0]}") from None


def bundle_file(
    kernel_image: bytes,
    cfg: ModelConfig,
    profile: Profile,
    tiling: Tiling,
    source: WeightSource,
    host: dict[str, np.ndarray],
) -> bytes:
    """A bundle file: ``kernel_image`` followed by its host section.

    Parameters
    ----------
    kernel_image : bytes
        :func:`edgemoe.host.export.bundle.pack` of the quantized model.
    cfg, profile, tiling
        What the kernel image was packed for.
    source : WeightSource
    host : dict[str, ndarray]
        :func:`host_tensors` of the float model.
    """
    blob = bytearray()
    entries = []
    for name in sorted(host):
        a = np.ascontiguousarray(host[name])
        dt = a.dtype.newbyteorder("<")
        raw = a.astype(dt).tobytes()
        entries.append({"name": name, "dtype": dt.str, "shape": list(a.shape), "offset": len(blob)})
        blob += raw + bytes(-len(raw) % ALIGN)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": {
            "name": cfg.name,
            "hash": f"0x{config_hash(cfg, profile):08x}",
            "definition": cfg.to_dict(),
        },
        "profile": {"name": profile.name, "id": profile.id, "definition": _profile_dict(profile)},
        "tiling": {
            "lin_in": tiling.lin_in,
            "lin_out": tiling.lin_out,
            "p": tiling.p,
            "axi_bits": tiling.axi_bits,
        },
        "weights": {
            "checkpoint": source.checkpoint,
            "checkpoint_sha256": source.checkpoint_sha256,
            "seed": source.seed,
            "trained_on": source.trained_on,
            "untrained_heads": list(source.untrained_heads),
            "depth_unit": source.depth_unit,
            "source": source.describe(),
        },
        "kernel_image_sha256": hashlib.sha256(kernel_image).hexdigest(),
        "host_tensors": entries,
    }
    text = json.dumps(meta).encode()  # key order kept: task order is task ids
    body = bytes(blob) + text
    footer = FOOTER_STRUCT.pack(HOST_MAGIC, FORMAT_VERSION, zlib.crc32(body), len(blob), len(text))
    return bytes(kernel_image) + body + footer


def read_deployment(data: bytes | bytearray | memoryview, name: str = "bundle") -> Deployment:
    """Decode a bundle file's host section (the kernel image is checked separately).

    Parameters
    ----------
    data : bytes-like
        The whole file.
    name : str
        How messages name the file.

    Raises
    ------
    BundleError
        Not a bundle, an older format version, no or a corrupt host section.
    """
    head = read_header(data)  # at least 64 bytes
    if head.magic != MAGIC:
        raise BundleError(
            f"{name}: not an edgemoe bundle: magic 0x{head.magic:08x}, "
            f"expected 0x{MAGIC:08x} ('EMOE')"
        )
    if head.version != FORMAT_VERSION:
        raise BundleError(f"{name}: {version_message(head.version).removeprefix('bundle ')}")
    kernel, section = split_file(data)
    if section is None:
        raise BundleError(
            f"{name}: no host section after the kernel image (truncated, or not written "
            "by `edgemoe export`)"
        )
    _, version, crc, tensor_bytes, json_bytes = FOOTER_STRUCT.unpack_from(
        section, len(section) - FOOTER_BYTES
    )
    body = section[: len(section) - FOOTER_BYTES]
    if version != FORMAT_VERSION:
        raise BundleError(f"{name}: host section {version_message(version)}")
    if zlib.crc32(body) != crc:
        raise BundleError(f"{name}: host section CRC32 does not match its footer (corrupt)")
    try:
        meta = json.loads(bytes(body[tensor_bytes:]))
        cfg = config_from_dict(meta["config"]["definition"], f"{name}: config")
        profile = profile_from_dict(meta["profile"]["definition"], f"{name}: profile")
        t = meta["tiling"]
        tiling = Tiling(t["lin_in"], t["lin_out"], t["p"], t["axi_bits"])
        w = meta["weights"]
        source = WeightSource(
            w["checkpoint"],
            w["checkpoint_sha256"],
            int(w["seed"]),
            w.get("trained_on"),
            tuple(str(t) for t in w.get("untrained_heads", ())),
            w.get("depth_unit"),
        )
        unknown = [t for t in source.untrained_heads if t not in cfg.task_names]
        if unknown:
            raise ValueError(f"untrained head of unknown task {unknown[0]!r}")
        host = {}
        for e in meta["host_tensors"]:
            dt = np.dtype(e["dtype"])
            count = int(np.prod(e["shape"]))
            if e["offset"] + count * dt.itemsize > tensor_bytes:
                raise ValueError(f"tensor {e['name']} runs past the host tensors")
            a = np.frombuffer(body, dtype=dt, count=count, offset=e["offset"])
            host[e["name"]] = a.reshape(e["shape"]).astype(dt.newbyteorder("="))
        kernel_sha = str(meta["kernel_image_sha256"])
    except ConfigError as e:
        raise BundleError(str(e)) from None
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{name}: host section is malformed ({e})") from None
    if f"0x{config_hash(cfg, profile):08x}" != meta["config"]["hash"]:
        raise BundleError(f"{name}: host section's config hash does not match its definition")
    missing = [k for k in host_param_names(cfg) if k not in host]
    if missing:
        raise BundleError(f"{name}: host section lacks {missing[0]}")
    return Deployment(cfg, profile, tiling, source, host, kernel, kernel_sha, meta)


def check_kernel_image(dep: Deployment, name: str = "bundle") -> None:
    """The host section was written for this kernel image (host check of ``run``)."""
    sha = hashlib.sha256(dep.kernel_image).hexdigest()
    if sha != dep.kernel_sha256:
        raise BundleError(
            f"{name}: the kernel image (SHA-256 {sha[:12]}…) is not the one its host "
            f"section was written for ({dep.kernel_sha256[:12]}…)"
        )
