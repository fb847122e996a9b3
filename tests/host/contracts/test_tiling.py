"""The tiling word and the one spelling of the tiling option."""

from __future__ import annotations

import pytest

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling, word_text


def test_the_tiling_word_round_trips():
    t = Tiling(24, 20, 4)
    assert t.word == 24 | 20 << 8 | 4 << 16
    assert Tiling.from_word(t.word) == t
    assert word_text(t.word) == "24x20 p4"


def test_the_tiling_option_parses_lin_in_x_lin_out():
    assert Tiling.parse(" 32X24 ", DEFAULT_TILING.p) == DEFAULT_TILING
    with pytest.raises(ConfigError, match="--tiling '32by32': expected LIN_INxLIN_OUT"):
        Tiling.parse("32by32", 2)
    with pytest.raises(ConfigError, match="lin_in=0"):
        Tiling.parse("0x32", 2)


def test_the_header_generator_takes_the_same_option(tmp_path):
    from edgemoe.host.export.hls_params import main

    out = tmp_path / "params.h"
    assert main(["--config", "m3vit-mini", "--tiling", "16x8", "--p", "4", "--out", str(out)]) == 0
    assert f"TILING_WORD = 0x{Tiling(16, 8, 4).word:08X}u;" in out.read_text()
