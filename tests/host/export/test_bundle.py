"""The weight bundle read back: validation, exact round trip, atomic write, fuzzing."""

from __future__ import annotations

import os
import struct
import time

import numpy as np
import pytest

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.profile import config_hash
from edgemoe.host.contracts.tiling import Tiling
from edgemoe.host.export.bundle import (
    FORMAT_VERSION,
    HEADER_BYTES,
    HEADER_STRUCT,
    MAGIC,
    BundleError,
    bundle_bytes,
    pack,
    read_header,
    unpack,
    unpack_model,
    validate,
    write_bundle,
)
from edgemoe.host.export.quantize import quantize_model
from tests.conftest import cfg, model, profile

MINI = "m3vit-mini"
TINY = "m3vit-tiny-128x256"
FUZZ_CASES = 2400
FUZZ_SECONDS = 20.0


def quantized(cfg_name: str, pname: str, seed: int = 0):
    return quantize_model(model(cfg_name, seed).state_dict(), cfg(cfg_name), profile(pname))


def assert_same_tensors(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert got[k].shape == want[k].shape, k
        assert (got[k] == want[k]).all(), k


@pytest.fixture(scope="module")
def mini_lean():
    qm = quantized(MINI, "lean")
    return qm, pack(qm, Tiling())


def with_field(data: bytes, index: int, value: int) -> bytes:
    """``data`` with header field ``index`` (HEADER_STRUCT order) set to ``value``."""
    fields = list(HEADER_STRUCT.unpack_from(data, 0))
    fields[index] = value
    return HEADER_STRUCT.pack(*fields) + data[HEADER_STRUCT.size :]


@pytest.mark.parametrize("pname", ["edge-moe", "lean"])
@pytest.mark.parametrize(
    "tiling", [Tiling(), Tiling(24, 20, 4), Tiling(12, 6, 3)], ids=lambda t: t.key
)
def test_mini_round_trip_is_exact(pname, tiling):
    """Padding (24x20, 12x6 do not divide the sizes) and expert stacking undone exactly."""
    qm = quantized(MINI, pname)
    data = pack(qm, tiling)
    assert len(data) == bundle_bytes(qm.cfg, qm.profile, tiling)
    assert_same_tensors(unpack(data, qm.cfg, qm.profile, tiling), qm.tensors)


def test_tiles_must_be_whole_bus_words():
    # the linear unit streams tiles back to back, one bus word per cycle
    with pytest.raises(ConfigError, match="7x5 tile of 16-bit weights is not whole 128-bit"):
        Tiling(7, 5, 3)
    assert Tiling(7, 8, 3, axi_bits=64).key == "7x8-p3-axi64"


def test_tiny_round_trip_is_exact():
    qm = quantized(TINY, "edge-moe")
    data = pack(qm, Tiling())
    assert_same_tensors(unpack(data, qm.cfg, qm.profile, Tiling()), qm.tensors)


def test_scale_table_holds_every_weight_tensors_binary_points(mini_lean):
    """Format version 3: the first tensor, one word per linear-unit weight tensor."""
    from edgemoe.host.export.bundle import SCALES, layout, read_scales, scale_entries

    qm, data = mini_lean
    c, p, t = qm.cfg, qm.profile, Tiling()
    first = layout(c, p, t)[0]
    assert first.name == SCALES and first.offset == HEADER_BYTES
    words = read_scales(data, c, p, t)
    rows = scale_entries(c)
    assert len(words) == len(rows) == first.count
    weights = {n for n, _ in rows}
    assert weights == {e.name for e in layout(c, p, t) if e.tiled}  # every tiled weight
    for (w, add), word in zip(rows, words, strict=True):
        assert word & 0xFF == qm.formats[w].frac
        assert word >> 8 == (0 if add is None else qm.formats[add].frac)
    back = unpack_model(data, c, p, t)
    assert all(back.formats[k] == v for k, v in qm.formats.items())


def test_header_fields(mini_lean):
    qm, data = mini_lean
    h = validate(data, qm.cfg, qm.profile, Tiling())
    assert h == read_header(data)
    assert (h.magic, h.version, h.profile_id) == (MAGIC, FORMAT_VERSION, qm.profile.id)
    assert h.config_hash == config_hash(qm.cfg, qm.profile)
    assert h.header_bytes == HEADER_BYTES and h.payload_bytes == len(data) - HEADER_BYTES
    t = Tiling()
    assert (h.lin_in, h.lin_out, h.p) == (t.lin_in, t.lin_out, t.p)
    assert h.reserved == bytes(HEADER_BYTES - HEADER_STRUCT.size)


def test_each_check_names_what_is_wrong(mini_lean):
    qm, data = mini_lean
    c, p, t = qm.cfg, qm.profile, Tiling()

    def rejects(bad: bytes, *words: str, c=c, p=p, t=t) -> None:
        with pytest.raises(BundleError) as e:
            validate(bad, c, p, t)
        msg = str(e.value)
        assert "\n" not in msg
        for w in words:
            assert w in msg, msg

    rejects(data[:10], "truncated", "10 bytes")
    rejects(b"PK\x03\x04" + data[4:], "not an edgemoe bundle", "magic")
    rejects(with_field(data, 1, FORMAT_VERSION + 1), f"format version {FORMAT_VERSION + 1}")
    rejects(with_field(data, 1, 1), "format version 1", "older edgemoe", "edgemoe export")
    rejects(with_field(data, 1, 2), "format version 2", "binary points", "edgemoe export")
    rejects(with_field(data, 2, 7), "profile id 7", "'lean'")
    rejects(data, "another config or profile", c=cfg(TINY))
    rejects(data, "tiling", f"32x24 p{t.p}", "16x32 p8", t=Tiling(16, 32, 8))
    rejects(with_field(data, 4, 128), "header size field is 128")
    rejects(data[:60] + b"\x01" + data[61:], "reserved")
    rejects(data[:-64], "truncated")
    rejects(data + bytes(64), "64 trailing bytes")
    rejects(with_field(data, 5, len(data)), "header says", "truncated")
    rejects(with_field(data, 5, 64), "header says", "trailing bytes")
    flipped = bytearray(data)
    flipped[HEADER_BYTES + 1000] ^= 0x10
    rejects(bytes(flipped), "CRC32", "corrupt payload")
    # unpack validates first
    with pytest.raises(BundleError, match="CRC32"):
        unpack(bytes(flipped), c, p, t)


def test_tiling_word_matches_pack(mini_lean):
    qm, _ = mini_lean
    t = Tiling(24, 20, 4)
    assert read_header(pack(qm, t)).tiling == t.word == 24 | 20 << 8 | 4 << 16


def test_write_bundle_is_atomic(tmp_path, mini_lean, monkeypatch):
    _, data = mini_lean
    out = tmp_path / "sub" / "b.bin"
    write_bundle(out, data)
    assert out.read_bytes() == data
    assert sorted(os.listdir(out.parent)) == ["b.bin"]

    with pytest.raises(BundleError, match="is a directory"):
        write_bundle(tmp_path, data)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(BundleError, match="cannot write"):
        write_bundle(blocker / "b.bin", data)

    # a failure at the last step leaves the old file intact and no temporary behind
    def fail(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(BundleError, match="No space left"):
        write_bundle(out, b"new")
    assert out.read_bytes() == data
    assert sorted(os.listdir(out.parent)) == ["b.bin"]
    assert not (tmp_path / "fresh.bin").exists()
    with pytest.raises(BundleError):
        write_bundle(tmp_path / "fresh.bin", data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "sub"]


# ---- fuzzing: every mutation is cleanly rejected or still the same bundle ----


def _mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    n = len(data)
    buf = bytearray(data)
    if kind == "flip_header":
        for _ in range(int(rng.integers(1, 4))):
            buf[int(rng.integers(HEADER_BYTES))] ^= 1 << int(rng.integers(8))
    elif kind == "flip_payload":
        for _ in range(int(rng.integers(1, 4))):
            buf[int(rng.integers(HEADER_BYTES, n))] ^= 1 << int(rng.integers(8))
    elif kind == "truncate":
        return data[: int(rng.integers(0, n))]
    elif kind == "extend":
        return data + rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
    elif kind == "header_field":
        index = int(rng.integers(len(HEADER_STRUCT.format) - 1))
        bits = 8 * struct.calcsize("<" + HEADER_STRUCT.format[1 + index])
        small = int(rng.integers(0, 300))
        value = small if rng.random() < 0.5 else int(rng.integers(0, 2**bits, dtype=np.uint64))
        return with_field(data, index, value)
    elif kind == "zero_region":
        start = int(rng.integers(0, n))
        end = min(n, start + int(rng.integers(1, 512)))
        buf[start:end] = bytes(end - start)
    elif kind == "swap":
        # half the swaps inside the header, half anywhere (mostly zero padding: a no-op)
        hi = HEADER_BYTES if rng.random() < 0.5 else n
        i, j = (int(v) for v in rng.integers(0, hi, 2))
        buf[i], buf[j] = buf[j], buf[i]
    elif kind == "garbage_header":
        buf[:HEADER_BYTES] = rng.integers(0, 256, HEADER_BYTES, dtype=np.uint8).tobytes()
    return bytes(buf)


KINDS = (
    "flip_header",
    "flip_payload",
    "truncate",
    "extend",
    "header_field",
    "zero_region",
    "swap",
    "garbage_header",
)


def test_fuzzed_bundles_are_rejected_or_identical(mini_lean):
    qm, data = mini_lean
    c, p, t = qm.cfg, qm.profile, Tiling()
    rng = np.random.default_rng(20240611)
    rejected = dict.fromkeys(KINDS, 0)
    accepted = dict.fromkeys(KINDS, 0)
    start = time.perf_counter()
    for case in range(FUZZ_CASES):
        kind = KINDS[case % len(KINDS)]
        bad = _mutate(data, kind, rng)
        try:
            validate(bad, c, p, t)
        except BundleError as e:
            assert "\n" not in str(e)
            rejected[kind] += 1
        else:
            # only a mutation that changed nothing the bundle means may pass
            assert_same_tensors(unpack(bad, c, p, t), qm.tensors)
            accepted[kind] += 1
        assert time.perf_counter() - start < FUZZ_SECONDS, f"fuzzing too slow at case {case}"
    print(f"\nfuzz: rejected {rejected}\n      accepted {accepted}")
    for kind in KINDS:
        assert rejected[kind] > 0, kind
    assert sum(rejected.values()) + sum(accepted.values()) == FUZZ_CASES
    for kind in ("flip_header", "flip_payload", "truncate", "extend", "garbage_header"):
        assert accepted[kind] == 0, kind


# ---- the bundle file: kernel image + host section (edgemoe.host.export.deployment) ----


@pytest.fixture(scope="module")
def mini_file(mini_lean):
    from edgemoe.host.export.deployment import WeightSource, bundle_file, host_tensors

    qm, image = mini_lean
    state = {k: v.numpy() for k, v in model(MINI, 0).state_dict().items()}
    src = WeightSource(None, None, 0)
    return image, bundle_file(image, qm.cfg, qm.profile, Tiling(), src, host_tensors(state, qm.cfg))


def test_bundle_file_describes_itself(mini_file):
    """Config (task order included), profile, tiling, weights and heads come back exactly."""
    from edgemoe.host.export.bundle import split_file
    from edgemoe.host.export.deployment import read_deployment

    image, data = mini_file
    kernel, section = split_file(data)
    assert bytes(kernel) == image and section is not None
    validate(data, cfg(MINI), profile("lean"), Tiling())  # the host section is not in the way
    dep = read_deployment(data)
    assert dep.cfg == cfg(MINI) and dep.cfg.task_names == cfg(MINI).task_names
    assert dep.profile.canonical() == profile("lean").canonical()
    assert dep.profile.budgets == profile("lean").budgets
    assert dep.tiling == Tiling()
    assert dep.source.describe() == "random init, seed 0 (untrained)"
    state = model(MINI, 0).state_dict()
    assert sorted(dep.host) == sorted(k for k in state if k.startswith(("norms.", "heads.")))
    for k, v in dep.host.items():
        assert v.dtype == state[k].numpy().dtype and (v == state[k].numpy()).all(), k


def test_bundle_file_damage_is_one_line(mini_file):
    from edgemoe.host.export.deployment import read_deployment

    image, data = mini_file

    def rejects(bad: bytes, *words: str) -> None:
        with pytest.raises(BundleError) as e:
            read_deployment(bad, "bundle b.bin")
        assert "\n" not in str(e.value)
        for w in (*words, "b.bin"):
            assert w in str(e.value), str(e.value)

    rejects(image, "no host section")
    rejects(with_field(data, 1, 1), "format version 1", "older edgemoe")
    rejects(data[:-1], "no host section")
    flipped = bytearray(data)
    flipped[len(image) + 10] ^= 1
    rejects(bytes(flipped), "host section CRC32")
    rejects(b"PK\x03\x04" + data[4:], "not an edgemoe bundle")


@pytest.mark.parametrize("cfg_name", ["m3vit-mini-pup", TINY])
def test_decoder_tensors_round_trip(cfg_name):
    """Format version 4: each pup task's decoder tensors (norm, BN-folded convolutions,
    tiled like the linear tensors) and their binary points come back exactly."""
    from edgemoe.host.export.bundle import layout, read_scales, scale_entries

    qm = quantized(cfg_name, "lean")
    assert qm.dec_tensors  # the configs' pup heads
    c, p, t = qm.cfg, qm.profile, Tiling(24, 20, 4)
    data = pack(qm, t)
    assert len(data) == bundle_bytes(c, p, t)
    back = unpack_model(data, c, p, t)
    assert_same_tensors(back.tensors, qm.tensors)
    assert_same_tensors(back.dec_tensors, qm.dec_tensors)
    assert back.dec_formats == qm.dec_formats
    assert_same_tensors(unpack(data, c, p, t), qm.tensors)  # the backbone only
    tiled = {e.name for e in layout(c, p, t) if e.tiled and e.name.startswith("decoders.")}
    assert tiled == {n for n in qm.dec_tensors if n.endswith(".w")}
    words = dict(zip((w for w, _ in scale_entries(c)), read_scales(data, c, p, t), strict=True))
    for w in tiled:
        b = w[:-2] + ".b"
        assert words[w] == qm.dec_formats[w].frac | qm.dec_formats[b].frac << 8
