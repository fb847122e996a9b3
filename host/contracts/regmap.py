"""The kernel's s_axilite register map, computed in one place from its argument list.

Vitis HLS lays out an ``s_axilite`` control port with ``ap_ctrl_hs`` as
follows, checked against real Vivado output (the published Edge-MoE design's
``.hwh``: ``tests/host/contracts/test_regmap.py``) and the Vitis HLS generated drivers:

* ``0x00`` control: ``ap_start`` bit 0, ``ap_done`` bit 1, ``ap_idle`` bit 2,
  ``ap_ready`` bit 3, ``auto_restart`` bit 7;
* ``0x04`` global interrupt enable, ``0x08`` IP interrupt enable, ``0x0C`` IP
  interrupt status;
* from ``0x10``, first the return value (``ap_return``, read only) if the
  function returns one, then every argument in declaration order. Each takes
  as many 32-bit data words as its width needs, plus one reserved word, with
  no further alignment: a scalar up to 32 bits (a 1-bit ``bool`` included)
  takes 8 bytes, a 64-bit pointer 12, so pointer offsets step by ``0xC``
  (``0x20``, ``0x2C``, ``0x38``...).

In the ``.hwh`` a register of at most 32 bits is named after its argument;
the two words of a 64-bit one are ``<name>_1`` (bits 31..0) and ``<name>_2``
(bits 63..32).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.kernel import ARGS, RETURNS, Arg

#: Control register and its bits.
CTRL = 0x00
AP_START = 1 << 0
AP_DONE = 1 << 1
AP_IDLE = 1 << 2
AP_READY = 1 << 3
AUTO_RESTART = 1 << 7
#: Interrupt registers: global enable, IP enable, IP status (bit 0 ap_done, bit 1 ap_ready).
GIE = 0x04
IER = 0x08
ISR = 0x0C
#: Where the return value, then the arguments, start.
FIRST_DATA = 0x10
WORD = 4

#: The return value's width is ``RETURNS`` (``edgemoe.host.kernel``); its codes follow.


@dataclass(frozen=True)
class KernelStatus:
    """One return code of the kernel (docs/design.md)."""

    code: int
    name: str  #: C++ ``STATUS_<name>`` in the parameter header
    meaning: str  #: what it most likely means, for the driver's one-line error


#: The kernel's return codes: the one table the C++ constants (generated into the
#: parameter header by :mod:`edgemoe.host.hls_params`), the driver's messages and the
#: status table of ``hls/README.md`` (checked by a test) come from. Anything but ``OK``
#: leaves the output untouched.
STATUS_TABLE = (
    KernelStatus(0, "OK", "the run completed"),
    KernelStatus(1, "BAD_MAGIC", "the bundle buffer does not hold an edgemoe bundle"),
    KernelStatus(2, "BAD_VERSION", "the bundle format version differs from the kernel's"),
    KernelStatus(
        3,
        "BAD_CONFIG_HASH",
        "the bundle was built for another config or profile than the bitstream",
    ),
    KernelStatus(4, "BAD_TASK", "task id out of range for this model"),
    KernelStatus(5, "BAD_IMAGE_COUNT", "num_images is 0 or above the kernel's maximum"),
    KernelStatus(6, "BAD_TILING", "the bundle was packed for another tile size than the bitstream"),
    KernelStatus(7, "BAD_DEBUG_STOP", "no such debug stage"),
)
#: Code of each status by name.
STATUS = {s.name: s.code for s in STATUS_TABLE}
#: What a non-zero status most likely means, by name.
STATUS_HINTS = {s.name: s.meaning for s in STATUS_TABLE if s.code != 0}

#: The names the ``.hwh`` gives the fixed registers.
HWH_CONTROL = {"CTRL": CTRL, "GIER": GIE, "IP_IER": IER, "IP_ISR": ISR}

#: Width in bits of each argument kind (``ptr``: m_axi pointer with a 64-bit address).
KIND_BITS = {
    "bool": 1,
    "u8": 8,
    "i8": 8,
    "u16": 16,
    "i16": 16,
    "u32": 32,
    "i32": 32,
    "u64": 64,
    "i64": 64,
    "ptr": 64,
}


class RegmapError(EdgeMoeError):
    """An argument list or a ``.hwh`` file that the register map cannot use."""


@dataclass(frozen=True)
class Register:
    """One argument (or the return value) on the s_axilite port.

    Attributes
    ----------
    name : str
        Argument name; ``ap_return`` for the return value.
    kind : str
        A key of :data:`KIND_BITS`.
    offset : int
        Byte offset of the first (least significant) data word.
    width : int
        Bits of the value.
    readonly : bool
        True for ``ap_return``; arguments are written by the host.
    """

    name: str
    kind: str
    offset: int
    width: int
    readonly: bool = False

    @property
    def words(self) -> int:
        """32-bit data words the value occupies."""
        return -(-self.width // 32)

    @property
    def span(self) -> int:
        """Bytes taken, the reserved word included."""
        return (self.words + 1) * WORD

    @property
    def parts(self) -> tuple[tuple[str, int], ...]:
        """``(hwh register name, offset)`` of each data word, least significant first."""
        if self.words == 1:
            return ((self.name, self.offset),)
        return tuple((f"{self.name}_{i + 1}", self.offset + i * WORD) for i in range(self.words))


@dataclass(frozen=True)
class RegisterMap:
    """The s_axilite registers of a kernel, in address order.

    Attributes
    ----------
    registers : tuple[Register, ...]
        The return value (if any) then the arguments, in declaration order.
    """

    registers: tuple[Register, ...]

    def __getitem__(self, name: str) -> Register:
        for r in self.registers:
            if r.name == name:
                return r
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(r.name == name for r in self.registers)

    def offset(self, name: str) -> int:
        """Offset of the first data word of ``name``."""
        return self[name].offset

    @property
    def end(self) -> int:
        """First byte after the last register (the address range the port needs)."""
        last = self.registers[-1] if self.registers else None
        return last.offset + last.span if last else FIRST_DATA

    @property
    def addr_width(self) -> int:
        """Address bits of the port (Vitis HLS's ``C_S_AXI_<PORT>_ADDR_WIDTH``)."""
        return (self.end - 1).bit_length()

    def hwh_offsets(self) -> dict[str, int]:
        """Every register as the ``.hwh`` names it -> offset, fixed registers included."""
        out = dict(HWH_CONTROL)
        for r in self.registers:
            out.update(r.parts)
        return out

    def table(self) -> str:
        """Readable listing, one line per data word."""
        lines = [f"0x{off:02X}  {name}" for name, off in HWH_CONTROL.items()]
        for r in self.registers:
            for name, off in r.parts:
                access = "R" if r.readonly else "W"
                lines.append(f"0x{off:02X}  {name:<24} {r.kind:<5} {access}")
        return "\n".join(lines)


def _name_kind(a: Arg | Sequence[str]) -> tuple[str, str]:
    if isinstance(a, Arg):
        return a.name, a.kind
    name, kind = a
    return str(name), str(kind)


def register_map(
    args: Iterable[Arg | Sequence[str]], has_return: bool = True, return_kind: str = "u32"
) -> RegisterMap:
    """The s_axilite register map of a top function (Vitis HLS convention).

    Parameters
    ----------
    args : iterable of Arg or (name, kind) pairs
        The top function's arguments in declaration order; kinds from :data:`KIND_BITS`.
    has_return : bool
        Whether the function returns a value (``ap_return`` at ``0x10``).
    return_kind : str
        Kind of the return value; at most 32 bits.

    Raises
    ------
    RegmapError
        An unknown kind, a duplicate name, or a return value wider than 32 bits.
    """
    items: list[tuple[str, str, bool]] = []
    if has_return:
        if KIND_BITS.get(return_kind, 64) > 32:
            raise RegmapError(f"return kind {return_kind!r}: only returns up to 32 bits are mapped")
        items.append(("ap_return", return_kind, True))
    items += [(*_name_kind(a), False) for a in args]
    regs: list[Register] = []
    seen: set[str] = set()
    off = FIRST_DATA
    for name, kind, readonly in items:
        if kind not in KIND_BITS:
            raise RegmapError(
                f"argument {name!r}: unknown kind {kind!r} (known: {', '.join(KIND_BITS)})"
            )
        if name in seen:
            raise RegmapError(f"argument {name!r} appears twice")
        seen.add(name)
        reg = Register(name, kind, off, KIND_BITS[kind], readonly)
        regs.append(reg)
        off += reg.span
    return RegisterMap(tuple(regs))


def kernel_register_map() -> RegisterMap:
    """The register map of our own top function (:data:`edgemoe.host.contracts.kernel.ARGS`)."""
    return register_map(ARGS, has_return=RETURNS is not None, return_kind=RETURNS or "u32")


def _find_module(root: ET.Element, kernel: str) -> ET.Element:
    modules = [
        m
        for m in root.iter("MODULE")
        if kernel in (m.get("INSTANCE"), m.get("VLNV"), m.get("MODTYPE"), m.get("FULLNAME"))
    ]
    if not modules:
        raise RegmapError(f"no kernel {kernel!r} (instance, VLNV or type) in the .hwh")
    if len(modules) > 1:
        names = ", ".join(str(m.get("INSTANCE")) for m in modules)
        raise RegmapError(f"{kernel!r} matches several instances ({names}): name one")
    return modules[0]


def hwh_registers(
    hwh_path: str | Path, kernel: str, interface: str = "s_axi_control"
) -> dict[str, int]:
    """The s_axilite registers of one kernel in a Vivado hardware handoff (``.hwh``).

    Parameters
    ----------
    hwh_path : str or Path
    kernel : str
        Instance name (``ViT_compute_0``), VLNV (``xilinx.com:hls:ViT_compute:1.0``)
        or module type; it must match exactly one instance.
    interface : str
        The s_axilite interface, ``s_axi_control`` unless the HLS bundle was renamed.

    Returns
    -------
    dict[str, int]
        Register name (``CTRL``, ``GIER``, ``num_images``, ``images_1``...) -> byte offset.

    Raises
    ------
    RegmapError
        Unreadable or malformed file, no such kernel or interface.
    """
    try:
        root = ET.parse(hwh_path).getroot()
    except OSError as e:
        raise RegmapError(f"cannot read {hwh_path}: {e.strerror or e}") from None
    except ET.ParseError as e:
        raise RegmapError(f"{hwh_path}: not a valid .hwh (XML error: {e})") from None
    module = _find_module(root, kernel)
    blocks = [
        b
        for b in module.iter("ADDRESSBLOCK")
        if b.get("INTERFACE") == interface and b.get("USAGE") == "register"
    ]
    if not blocks:
        raise RegmapError(f"kernel {kernel!r} has no register block on {interface!r} in the .hwh")
    regs: dict[str, int] = {}
    for block in blocks:
        for reg in block.iter("REGISTER"):
            props = {p.get("NAME"): p.get("VALUE") for p in reg.findall("PROPERTY")}
            name, value = reg.get("NAME"), props.get("ADDRESS_OFFSET")
            try:
                regs[str(name)] = int(str(value), 0)
            except ValueError:
                raise RegmapError(
                    f"{hwh_path}: register {name!r} has no usable ADDRESS_OFFSET ({value!r})"
                ) from None
    return regs


def check_against_hwh(regmap: RegisterMap, hwh_path: str | Path, kernel: str) -> list[str]:
    """Compare a computed register map with the one Vivado recorded in a ``.hwh``.

    Returns
    -------
    list[str]
        One line per mismatch (an offset that differs, a register missing on
        either side); empty when the two agree exactly.

    Raises
    ------
    RegmapError
        As :func:`hwh_registers`.
    """
    have = hwh_registers(hwh_path, kernel)
    want = regmap.hwh_offsets()
    problems = []
    for name, off in sorted(want.items(), key=lambda kv: kv[1]):
        if name not in have:
            problems.append(f"{name}: at 0x{off:02X} here, missing from the .hwh")
        elif have[name] != off:
            problems.append(f"{name}: at 0x{off:02X} here, at 0x{have[name]:02X} in the .hwh")
    for name, off in sorted(have.items(), key=lambda kv: kv[1]):
        if name not in want:
            problems.append(f"{name}: at 0x{off:02X} in the .hwh, not in the argument list")
    return problems
