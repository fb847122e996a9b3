"""The weight bundle: one DDR buffer holding every parameter (docs/design.md).

Layout: a 64-byte header, then every tensor 64-byte aligned, at offsets that
are a pure function of (config, profile, tiling). The same :func:`layout` feeds
the packer here and the generated C++ parameter header, so the two cannot
disagree.

Header (little-endian)::

    0  u32 magic 'EMOE'      4  u16 format version    6  u16 profile id
    8  u32 config hash      12  u32 header bytes (64) 16  u64 payload bytes
    24 u32 payload CRC32    28  u32 tiling (lin_in | lin_out << 8 | p << 16)
    32.. reserved, zero

The kernel sees only this header and the payload after it. A bundle *file*
also carries the host's part of the deployment after the payload: its host
section (:mod:`edgemoe.host.export.deployment`: config, profile, tiling, the weights
it came from, each task's final norm and head), found from the file's last
:data:`FOOTER_BYTES` bytes (:func:`split_file`). Format version 2 added it;
version 1 files had none; version 3 added the scale table (the header's 64 bytes
are unchanged).

The first tensor is the **scale table** (format version 3): one 16-bit word per
linear-unit weight tensor, in bundle order (:func:`scale_entries`), holding the
binary points the kernel's epilogue shifts by (docs/design.md)::

    bits 0..7   fraction bits of the weight tensor
    bits 8..15  fraction bits of its addend: the bias (the patch embedding: the
                per-token bias, a compile-time format), 0 for the gate (none)

The profile gives the widths, the table the binary points (per tensor, chosen at
export: :func:`edgemoe.host.export.quantize.choose_linear`), so one kernel build serves
any checkpoint of its config. The kernel reads it once per call, after the header.

Tensors: weights are pre-tiled (:mod:`edgemoe.host.contracts.tiling`); every element is
stored in a 16-bit container when its format is at most 16 bits wide, else
32-bit. Expert tensors are stored expert by expert (fc1.w, fc1.b, fc2.w,
fc2.b of expert 0, then expert 1, ...) so one expert is one burst.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_bytes_atomic
from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.host.contracts.profile import Profile, config_hash
from edgemoe.host.contracts.tiling import (
    Tiling,
    pad_vector,
    tile_conv_weight,
    tile_weight,
    tiles,
    untile_conv_weight,
    untile_weight,
    word_sizes,
    word_text,
)
from edgemoe.host.export.quantize import QuantizedModel
from edgemoe.models.config import ModelConfig

MAGIC = int.from_bytes(b"EMOE", "little")
# 4: the pup decoders' tensors after the blocks'; 5: their taps padded to input tiles (issue 24)
FORMAT_VERSION = 5
#: The scale table's name in the layout (the first tensor after the header).
SCALES = "scales"
HEADER_BYTES = 64
ALIGN = 64
HEADER_STRUCT = struct.Struct("<IHHIIQII")
#: The host section's footer, the last bytes of a bundle file: magic, format version,
#: CRC32 of the section before it, its tensor bytes, its JSON bytes.
HOST_MAGIC = b"EMOEHOST"
FOOTER_STRUCT = struct.Struct("<8sIIQQ")
FOOTER_BYTES = FOOTER_STRUCT.size


@dataclass(frozen=True)
class Entry:
    """One tensor of the bundle.

    Attributes
    ----------
    name : str
        Tensor name (``QuantizedModel`` naming; experts as ``...experts.{e}.fc1.w``).
    offset : int
        Byte offset from the start of the bundle (header included), 64-aligned.
    count : int
        Stored elements (after tiling / padding).
    elem_bytes : int
        2 or 4.
    shape : tuple[int, ...]
        Logical shape before tiling.
    tiled : bool
        Whether the tensor is a pre-tiled weight matrix.
    """

    name: str
    offset: int
    count: int
    elem_bytes: int
    shape: tuple[int, ...]
    tiled: bool

    @property
    def nbytes(self) -> int:
        return self.count * self.elem_bytes


def container_bytes(fmt: Fmt) -> int:
    return 2 if fmt.width <= 16 else 4


def _tensor_specs(cfg: ModelConfig, profile: Profile, t: Tiling):
    """(name, shape, format name, tiled) for every tensor, in bundle order."""
    D, N, H, He = cfg.embed_dim, cfg.num_tokens, cfg.mlp_hidden, cfg.expert_hidden
    E = cfg.num_experts
    yield "token_bias", (N, D), "token_bias", False
    yield "patch.w", (D, cfg.patch_dim), "patch_weight", True
    for i in range(cfg.depth):
        pre = f"blocks.{i}"
        yield f"{pre}.ln1.g", (D,), "ln", False
        yield f"{pre}.ln1.b", (D,), "ln", False
        yield f"{pre}.qkv.w", (3 * D, D), "weight", True
        yield f"{pre}.qkv.b", (3 * D,), "attn_bias", False
        yield f"{pre}.proj.w", (D, D), "weight", True
        yield f"{pre}.proj.b", (D,), "attn_bias", False
        yield f"{pre}.ln2.g", (D,), "ln", False
        yield f"{pre}.ln2.b", (D,), "ln", False
        if cfg.is_moe(i):
            for task in cfg.task_names:
                yield f"{pre}.gate.{task}.w", (E, D), "gate_weight", True
            for e in range(E):
                yield f"{pre}.experts.{e}.fc1.w", (He, D), "weight", True
                yield f"{pre}.experts.{e}.fc1.b", (He,), "bias", False
                yield f"{pre}.experts.{e}.fc2.w", (D, He), "weight", True
                yield f"{pre}.experts.{e}.fc2.b", (D,), "bias", False
        else:
            yield f"{pre}.fc1.w", (H, D), "weight", True
            yield f"{pre}.fc1.b", (H,), "bias", False
            yield f"{pre}.fc2.w", (D, H), "weight", True
            yield f"{pre}.fc2.b", (D,), "bias", False
    yield from _decoder_specs(cfg)


def _decoder_specs(cfg: ModelConfig):
    """The ``pup`` decoders' tensors, after the blocks' (task order): the final
    LayerNorm's γ and β, then each convolution's batch-norm-folded weights
    (logical shape ``(C_out, k·k, C_in)``: stored as a linear tensor of
    ``k·k·C_in'`` inputs, each tap's channels padded to whole input tiles,
    :func:`~edgemoe.host.contracts.tiling.tile_conv_weight`) and bias."""
    for task in cfg.task_names:
        head = cfg.task_spec(task).head
        if head.kind != "pup":
            continue
        pre = f"decoders.{task}"
        yield f"{pre}.norm.g", (cfg.embed_dim,), "ln", False
        yield f"{pre}.norm.b", (cfg.embed_dim,), "ln", False
        c_in = cfg.embed_dim
        for i in range(head.convs):
            last = i == head.convs - 1
            c_out = cfg.task_channels(task) if last else head.channels
            k = head.conv_kernel(i)
            yield f"{pre}.conv_{i}.w", (c_out, k * k, c_in), "weight", True
            yield f"{pre}.conv_{i}.b", (c_out,), "bias", False
            c_in = c_out


def scale_entries(cfg: ModelConfig) -> list[tuple[str, str | None]]:
    """The scale table's rows: (weight tensor, its addend or None), in bundle order.

    Every tensor the linear unit multiplies: the patch embedding (its addend is the
    per-token bias), each block's qkv and proj, the dense fc1/fc2, each task's gate
    (no addend) and each expert's fc1/fc2.
    """
    rows: list[tuple[str, str | None]] = [("patch.w", "token_bias")]
    for i in range(cfg.depth):
        pre = f"blocks.{i}"
        rows += [(f"{pre}.qkv.w", f"{pre}.qkv.b"), (f"{pre}.proj.w", f"{pre}.proj.b")]
        if cfg.is_moe(i):
            rows += [(f"{pre}.gate.{task}.w", None) for task in cfg.task_names]
            for e in range(cfg.num_experts):
                ex = f"{pre}.experts.{e}"
                rows += [(f"{ex}.fc1.w", f"{ex}.fc1.b"), (f"{ex}.fc2.w", f"{ex}.fc2.b")]
        else:
            rows += [(f"{pre}.fc1.w", f"{pre}.fc1.b"), (f"{pre}.fc2.w", f"{pre}.fc2.b")]
    # the decoders' convolutions last, so the backbone's rows keep their indices
    rows += [(n, n[:-2] + ".b") for n, _, _, tiled in _decoder_specs(cfg) if tiled]
    return rows


def scale_table(qm: QuantizedModel) -> np.ndarray:
    """The scale table's words of a quantized model (see the module docstring)."""
    words = []
    for w, add in scale_entries(qm.cfg):
        fw = _format(qm, w).frac
        fa = 0 if add is None else _format(qm, add).frac
        if not (0 <= fw < 256 and 0 <= fa < 256):
            raise BundleError(f"{w}: binary points {fw}, {fa} do not fit the scale table")
        words.append(fw | fa << 8)
    return np.asarray(words, dtype=np.int64)


def _stored_count(shape: tuple[int, ...], tiled: bool, t: Tiling) -> int:
    if tiled:
        # a convolution (out, taps, C): each tap's channels padded to whole input tiles
        o, k = (
            shape
            if len(shape) == 2
            else (shape[0], shape[1] * tiles(shape[2], t.lin_in) * t.lin_in)
        )
        return tiles(o, t.lin_out) * t.lin_out * tiles(k, t.lin_in) * t.lin_in
    if len(shape) == 1:
        return tiles(shape[0], t.lin_out) * t.lin_out
    return int(np.prod(shape))


def layout(cfg: ModelConfig, profile: Profile, t: Tiling) -> list[Entry]:
    """Every tensor's offset and size: a pure function of (config, profile, tiling)."""
    n = len(scale_entries(cfg))
    entries = [Entry(SCALES, HEADER_BYTES, n, 2, (n,), False)]
    off = HEADER_BYTES + -(-(2 * n) // ALIGN) * ALIGN
    for name, shape, fmt_name, tiled in _tensor_specs(cfg, profile, t):
        eb = container_bytes(profile.formats[fmt_name])
        count = _stored_count(shape, tiled, t)
        entries.append(Entry(name, off, count, eb, shape, tiled))
        off += -(-(count * eb) // ALIGN) * ALIGN
    return entries


def bundle_bytes(cfg: ModelConfig, profile: Profile, t: Tiling) -> int:
    last = layout(cfg, profile, t)[-1]
    return last.offset + -(-last.nbytes // ALIGN) * ALIGN


def _expert_tensor(name: str) -> tuple[str, int] | None:
    """An expert's bundle name ``blocks.i.experts.{e}.fc1.w`` -> (its stack's name
    ``blocks.i.experts.fc1.w``, ``e``); None for a tensor of no expert."""
    if ".experts." not in name:
        return None
    pre, rest = name.split(".experts.")
    e, tail = rest.split(".", 1)
    return f"{pre}.experts.{tail}", int(e)


def _format(qm: QuantizedModel, name: str):
    return qm.dec(name)[1] if _is_dec(name) else qm.formats[name]


def _tensor(qm: QuantizedModel, name: str) -> np.ndarray:
    if _is_dec(name):
        return qm.dec(name)[0]
    expert = _expert_tensor(name)
    if expert is not None:
        stack, e = expert
        return qm[stack][e]
    return qm[name]


def pack(qm: QuantizedModel, t: Tiling) -> bytes:
    """The bundle of a quantized model: header + pre-tiled, aligned tensors."""
    cfg, profile = qm.cfg, qm.profile
    entries = layout(cfg, profile, t)
    total = bundle_bytes(cfg, profile, t)
    buf = bytearray(total)
    for e in entries:
        if e.name == SCALES:
            flat = scale_table(qm)
        else:
            a = _tensor(qm, e.name)
            if e.tiled and len(e.shape) == 3:
                flat = tile_conv_weight(a, e.shape[1], t)
            elif e.tiled:
                flat = tile_weight(a, t)
            else:
                flat = pad_vector(a, t) if a.ndim == 1 else a.ravel()
        dt = np.int16 if e.elem_bytes == 2 else np.int32
        buf[e.offset : e.offset + e.nbytes] = flat.astype(np.dtype(dt).newbyteorder("<")).tobytes()
    payload = bytes(buf[HEADER_BYTES:])
    header = HEADER_STRUCT.pack(
        MAGIC,
        FORMAT_VERSION,
        profile.id,
        config_hash(cfg, profile),
        HEADER_BYTES,
        len(payload),
        zlib.crc32(payload),
        t.word,
    )
    buf[: len(header)] = header
    return bytes(buf)


# ---- reading a bundle back: header, validation, unpacking, atomic write ----


class BundleError(EdgeMoeError):
    """A bundle is corrupt, truncated, or built for another config, profile or tiling."""


@dataclass(frozen=True)
class Header:
    """The 64-byte bundle header, decoded (field meanings in the module docstring).

    Attributes
    ----------
    magic : int
    version : int
    profile_id : int
    config_hash : int
    header_bytes : int
    payload_bytes : int
    payload_crc : int
        CRC32 of everything after the header.
    tiling : int
        ``lin_in | lin_out << 8 | p << 16``.
    reserved : bytes
        Bytes 32..63, zero in a valid bundle.
    """

    magic: int
    version: int
    profile_id: int
    config_hash: int
    header_bytes: int
    payload_bytes: int
    payload_crc: int
    tiling: int
    reserved: bytes

    @property
    def lin_in(self) -> int:
        return word_sizes(self.tiling)[0]

    @property
    def lin_out(self) -> int:
        return word_sizes(self.tiling)[1]

    @property
    def p(self) -> int:
        return word_sizes(self.tiling)[2]


def read_header(data: bytes | bytearray | memoryview) -> Header:
    """Decode the header of a bundle without checking it.

    Raises
    ------
    BundleError
        Fewer than 64 bytes.
    """
    if len(data) < HEADER_BYTES:
        raise BundleError(
            f"bundle truncated: {len(data)} bytes, the header alone is {HEADER_BYTES}"
        )
    fields = HEADER_STRUCT.unpack_from(data, 0)
    reserved = bytes(data[HEADER_STRUCT.size : HEADER_BYTES])
    return Header(*fields, reserved=reserved)


def version_message(version: int) -> str:
    """The one line that refuses a bundle of another format version."""
    if version < FORMAT_VERSION:
        return (
            f"bundle format version {version} is from an older edgemoe (it does not carry "
            f"its tensors' binary points"
            f"{', config, profile and task heads' if version < 2 else ''}); this edgemoe reads "
            f"version "
            f"{FORMAT_VERSION}: export it again with `edgemoe export`"
        )
    return f"bundle format version {version}, this edgemoe reads version {FORMAT_VERSION}"


def split_file(data: bytes | bytearray | memoryview) -> tuple[memoryview, memoryview | None]:
    """A bundle file's kernel image (header + payload) and its host section.

    The host section is recognised by the footer in the file's last
    :data:`FOOTER_BYTES` bytes; a file without one (a bare kernel image, or
    bytes of anything else) is returned whole, with ``None``.
    """
    view = memoryview(data)
    n = len(view)
    if n < HEADER_BYTES + FOOTER_BYTES or bytes(view[n - FOOTER_BYTES : n - 24]) != HOST_MAGIC:
        return view, None
    _, _, _, tensor_bytes, json_bytes = FOOTER_STRUCT.unpack_from(view, n - FOOTER_BYTES)
    size = tensor_bytes + json_bytes + FOOTER_BYTES
    if size > n - HEADER_BYTES:
        return view, None
    return view[: n - size], view[n - size :]


def validate(
    data: bytes | bytearray | memoryview, cfg: ModelConfig, profile: Profile, t: Tiling
) -> Header:
    """Check that ``data`` is an intact bundle of exactly (config, profile, tiling).

    ``data`` is a kernel image or a whole bundle file; a file's host section
    (:func:`split_file`) is not part of this check
    (:func:`edgemoe.host.export.deployment.read_deployment` reads it).

    Checks, in order: length, magic, format version, profile id, config hash,
    tiling, header size, reserved bytes, payload length, payload CRC32.

    Returns
    -------
    Header

    Raises
    ------
    BundleError
        The first check that fails, as one line naming what is wrong.
    """
    data = split_file(data)[0]
    h = read_header(data)
    if h.magic != MAGIC:
        raise BundleError(
            f"not an edgemoe bundle: magic 0x{h.magic:08x}, expected 0x{MAGIC:08x} ('EMOE')"
        )
    if h.version != FORMAT_VERSION:
        raise BundleError(version_message(h.version))
    if h.profile_id != profile.id:
        raise BundleError(
            f"bundle is for profile id {h.profile_id}, "
            f"expected {profile.id} (profile {profile.name!r})"
        )
    want_hash = config_hash(cfg, profile)
    if h.config_hash != want_hash:
        raise BundleError(
            f"bundle is for another config or profile: hash 0x{h.config_hash:08x}, "
            f"expected 0x{want_hash:08x} for {cfg.name} / {profile.name}"
        )
    if h.tiling != t.word:
        raise BundleError(
            f"bundle tiling word 0x{h.tiling:08x} ({word_text(h.tiling)}), "
            f"expected {word_text(t.word)}"
        )
    if h.header_bytes != HEADER_BYTES:
        raise BundleError(f"bundle header size field is {h.header_bytes}, expected {HEADER_BYTES}")
    if any(h.reserved):
        raise BundleError("bundle header reserved bytes 32..63 are not zero")
    present = len(data) - HEADER_BYTES
    expected = bundle_bytes(cfg, profile, t) - HEADER_BYTES
    if present < expected:
        raise BundleError(f"bundle truncated: {present} payload bytes, the layout needs {expected}")
    if present > expected:
        raise BundleError(
            f"bundle has {present - expected} trailing bytes after the {expected}-byte payload"
        )
    if h.payload_bytes != present:
        word = "truncated" if h.payload_bytes > present else "trailing bytes"
        raise BundleError(
            f"bundle header says {h.payload_bytes} payload bytes, {present} present "
            f"({word}: corrupt header)"
        )
    crc = zlib.crc32(memoryview(data)[HEADER_BYTES:])
    if crc != h.payload_crc:
        raise BundleError(
            f"bundle payload CRC32 0x{crc:08x} does not match the header's "
            f"0x{h.payload_crc:08x} (corrupt payload)"
        )
    return h


def _kernel_image(
    data: bytes | bytearray | memoryview, cfg: ModelConfig, profile: Profile, t: Tiling
) -> memoryview:
    """The kernel image of a bundle (a file's host section dropped), validated."""
    image = split_file(data)[0]
    validate(image, cfg, profile, t)
    return image


def unpack(
    data: bytes | bytearray | memoryview, cfg: ModelConfig, profile: Profile, t: Tiling
) -> dict[str, np.ndarray]:
    """The raw integer tensors of a bundle's backbone, after :func:`validate`.

    Inverse of :func:`pack`: weights untiled, padding dropped, expert tensors
    stacked back to ``(E, ...)`` under ``blocks.i.experts.fc1.w`` and so on,
    so the result equals ``QuantizedModel.tensors`` (int64 arrays); the decoders'
    tensors (``QuantizedModel.dec_tensors``): :func:`unpack_model`.

    Raises
    ------
    BundleError
        As :func:`validate`.
    """
    return {k: v for k, v in _unpack_all(data, cfg, profile, t).items() if not _is_dec(k)}


def _is_dec(name: str) -> bool:
    return name.startswith("decoders.")


def _unpack_all(
    data: bytes | bytearray | memoryview, cfg: ModelConfig, profile: Profile, t: Tiling
) -> dict[str, np.ndarray]:
    data = _kernel_image(data, cfg, profile, t)
    entries = layout(cfg, profile, t)[1:]  # the scale table: read_scales
    specs = list(_tensor_specs(cfg, profile, t))
    out: dict[str, np.ndarray] = {}
    experts: dict[str, list[np.ndarray]] = {}
    for e, (_, _, fmt_name, _) in zip(entries, specs, strict=True):
        signed = profile.formats[fmt_name].signed
        code = ("i" if signed else "u") + str(e.elem_bytes)
        flat = np.frombuffer(data, dtype=np.dtype("<" + code), count=e.count, offset=e.offset)
        if e.tiled and len(e.shape) == 3:
            a = untile_conv_weight(flat, e.shape, t)
        elif e.tiled:
            a = untile_weight(flat, e.shape, t)
        else:
            a = flat[: int(np.prod(e.shape))].reshape(e.shape)
        a = np.ascontiguousarray(a, dtype=np.int64)
        expert = _expert_tensor(e.name)
        if expert is not None:
            experts.setdefault(expert[0], []).append(a)
        else:
            out[e.name] = a
    for name, per_expert in experts.items():
        out[name] = np.stack(per_expert)
    return out


def unpack_model(
    data: bytes | bytearray | memoryview, cfg: ModelConfig, profile: Profile, t: Tiling
) -> QuantizedModel:
    """The :class:`QuantizedModel` a bundle was packed from (no report, no host params).

    What the golden model runs when a bundle, not a float model, is the source.

    Raises
    ------
    BundleError
        As :func:`validate`.
    """
    from edgemoe.host.export.quantize import QuantReport

    tensors = _unpack_all(data, cfg, profile, t)
    dec = {n: tensors.pop(n) for n in list(tensors) if _is_dec(n)}
    formats = {}
    for name, _, fmt_name, _ in _tensor_specs(cfg, profile, t):
        formats[name] = profile.formats[fmt_name]
        expert = _expert_tensor(name)
        if expert is not None:
            formats[expert[0]] = profile.formats[fmt_name]
    words = read_scales(data, cfg, profile, t)
    for (w, add), word in zip(scale_entries(cfg), words, strict=True):
        formats[w] = formats[w].with_frac(int(word) & 0xFF)
        if add is not None and formats[add].per_tensor:
            formats[add] = formats[add].with_frac(int(word) >> 8)
    dec_formats = {n: formats.pop(n) for n in list(formats) if _is_dec(n)}
    return QuantizedModel(
        cfg, profile, tensors, formats, QuantReport(), {}, dec_tensors=dec, dec_formats=dec_formats
    )


def read_scales(
    data: bytes | bytearray | memoryview, cfg: ModelConfig, profile: Profile, t: Tiling
) -> np.ndarray:
    """The scale table of a bundle (validated first), one word per :func:`scale_entries` row.

    Raises
    ------
    BundleError
        As :func:`validate`.
    """
    data = _kernel_image(data, cfg, profile, t)
    e = layout(cfg, profile, t)[0]
    return np.frombuffer(data, dtype="<u2", count=e.count, offset=e.offset).astype(np.int64)


def write_bundle(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write a bundle atomically (:func:`edgemoe.files.write_file_atomic`): never a partial file.

    Raises
    ------
    BundleError
        The file cannot be written.
    """
    write_bytes_atomic(path, data, error=BundleError)


def read_bundle(path: str | Path) -> bytes:
    """The bytes of a bundle file (one-line :class:`BundleError` when unreadable)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"bundle {path}: no such file") from None
    except IsADirectoryError:
        raise BundleError(f"bundle {path}: is a directory") from None
    except OSError as e:
        raise BundleError(f"bundle {path}: cannot read it ({e.strerror or e})") from None
