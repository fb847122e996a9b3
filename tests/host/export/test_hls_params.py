"""The parameter header's GELU table as the linear epilogue reads it (gelu.h)."""

from __future__ import annotations

import re

import pytest

from edgemoe.host.contracts.tables import unit_tables
from edgemoe.host.contracts.tiling import Tiling
from edgemoe.host.export.hls_params import generate
from edgemoe.models import DEFAULT_CONFIG
from tests.conftest import cfg, profile


def _gelu_rom(text: str) -> tuple[int, int, list[list[list[int]]]]:
    """GELU_COPIES, GELU_HALF and the GELU_ROM initializer of a generated header."""
    copies = int(re.search(r"constexpr int GELU_COPIES = (\d+);", text).group(1))
    half = int(re.search(r"constexpr int GELU_HALF = (\d+);", text).group(1))
    body = re.search(r"GELU_ROM\[GELU_COPIES\]\[2\]\[GELU_HALF\] = \{(.*?)\n\};", text, re.S)
    nums = [int(v) for v in re.findall(r"-?\d+", body.group(1))]
    assert len(nums) == copies * 2 * half
    halves = [nums[i * half : (i + 1) * half] for i in range(2 * copies)]
    return copies, half, [halves[2 * c : 2 * c + 2] for c in range(copies)]


@pytest.mark.parametrize("lin_out", [24, 7])
def test_every_copy_interleaves_to_the_table(lin_out):
    """Entry k of the table is GELU_ROM[c][k % 2][k // 2] in every copy c; one copy per
    two epilogue lanes; the odd half is padded with a 0."""
    p = profile("lean")
    text = generate(cfg(DEFAULT_CONFIG), p, Tiling(lin_in=32, lin_out=lin_out))
    copies, half, rom = _gelu_rom(text)
    table = [int(v) for v in unit_tables(p).gelu]
    assert copies == (lin_out + 1) // 2 and len(rom) == copies
    assert half == (len(table) + 1) // 2
    for c in range(copies):
        even, odd = rom[c]
        assert len(even) == len(odd) == half
        assert [even[k // 2] if k % 2 == 0 else odd[k // 2] for k in range(len(table))] == table
        assert odd[half - 1] == 0 or len(table) % 2 == 0
