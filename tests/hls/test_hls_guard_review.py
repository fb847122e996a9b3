"""The guard's rules for the HLS review's classes of error (scripts/hls_guard.py with
scripts/hls_ast.py): each fails on the shape the review found in the kernel (F1, F4, F5,
F6, F9, rebuilt as small C++ from its description and the code it read) and passes on
the fixed shape the review prescribes; plus the rules' finer points.

The AST rules parse each snippet with clang (libclang's Python bindings) as a
translation unit of its own: the snippets are complete C++.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.hls.test_hls_guard import guard

PRELUDE = """\
constexpr int N = 128;
constexpr int D = 48;
constexpr int LIN_IN = 32;
constexpr int LIN_OUT = 24;
"""


def review(tmp_path: Path, code: str, name: str = "snippet.cpp") -> list[tuple[str, int, str]]:
    """(rule, line, message) of every review-rule violation; lines count from the
    snippet's first line (the prelude is not counted)."""
    path = tmp_path / name
    path.write_text(PRELUDE + code)
    offset = PRELUDE.count("\n")
    return sorted((v.rule, v.line - offset, v.message) for v in guard.check_review([path]))


def rules(found) -> list[tuple[str, int]]:
    return sorted({(r, ln) for r, ln, _ in found})


def line_of(code: str, text: str) -> int:
    (n,) = [i for i, ln in enumerate(code.split("\n"), start=1) if text in ln]
    return n


# ---------------------------------------------------------------------------
# F1: one GELU ROM read twice by each of 24 unrolled epilogue lanes.

F1_BEFORE = """\
constexpr int GELU_ENTRIES = 513;
constexpr int GELU_TABLE[GELU_ENTRIES] = {0, 1, 2};

inline long gelu(long x) {
  const long a = x < 0 ? -x : x;
  const long k = a >> 4;
  long d = 0;
  if (k < GELU_ENTRIES - 1) {
    const int ki = static_cast<int>(k);
    const long t0 = GELU_TABLE[ki];
    const long t1 = GELU_TABLE[ki + 1];
    d = t0 + (((t1 - t0) * (a & 15)) >> 4);
  }
  return (x > 0 ? x : 0) - d;
}

void epilogue(const long sums[N][LIN_OUT], long out[N][LIN_OUT], int rows) {
#pragma HLS ARRAY_PARTITION variable = sums complete dim = 2
#pragma HLS ARRAY_PARTITION variable = out complete dim = 2
lin_pass:
  for (int r = 0; r < rows; ++r) {
#pragma HLS PIPELINE II = 1
  lin_epilogue:
    for (int o = 0; o < LIN_OUT; ++o) {
      out[r][o] = gelu(sums[r][o]);
    }
  }
}
"""

# the fix: a copy of the table per lane (complete partition of the copies' dimension)
F1_AFTER = (
    F1_BEFORE.replace(
        "constexpr int GELU_TABLE[GELU_ENTRIES] = {0, 1, 2};",
        "constexpr int GELU_LANES[LIN_OUT][GELU_ENTRIES] = {};",
    )
    .replace(
        "inline long gelu(long x) {", "inline long gelu(long x, const int table[GELU_ENTRIES]) {"
    )
    .replace("GELU_TABLE[ki", "table[ki")
    .replace(
        "#pragma HLS ARRAY_PARTITION variable = out complete dim = 2\n",
        "#pragma HLS ARRAY_PARTITION variable = out complete dim = 2\n"
        "#pragma HLS ARRAY_PARTITION variable = GELU_LANES complete dim = 1  // a ROM per lane\n",
    )
    .replace("gelu(sums[r][o])", "gelu(sums[r][o], GELU_LANES[o])")
)


def test_f1_a_rom_shared_by_the_unrolled_lanes_fails(tmp_path):
    found = review(tmp_path, F1_BEFORE)
    assert rules(found) == [("port-budget", line_of(F1_BEFORE, "t0 = GELU_TABLE"))]
    msg = found[0][2]
    assert "`GELU_TABLE`: 48 accesses" in msg and "`lin_pass`" in msg and "II >= 24" in msg


def test_f1_a_rom_per_lane_passes(tmp_path):
    assert "GELU_LANES[o]" in F1_AFTER and "GELU_TABLE" not in F1_AFTER
    assert review(tmp_path, F1_AFTER) == []


# ---------------------------------------------------------------------------
# F4: an x bank read by the side merge, the epilogue's addend and its read-modify-write.

F4_BEFORE = """\
enum LinearOutput { OUT_EMBED, OUT_RESIDUAL, OUT_DELTA };

inline void merge_lanes(const int row[D], int own[LIN_OUT]) {
bank_walk:
  for (int b = 0; b < LIN_OUT; ++b) {
#pragma HLS UNROLL
    own[b] = row[b];
  }
}

inline void linear_output(LinearOutput out, int x[N][D], int r, int col, int y) {
  const int addend = out == OUT_EMBED ? x[r + 1][col] : 0;
  const int v = y + addend;
  switch (out) {
    case OUT_EMBED:
      x[r + 1][col] = v;
      break;
    case OUT_RESIDUAL:
      x[r][col] = x[r][col] + v;
      break;
    default:
      x[r][col] = v;
      break;
  }
}

void lin_compute(int x[N][D], const int sums[N][LIN_OUT], LinearOutput out, bool side,
                 int sr, int rows, int ot, int own[LIN_OUT]) {
#pragma HLS ARRAY_PARTITION variable = x cyclic factor = LIN_OUT dim = 2
#pragma HLS ARRAY_PARTITION variable = sums complete dim = 2
#pragma HLS ARRAY_PARTITION variable = own complete dim = 1
lin_pass:
  for (int r = 0; r < rows; ++r) {
#pragma HLS PIPELINE II = 1
    if (side) {
      merge_lanes(x[sr], own);
    }
  lin_epilogue:
    for (int o = 0; o < LIN_OUT; ++o) {
      linear_output(out, x, r, ot * LIN_OUT + o, sums[r][o]);
    }
  }
}
"""

# the fix: one read and one write per bank, the merge through the epilogue's read port
F4_AFTER = """\
enum LinearOutput { OUT_EMBED, OUT_RESIDUAL, OUT_DELTA };

inline int linear_output(LinearOutput out, int old, int y) {
  switch (out) {
    case OUT_DELTA:
      return y;
    default:
      return old + y;
  }
}

void lin_compute(int x[N][D], const int sums[N][LIN_OUT], LinearOutput out, bool side,
                 int sr, int rows, int ot, int own[LIN_OUT]) {
#pragma HLS ARRAY_PARTITION variable = x cyclic factor = LIN_OUT dim = 2
#pragma HLS ARRAY_PARTITION variable = sums complete dim = 2
#pragma HLS ARRAY_PARTITION variable = own complete dim = 1
lin_pass:
  for (int r = 0; r < rows; ++r) {
#pragma HLS PIPELINE II = 1
    const int rd = side ? sr : (out == OUT_EMBED ? r + 1 : r);  // the address mux
    const int wr = out == OUT_EMBED ? r + 1 : r;
  lin_epilogue:
    for (int o = 0; o < LIN_OUT; ++o) {
      const int col = ot * LIN_OUT + o;
      const int old = x[rd][col];
      own[o] = old;
      x[wr][col] = linear_output(out, old, sums[r][o]);
    }
  }
}
"""


def test_f4_three_or_more_accesses_to_an_x_bank_fail(tmp_path):
    found = review(tmp_path, F4_BEFORE)
    assert [r for r, _ in rules(found)] == ["port-budget"]
    msg = found[0][2]
    # the merge's read, the addend's read, then the larger switch case (read + write)
    assert "`x`: 4 accesses per iteration of pipelined loop `lin_pass`" in msg
    assert "II >= 2, not 1" in msg


def test_f4_one_read_and_one_write_per_bank_pass(tmp_path):
    assert review(tmp_path, F4_AFTER) == []


# ---------------------------------------------------------------------------
# F5: per-row scalars (token id, gate weight) re-read in every unrolled lane.

F5_BEFORE = """\
constexpr int E = 16;
struct Routing {
  int token[E][N];
  int weight[E][N];
};

void gather(const int h[N][D], const Routing& rt, int expert, int rows, long out[N][LIN_IN]) {
#pragma HLS ARRAY_PARTITION variable = h cyclic factor = LIN_IN dim = 2
#pragma HLS ARRAY_PARTITION variable = out complete dim = 2
lin_pass:
  for (int r = 0; r < rows; ++r) {
#pragma HLS PIPELINE II = 1
  lin_fetch:
    for (int i = 0; i < LIN_IN; ++i) {
      out[r][i] = long(h[rt.token[expert][r]][i]) * rt.weight[expert][r];
    }
  }
}
"""

# the fix: read once per row, before the lane loop
F5_AFTER = F5_BEFORE.replace(
    "  lin_fetch:\n",
    "    const int t = rt.token[expert][r];\n    const int g = rt.weight[expert][r];\n"
    "  lin_fetch:\n",
).replace("long(h[rt.token[expert][r]][i]) * rt.weight[expert][r]", "long(h[t][i]) * g")


def test_f5_a_per_row_scalar_read_in_every_lane_fails(tmp_path):
    found = review(tmp_path, F5_BEFORE)
    line = line_of(F5_BEFORE, "out[r][i] =")
    assert rules(found) == [("lane-reload", line), ("port-budget", line)]
    messages = " ".join(m for _, _, m in found)
    for what in ("rt.token[expert][r]", "rt.weight[expert][r]"):
        assert f"`{what}` does not depend on the lane of unrolled loop `lin_fetch` (x32)" in (
            messages
        )
    assert "`rt.token`: 32 accesses" in messages and "`rt.weight`: 32 accesses" in messages


def test_f5_per_row_scalars_read_once_pass(tmp_path):
    assert "const int t = rt.token[expert][r];" in F5_AFTER
    assert review(tmp_path, F5_AFTER) == []


# ---------------------------------------------------------------------------
# F6: DEPENDENCE ... false on the weight tiles, with a reason that is no proof.

F6_BEFORE = """\
void lin_compute(short wtile[3][768], const short* next, int rows, int b0, long acc[N]) {
lin_pass:
  for (int step = 0; step < rows; ++step) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = wtile inter false  // the tile being written is 2 ahead
    wtile[(b0 + 2) & 3][step] = next[step];
    acc[step] += wtile[b0 & 3][step];
  }
}
"""

# the fix: the true distance, the write-after-read left to the tool
F6_AFTER = F6_BEFORE.replace(
    "inter false  // the tile being written is 2 ahead",
    "inter RAW distance = 9 true  // a pass apart",
)


def test_f6_a_false_dependence_without_proof_fails(tmp_path):
    found = review(tmp_path, F6_BEFORE)
    assert rules(found) == [("dependence-proof", line_of(F6_BEFORE, "DEPENDENCE"))]
    assert "DEPENDENCE on `wtile` declared false with no `// proof:`" in found[0][2]


def test_f6_the_true_distance_passes(tmp_path):
    assert review(tmp_path, F6_AFTER) == []


@pytest.mark.parametrize(
    ("pragmas", "bad"),
    [
        # a proof on the line before, naming the variable
        ("    // proof: a row's x is written by the iteration that reads it, once\n"
         "#pragma HLS DEPENDENCE variable = x inter false\n", []),
        # a proof block over several pragmas naming each of them
        ("    // proof: x and h are each touched once per (row, column) in one iteration;\n"
         "    // no two iterations of a call share an element\n"
         "#pragma HLS DEPENDENCE variable = x inter false\n"
         "#pragma HLS DEPENDENCE variable = h inter false\n", []),
        # on the pragma's own line
        ("#pragma HLS DEPENDENCE variable = x inter false  // proof: x rows are distinct\n", []),
        # a true dependence needs no proof
        ("#pragma HLS DEPENDENCE variable = x inter RAW distance = 4 true\n", []),
        # a comment that is no proof, a proof of something else, none at all
        ("    // x is fine\n#pragma HLS DEPENDENCE variable = x inter false\n", ["x"]),
        ("    // proof: h rows are distinct\n#pragma HLS DEPENDENCE variable = x inter false\n",
         ["x"]),
        ("    // proof: x rows are distinct\n#pragma HLS DEPENDENCE variable = x inter false\n"
         "#pragma HLS DEPENDENCE variable = h intra false\n", ["h"]),
        ("#pragma HLS dependence variable=x inter dependent=false\n", ["x"]),
        ("    int y = 0;\n#pragma HLS DEPENDENCE variable = x inter false\n", ["x"]),
    ],
)  # fmt: skip
def test_dependence_proof_forms(tmp_path, pragmas, bad):
    code = (
        "void f(int x[N], int h[N], int n) {\nrows:\n  for (int i = 0; i < n; ++i) {\n"
        "#pragma HLS PIPELINE II = 1\n" + pragmas + "    x[i] = h[i] + 1;\n  }\n}\n"
    )
    found = [m for r, _, m in review(tmp_path, code) if r == "dependence-proof"]
    named = [re.search(r"DEPENDENCE on `(\w+)`", m).group(1) for m in found]
    assert named == bad, found


# ---------------------------------------------------------------------------
# F9: a run-time division by 24 in every lane of every bank walk.

GCD = """\
template <int A, int B>
struct Gcd {
  static constexpr int value = Gcd<B, A % B>::value;
};
template <int A>
struct Gcd<A, 0> {
  static constexpr int value = A;
};
"""

F9_BEFORE = (
    GCD
    + """\
template <int BANKS, int GRAIN>
inline int bank_phase(int c0) {
  constexpr int G = Gcd<GRAIN, BANKS>::value;
  return ((c0 / GRAIN) * (GRAIN / G) % (BANKS / G)) * G;
}

template <int BANKS, int LANES, int GRAIN>
inline void load_lanes(const int row[D], int c0, int n, int vals[LANES]) {
  const int phase = bank_phase<BANKS, GRAIN>(c0);
bank_walk_banks:
  for (int b = 0; b < BANKS; ++b) {
#pragma HLS UNROLL
    const int l = b >= phase ? b - phase : b - phase + BANKS;
    if (l < n && l < LANES) {
      const int addr = (c0 + l) / BANKS;
      vals[l] = row[addr * BANKS + b];
    }
  }
}

void move_rows(const int x[N][D], int rows, int out[N][4]) {
#pragma HLS ARRAY_PARTITION variable = x cyclic factor = LIN_OUT dim = 2
#pragma HLS ARRAY_PARTITION variable = out complete dim = 2
  int r = 0;
  int w = 0;
move_rows_words:
  for (int s = 0; s < rows; ++s) {
#pragma HLS PIPELINE II = 1
    load_lanes<LIN_OUT, 4, 4>(x[r], w * 4, 4, out[s]);
    if (++w == 12) {
      w = 0;
      ++r;
    }
  }
}
"""
)

# the fix: one narrow division per walk (reason stated), the lanes' rows from an add
F9_AFTER = (
    F9_BEFORE.replace(
        """  return ((c0 / GRAIN) * (GRAIN / G) % (BANKS / G)) * G;
}""",
        """  constexpr int PHASES = BANKS / G;
  const int m = (c0 / GRAIN) * (GRAIN / G);
  const int q = m / PHASES;  // div: the walk's one division, of a 16-bit column
  return (m - q * PHASES) * G;
}

template <int BANKS, int GRAIN>
inline int bank_row(int c0, int phase) {
  return (c0 - phase) / BANKS;  // div: the walk's row, c0 - phase a multiple of BANKS
}""",
    )
    .replace(
        "      const int addr = (c0 + l) / BANKS;",
        "      const int addr = base + (b < phase ? 1 : 0);",
    )
    .replace(
        "  const int phase = bank_phase<BANKS, GRAIN>(c0);\n",
        "  const int phase = bank_phase<BANKS, GRAIN>(c0);\n"
        "  const int base = bank_row<BANKS, GRAIN>(c0, phase);\n",
    )
)


def test_f9_a_division_by_24_in_every_lane_fails(tmp_path):
    found = review(tmp_path, F9_BEFORE)
    assert rules(found) == [
        ("const-division", line_of(F9_BEFORE, "% (BANKS / G)")),
        ("const-division", line_of(F9_BEFORE, "(c0 + l) / BANKS")),
    ]
    by_line = {ln: m for _, ln, m in found}
    lane = by_line[line_of(F9_BEFORE, "(c0 + l) / BANKS")]
    assert "run-time `/ 24`" in lane and "`bank_walk_banks` (24 in all)" in lane
    assert "(pipelined loop: move_rows_words)" in lane
    # BANKS / gcd(GRAIN, BANKS) = 24 / 4 phases: one `% 6` per walk, no reason given
    phase = by_line[line_of(F9_BEFORE, "% (BANKS / G)")]
    assert "run-time `% 6`" in phase and "one per iteration" in phase


def test_f9_one_division_per_walk_with_its_reason_passes(tmp_path):
    assert review(tmp_path, F9_AFTER) == []
    # without the stated reason the walk's one division is still reported
    bare = F9_AFTER.replace("  // div: the walk's one division, of a 16-bit column", "")
    found = review(tmp_path, bare)
    assert rules(found) == [("const-division", line_of(bare, "const int q = m / PHASES;"))]


# ---------------------------------------------------------------------------
# The rules' finer points.


def pipelined(body: str, *, ii: int = 1, decls: str = "") -> str:
    return (
        "void f(int a[N], const int b[N][LIN_OUT], int rows, int k, bool c, int sel) {\n"
        f"{decls}rows:\n  for (int r = 0; r < rows; ++r) {{\n"
        f"#pragma HLS PIPELINE II = {ii}\n{body}  }}\n}}\n"
    )


@pytest.mark.parametrize(
    ("body", "ii", "accesses"),
    [
        # two reads and a write of one RAM in one iteration
        ("    a[r] = a[r + 1] + a[r + 2];\n", 1, 3),
        # ... fit II = 2 (four port slots)
        ("    a[r] = a[r + 1] + a[r + 2];\n", 2, 0),
        # a read-modify-write is two
        ("    a[r] += 1;\n    a[k] = 0;\n", 1, 3),
        # branches of one if share ports: the larger one counts
        ("    if (c) {\n      a[r] = a[k];\n    } else {\n      a[k] = a[r];\n    }\n", 1, 0),
        ("    a[r] = c ? a[k] : a[k + 1];\n", 1, 0),
        ("    switch (sel) {\n      case 0:\n        a[r] = a[k];\n        break;\n"
         "      default:\n        a[k] = a[r];\n        break;\n    }\n", 1, 0),
        # separate statements add up
        ("    if (c) {\n      a[r] = 1;\n    }\n    if (sel) {\n      a[k] = a[r];\n    }\n",
         1, 3),
        # the same element read twice before a write is one load
        ("    a[r] = a[k] + a[k];\n", 1, 0),
        # a lane loop multiplies an unpartitioned array's accesses
        ("  lanes:\n    for (int o = 0; o < 4; ++o) {\n      a[r * 4 + o] = 0;\n    }\n", 1, 4),
        # ... not a partitioned one whose lane picks the bank
        ("    int s = 0;\n  lanes:\n    for (int o = 0; o < LIN_OUT; ++o) {\n"
         "      s += b[r][o];\n    }\n    a[r] = s;\n", 1, 0),
        # a read-modify-write in every lane of an element no lane picks: 2 x 24
        ("  lanes:\n    for (int o = 0; o < LIN_OUT; ++o) {\n      a[r] += b[r][o];\n    }\n",
         1, 48),
    ],
)  # fmt: skip
def test_port_budget_counts_one_iteration(tmp_path, body, ii, accesses):
    decls = "#pragma HLS ARRAY_PARTITION variable = b cyclic factor = LIN_OUT dim = 2\n"
    found = [m for r, _, m in review(tmp_path, pipelined(body, ii=ii, decls=decls))]
    found = [m for m in found if "port-budget" in m or "accesses" in m]
    if accesses:
        assert len(found) == 1 and f"`a`: {accesses} accesses" in found[0], found
    else:
        assert found == []


@pytest.mark.parametrize(
    ("expr", "bad"),
    [
        ("k / 24", True),
        ("k % 3", True),
        ("k / 16", False),  # a shift
        ("k % 8", False),  # a mask
        ("(k * 24) / 24", False),  # an exact multiple: folds
        ("(k * 48 + 24) % 24", False),
        ("LIN_OUT / 3", False),  # a constant
        ("k / rows", False),  # not by a constant (not this rule)
    ],
)
def test_const_division_by_what_and_of_what(tmp_path, expr, bad):
    found = review(tmp_path, pipelined(f"    a[r] = {expr};\n"))
    assert [r for r, _, _ in found] == (["const-division"] if bad else []), found


def test_a_per_row_read_outside_the_lanes_and_register_arrays_pass(tmp_path):
    code = pipelined(
        "    const int t = a[r];\n  lanes:\n    for (int o = 0; o < LIN_OUT; ++o) {\n"
        "      regs[o] = regs[k] + b[t][o];\n    }\n",
        decls="#pragma HLS ARRAY_PARTITION variable = b cyclic factor = LIN_OUT dim = 2\n"
        "  int regs[LIN_OUT];\n#pragma HLS ARRAY_PARTITION variable = regs complete dim = 1\n",
    )
    assert review(tmp_path, code) == []


def test_only_what_the_top_reaches_is_checked(tmp_path):
    """With the top function defined, a function it never calls is not synthesised."""
    path = tmp_path / "k.cpp"
    path.write_text(PRELUDE + F1_BEFORE + "void edgemoe_top(int n) {\n}\n")
    assert [v.rule for v in guard.check_review([path], "edgemoe_top")] == []
    assert [v.rule for v in guard.check_review([path])] == ["port-budget"]


def test_without_libclang_the_guard_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    ast = guard.load_ast()
    monkeypatch.setattr(ast, "ci", None)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "k.cpp").write_text("int f() { return 0; }\n")
    assert guard.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "hls_guard: the AST rules cannot run: libclang's Python bindings are not installed "
        "(pip install libclang; make venv)"
    ]


def test_lane_invariant_loads_of_a_constant_table_merge(tmp_path):
    """Every copy of a table filled from one constant table entry: the lanes' loads of that
    entry are one load (nothing can store to a constexpr table between them); the same
    shape on a writable array is a load per lane."""
    fill = (
        "constexpr int TABLE[33] = {1, 2, 3};\n"
        "void fill(int roms[16][33], int src[33]) {\n"
        "#pragma HLS ARRAY_PARTITION variable = roms complete dim = 1\n"
        "entries:\n  for (int i = 0; i < 33; ++i) {\n#pragma HLS PIPELINE II = 1\n"
        "  copies:\n    for (int u = 0; u < 16; ++u) {\n      roms[u][i] = TABLE[i];\n"
        "    }\n  }\n}\n"
    )
    assert review(tmp_path, fill) == []
    writable = fill.replace("roms[u][i] = TABLE[i];", "roms[u][i] = src[i];")
    assert rules(review(tmp_path, writable)) == [
        ("lane-reload", line_of(writable, "= src[i]")),
        ("port-budget", line_of(writable, "= src[i]")),
    ]


def test_sources_clang_cannot_parse_fail_with_one_line(tmp_path, capsys):
    """A guard that saw half the code would pass what it did not see: it stops instead."""
    (tmp_path / "src").mkdir()
    bad = tmp_path / "src" / "k.cpp"
    bad.write_text("void f() {\nrows:\n  for (int i = 0; i < 4; ++i) {\n    g(i);\n  }\n}\n")
    assert guard.main([str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"hls_guard: clang cannot parse {bad}: {bad}:4: ")
    assert "undeclared identifier 'g'" in line
