"""Synthesisability guard (scripts/hls_guard.py, docs/design.md): the kernel sources
pass it, and every rule fails on a small bad snippet."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgemoe.host.contracts.kernel import ARGS, TOP

ROOT = Path(__file__).resolve().parents[2]
HLS = ROOT / "hls"


def _load_guard():
    spec = importlib.util.spec_from_file_location("hls_guard", ROOT / "scripts" / "hls_guard.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


guard = _load_guard()
KERNEL = (TOP, tuple(guard.ExpectedArg(a.name, a.kind, a.bundle) for a in ARGS))


def rules_in(tmp_path: Path, code: str, name: str = "snippet.h") -> list[tuple[str, int]]:
    path = tmp_path / name
    path.write_text(code)
    return [(v.rule, v.line) for v in guard.scan_file(path)]


# ---------------------------------------------------------------------------
# The project's own sources.


def test_kernel_sources_are_synthesisable():
    files = guard.source_files([HLS])
    if not files:
        pytest.skip("no HLS sources under hls/src or hls/include yet")
    found = [v for f in files for v in guard.scan_file(f)]
    assert not found, "\n" + "\n".join(map(str, found))


def test_top_function_interface_matches_kernel_args():
    top_file = HLS / guard.TOP_FILE
    if not top_file.is_file():
        pytest.skip(f"{top_file.relative_to(ROOT)} not written yet")
    found = guard.check_top_interface(guard.Source.read(top_file), *KERNEL)
    assert not found, "\n" + "\n".join(map(str, found))


def test_command_line_on_the_repo():
    if not guard.source_files([HLS]):
        pytest.skip("no HLS sources yet")
    run = subprocess.run(
        [sys.executable, "scripts/hls_guard.py", "hls"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_scans_src_and_include_but_not_tb(tmp_path):
    for sub in ("src", "include/edgemoe", "tb"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "src" / "a.cpp").write_text("")
    (tmp_path / "include" / "edgemoe" / "b.h").write_text("")
    (tmp_path / "tb" / "tb_top.cpp").write_text("#include <vector>\n")
    names = {p.name for p in guard.source_files([tmp_path])}
    assert names == {"a.cpp", "b.h"}


# ---------------------------------------------------------------------------
# Each rule fails on a bad snippet.

BAD = {
    "heap": [
        "int* p = new int[4];",
        "void f(int* p) { delete[] p; }",
        "void* q = malloc(16);",
        "void* q = std::calloc(4, 4);",
        "void g(void* q) { free(q); }",
    ],
    "stl": [
        "#include <vector>",
        "#include <string>",
        "std::vector<int> v;",
        "std::map<int, int> m;",
        "std::list<int> l;",
        "std::deque<int> d;",
        "std::set<int> s;",
        "std::unordered_map<int, int> u;",
        "std::string name;",
        "std::function<int(int)> f;",
    ],
    "math": [
        "#include <cmath>",
        "#include <math.h>",
        '#include "hls_math.h"',
        "double y = std::exp(1.0);",
        "double y = std::log(2.0);",
        "double y = std::sqrt(2.0);",
        "double y = std::pow(2.0, 3.0);",
        "double y = std::erf(0.5);",
        "float y = hls::exp(1.0f);",
    ],
    "exception": [
        "void f() { throw 1; }",
        "void f() { try { g(); } catch (...) { } }",
    ],
    "recursion": [
        "int fact(int n) { return n < 2 ? 1 : n * fact(n - 1); }",
        "template <int W>\nint bits(int x) { return x ? 1 + bits<W>(x >> 1) : 0; }",
        "void walk(int n) {\n  if (n > 0) {\n    walk(n - 1);\n  }\n}",
    ],
    "loop-label": [
        "void f() {\n  for (int i = 0; i < 4; ++i) {\n  }\n}",
        "void f(int n) {\n  while (n > 0) {\n    --n;\n  }\n}",
        "void f(int n) {\n  do {\n    --n;\n  } while (n > 0);\n}",
        "void f(int k) {\n  switch (k) {\n    case 1:\n      for (;;) {\n      }\n  }\n}",
        "void f() {\n  std::size_t x = 0;\n  for (int i = 0; i < 2; ++i) {\n  }\n}",
    ],
}


@pytest.mark.parametrize(
    ("rule", "code"), [(rule, code) for rule, codes in BAD.items() for code in codes]
)
def test_each_rule_fails_on_a_bad_snippet(tmp_path, rule, code):
    found = rules_in(tmp_path, code + "\n")
    assert rule in {r for r, _ in found}, found


GOOD = [
    # deleted special members are not heap use
    "struct A {\n  A(const A&) = delete;\n  A& operator=(const A&) = delete;\n};",
    # labelled loops, the label on the line before or the same line; pragmas between
    "void f(int n) {\nouter:\n  for (int i = 0; i < 4; ++i) {\n"
    "  inner: for (int j = 0; j < 4; ++j) {\n"
    "#pragma HLS PIPELINE II = 1\n    }\n  }\n}",
    "void f(int n) {\ncount:\n  while (n > 0) {\n    --n;\n  }\n}",
    # a labelled do-while: its tail `while (...);` is not a second loop
    "void f(int n) {\nspin:\n  do {\n    --n;\n  } while (n > 0);\n}",
    # compile-time recursion over a template argument is allowed
    "template <int N>\nint sum() { return N + sum<N - 1>(); }\n"
    "template <>\nint sum<0>() { return 0; }",
    # comments and strings do not count
    '// new std::vector<int> throw std::exp\n/* for (;;) malloc( */\nconst char* s = "throw new";',
    # our own math units and calls to other functions with similar names
    "int exp2_prob(int x) { return x; }\nint g(int x) { return exp2_prob(x) + x; }",
    # an overload-free function calling another one is not recursion
    "int a(int x) { return x; }\nint b(int x) { return a(x); }",
    "void f() {\nstep:\n  for (int i = 0; i < 2; ++i) {\n    obj.f(i);\n  }\n}",
]


@pytest.mark.parametrize("code", GOOD)
def test_clean_snippets_pass(tmp_path, code):
    assert rules_in(tmp_path, code + "\n") == []


def test_csim_only_blocks_are_exempt(tmp_path):
    code = "\n".join(
        [
            "#ifndef __SYNTHESIS__",
            "#include <vector>",
            "#include <cmath>",
            "static std::vector<double> table;",
            "void dump() { for (;;) { throw 1; } }",
            "#else",
            "int* leak = new int;",  # synthesised: flagged
            "#endif",
            "#ifdef __SYNTHESIS__",
            "double y = std::exp(1.0);",  # synthesised: flagged
            "#else",
            "double z = std::exp(1.0);",  # C-sim only: exempt
            "#endif",
            "#if !defined(__SYNTHESIS__)",
            "std::string s;",
            "#endif",
            "#if defined(FOO)",
            "#ifndef __SYNTHESIS__",
            "std::set<int> nested;",
            "#endif",
            "std::list<int> kept;",  # synthesised when FOO is defined: flagged
            "#endif",
        ]
    )
    assert sorted(rules_in(tmp_path, code + "\n")) == [("heap", 7), ("math", 10), ("stl", 21)]


def test_violations_carry_file_and_line(tmp_path):
    path = tmp_path / "bad.h"
    path.write_text("// header\n\nvoid f() {\n  for (;;) {\n  }\n}\n")
    (v,) = guard.scan_file(path)
    assert (v.path, v.line, v.rule) == (path, 4, "loop-label")
    assert str(v).startswith(f"{path}:4: [loop-label]")


def test_command_line_reports_violations(tmp_path):
    (tmp_path / "src").mkdir()
    bad = tmp_path / "src" / "k.cpp"
    bad.write_text("#include <vector>\nvoid f() {\n  while (true) {\n  }\n}\n")
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "hls_guard.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert f"{bad}:1: [stl]" in run.stdout
    assert f"{bad}:3: [loop-label]" in run.stdout


# ---------------------------------------------------------------------------
# The top function's interface pragmas.


def top_source(args=ARGS, *, drop: str | None = None, edit=None) -> str:
    params = ", ".join(
        f"word_t* {a.name}" if a.kind == "ptr" else f"uint32_t {a.name}" for a in args
    )
    lines = [f"uint32_t {TOP}({params}) {{"]
    for a in args:
        if a.kind == "ptr":
            lines.append(
                f"#pragma HLS INTERFACE mode=m_axi port={a.name} bundle={a.bundle} offset=slave"
            )
        else:
            lines.append(f"#pragma HLS INTERFACE mode=s_axilite port={a.name}")
    lines.append("#pragma HLS INTERFACE mode=s_axilite port=return")
    lines += ["  return 0;", "}"]
    if drop is not None:
        lines = [ln for ln in lines if f"port={drop} " not in ln + " "]
    text = "\n".join(lines) + "\n"
    return edit(text) if edit else text


def interface_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "edgemoe_top.cpp"
    path.write_text(text)
    return [v.message for v in guard.check_top_interface(guard.Source.read(path), *KERNEL)]


def test_interface_of_a_correct_top_passes(tmp_path):
    assert interface_problems(tmp_path, top_source()) == []


def test_interface_accepts_legacy_pragma_spelling(tmp_path):
    text = top_source(
        edit=lambda t: t.replace("mode=m_axi", "m_axi").replace("mode=s_axi", "s_axi")
    )
    assert interface_problems(tmp_path, text) == []


def test_interface_pragmas_may_span_lines_and_space_their_equals(tmp_path):
    text = top_source(
        edit=lambda t: t.replace(" bundle=", " bundle = \\\n    ").replace("port=", "port = ")
    )
    assert "\\\n" in text
    assert interface_problems(tmp_path, text) == []


@pytest.mark.parametrize("name", [a.name for a in ARGS] + ["return"])
def test_interface_fails_without_a_pragma(tmp_path, name):
    problems = interface_problems(tmp_path, top_source(drop=name))
    assert any(f"port={name}" in p or f"`{name}`" in p for p in problems), problems


def test_interface_fails_when_arguments_differ_from_ARGS(tmp_path):
    renamed = [*ARGS[:-1], type(ARGS[-1])("stop_after", "u32", None, "")]
    problems = interface_problems(tmp_path, top_source(renamed))
    assert any("differ from contracts.kernel.ARGS" in p for p in problems), problems


def test_interface_fails_on_wrong_bundle_or_mode(tmp_path):
    ptr = next(a for a in ARGS if a.kind == "ptr")
    scalar = next(a for a in ARGS if a.kind == "u32")
    text = top_source(
        edit=lambda t: t.replace(f"bundle={ptr.bundle}", "bundle=gmem0").replace(
            f"mode=s_axilite port={scalar.name}", f"mode=ap_none port={scalar.name}"
        )
    )
    problems = interface_problems(tmp_path, text)
    assert any(ptr.name in p and "bundle" in p for p in problems), problems
    assert any(scalar.name in p and "s_axilite" in p for p in problems), problems


def test_interface_pragmas_in_csim_only_code_do_not_count(tmp_path):
    name = ARGS[0].name
    text = top_source(
        edit=lambda t: t.replace(
            f"#pragma HLS INTERFACE mode=m_axi port={name} ",
            f"#ifndef __SYNTHESIS__\n#pragma HLS INTERFACE mode=m_axi port={name} ",
        ).replace("offset=slave\n", "offset=slave\n#endif\n", 1)
    )
    problems = interface_problems(tmp_path, text)
    assert any(f"port={name}" in p for p in problems), problems


def test_interface_fails_when_top_is_missing(tmp_path):
    problems = interface_problems(tmp_path, "int other(int a) { return a; }\n")
    assert problems == [f"top function `{TOP}` not defined here"]


# ---------------------------------------------------------------------------
# Rules over the call graph: one-instance units, statics under DATAFLOW.


def program_rules(tmp_path: Path, files: dict[str, str]) -> list[tuple[str, str, int]]:
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    sources = [guard.Source.read(tmp_path / n) for n in files]
    return sorted((v.rule, v.path.name, v.line) for v in guard.check_program(sources))


UNIT = "inline void linear_unit(int c) {\n#pragma HLS INLINE off\n}\n"


def test_the_kernel_has_one_linear_unit_call_and_no_static_under_dataflow():
    files = guard.source_files([HLS])
    found = guard.check_program([guard.Source.read(f) for f in files])
    assert not found, "\n" + "\n".join(map(str, found))
    code = "\n".join(guard.Source.read(f).code for f in files)  # comments blanked
    calls = re.findall(r"(?<!void )\blinear_unit\s*\(", code)  # call sites, not the definition
    assert len(calls) == 1


def test_a_linear_unit_call_outside_its_owner_is_flagged(tmp_path):
    found = program_rules(
        tmp_path,
        {
            "linear.h": UNIT,
            "top.cpp": "void linear_lane() {\n  linear_unit(1);\n}\n"
            "void experts_group() {\n  linear_unit(2);\n}\n",
        },
    )
    assert found == [("unit-owner", "top.cpp", 5)]


def test_a_second_call_site_in_the_owner_is_flagged(tmp_path):
    found = program_rules(
        tmp_path,
        {"top.cpp": UNIT + "void linear_lane(bool a) {\n  linear_unit(1);\n  linear_unit(2);\n}\n"},
    )
    assert found == [("unit-owner", "top.cpp", 6)]


DATAFLOW = (
    "void lanes() {\n#pragma HLS DATAFLOW\n  attention_lane();\n  linear_lane();\n}\n"
    "void edgemoe_top() {\n  static int buffers[4];\n  lanes();\n}\n"
)


def test_a_static_in_a_dataflow_process_or_below_it_is_flagged(tmp_path):
    found = program_rules(
        tmp_path,
        {
            "units.h": "inline int& state() {\n  static int s = 0;\n  return s;\n}\n"
            "void attention_lane() {\n  static int rows[8];\n}\n"
            "void linear_lane() {\n  state() = 1;\n}\n",
            "top.cpp": DATAFLOW,
        },
    )
    assert found == [("dataflow-static", "units.h", 2), ("dataflow-static", "units.h", 6)]


def test_statics_outside_the_region_and_constant_tables_pass(tmp_path):
    found = program_rules(
        tmp_path,
        {
            "units.h": "void attention_lane() {\n  static const int rom[2] = {1, 2};\n"
            '  static_assert(sizeof(rom) == 8, "two");\n  int x = static_cast<int>(rom[0]);\n}\n'
            "void linear_lane() {\n  static constexpr int K = 3;\n}\n",
            "top.cpp": DATAFLOW,
        },
    )
    assert found == []


def test_the_guard_flags_the_kernel_before_issue_15(tmp_path):
    """The shape the review found: callers of the unit beside its owner, prefetch statics."""
    found = program_rules(
        tmp_path,
        {
            "linear.h": "inline Prefetch& linear_prefetch() {\n  static Prefetch p;\n"
            "  return p;\n}\n"
            "inline void linear_unit(int c) {\n  linear_prefetch().count = c;\n}\n",
            "top.cpp": "void embed_image() {\n  linear_unit(0);\n}\n"
            "void linear_lane() {\n  embed_image();\n  linear_unit(1);\n}\n"
            "void attention_lane() {\n}\n" + DATAFLOW.split("void edgemoe_top")[0],
        },
    )
    assert ("unit-owner", "top.cpp", 2) in found
    assert ("dataflow-static", "linear.h", 2) in found


# ---------------------------------------------------------------------------
# run-time-bank: an unrolled lane offset by a run-time value (issue 15, item 2).

PIPE = "#pragma HLS PIPELINE II = 1\n"


@pytest.mark.parametrize(
    "body",
    [
        # the side move's shape: a bus word's lanes at a run-time column
        "  for (int l = 0; l < 4; ++l) {\n    h[c0 + l] = v[l];\n  }\n",
        # the linear epilogue's shape: the column held in a variable first
        "  for (int o = 0; o < LIN_OUT; ++o) {\n    const int col = ot * LIN_OUT + o;\n"
        "    wide[col] = 0;\n  }\n",
        # the K/V fetch's shape: a product term
        "  for (int i = 0; i < PART; ++i) {\n    k[i] = qkv[part * PART + i];\n  }\n",
    ],
)
def test_a_runtime_lane_offset_inside_a_pipeline_is_flagged(tmp_path, body):
    code = f"void f(int c0, int ot, int part) {{\nrows:\n  for (int w = 0; w < 8; ++w) {{\n{PIPE}"
    code += body.replace("  for", "  lanes:\n  for") + "  }\n}\n"
    found = program_rules(tmp_path, {"k.h": code})
    assert [r for r, _, _ in found] == ["run-time-bank"], found


def test_a_runtime_lane_offset_in_a_function_a_pipeline_calls_is_flagged(tmp_path):
    code = (
        "inline void group(const int* x, int d0, int& s) {\nlanes:\n"
        "  for (int l = 0; l < 12; ++l) {\n    s += x[d0 + l];\n  }\n}\n"
        "void rows(const int* x, int& s) {\nrow_loop:\n  for (int c = 0; c < 16; ++c) {\n"
        f"{PIPE}    group(x, c * 12, s);\n  }}\n}}\n"
    )
    assert program_rules(tmp_path, {"ln.h": code}) == [("run-time-bank", "ln.h", 4)]


def test_an_unrolled_loop_with_unroll_pragma_is_checked_too(tmp_path):
    code = (
        "void f(int* a, int base) {\nlanes:\n  for (int l = 0; l < 4; ++l) {\n"
        "#pragma HLS UNROLL\n    a[base + l] = 0;\n  }\n}\n"
    )
    assert program_rules(tmp_path, {"u.h": code}) == [("run-time-bank", "u.h", 5)]


def test_static_banks_bound_checks_and_annotated_lines_pass(tmp_path):
    code = (
        "void f(int* w, int* a, int q0, int c0, int n, int blk) {\nrows:\n"
        f"  for (int r = 0; r < n; ++r) {{\n{PIPE}"
        # both indices unrolled: a constant after unrolling
        "  mac_in:\n    for (int i = 0; i < LIN_IN; ++i) {\n"
        "    mac_out:\n      for (int o = 0; o < LIN_OUT; ++o) {\n"
        "        a[o] += w[i * LIN_OUT + o];\n      }\n    }\n"
        # a bound check is no index; the helpers put the bank in the unrolled index
        "  units:\n    for (int u = 0; u < P; ++u) {\n      if (q0 + r * P + u < N) {\n"
        "        a[u] = 1;\n      }\n    }\n"
        "    load_lanes<B, 4, 4>(a, c0, 4, w);\n"
        # a reasoned exemption on the line
        "  lanes:\n    for (int l = 0; l < 4; ++l) {\n"
        "      a[blk * 4 + l] = 0;  // bank: l, a is cyclic 4\n    }\n"
        "  }\n}\n"
    )
    assert program_rules(tmp_path, {"ok.h": code}) == []


def test_the_kernel_reaches_every_run_time_column_through_the_bank_helpers():
    files = guard.source_files([HLS])
    found = guard.check_runtime_banks([guard.Source.read(f) for f in files])
    assert not found, "\n" + "\n".join(map(str, found))


def test_every_accumulator_width_and_profile_constant_the_header_emits_is_read():
    """No generated constant the kernel never reads (issue 16: ACC_* and PROFILE_ID)."""
    header = (HLS / "include" / "edgemoe" / "params_default.h").read_text()
    emitted = re.findall(r"constexpr int ((?:ACC_\w+_BITS)|PROFILE_ID) =", header)
    assert emitted
    kernel = "\n".join(
        guard.Source.read(f).code for f in guard.source_files([HLS]) if f.name != "params_default.h"
    )
    unread = [n for n in emitted if not re.search(rf"\b{n}\b", kernel)]
    assert not unread, unread
