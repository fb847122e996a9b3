"""Synthesisability guard for the HLS C++ (docs/design.md).

Scans the kernel sources (``hls/src`` and ``hls/include``) for constructs Vitis HLS
cannot synthesise or that the project rules forbid, and checks the top function's
interface pragmas against the argument list in :mod:`edgemoe.host.contracts.kernel`::

    python scripts/hls_guard.py hls          # prints file:line: [rule] message

Rules (code under ``#ifndef __SYNTHESIS__``, or the ``#else`` of
``#ifdef __SYNTHESIS__``, is C-sim only and exempt from all of them):

``heap``        ``new``, ``delete``, ``malloc``/``calloc``/``realloc``/``free``
``stl``         STL containers, ``std::string``, ``std::function``, smart pointers
``math``        ``<cmath>``/``<math.h>``/``hls_math.h`` and ``std::``/``hls::`` math calls
``exception``   ``throw``, ``try``, ``catch``
``recursion``   a function whose body calls itself by name (a call with explicit
                template arguments inside a template is compile-time recursion and
                allowed)
``loop-label``  a ``for``/``while``/``do`` loop without a C++ label right before it
``interface``   the top function's arguments differ from ``ARGS``, or an argument
                (or ``return``) has no ``#pragma HLS INTERFACE ... port=<name>`` of
                the kind the control contract needs (docs/design.md)

Rules over all the files together (the call graph of the kernel):

``unit-owner``      a call of a one-instance unit (``OWNED_UNITS``: ``linear_unit``)
                    outside the one function that owns it (``linear_lane``), or a second
                    call site there: each call site of a function is an RTL instance
                    unless an ALLOCATION shares them, so one call site is one engine by
                    construction (UG1399 "pragma HLS allocation")
``dataflow-static`` a function ``static`` variable declared in a function that a
                    DATAFLOW process reaches (the functions called in the body of a
                    function with ``#pragma HLS DATAFLOW``, and everything they call):
                    state shared that way is invisible to the dataflow checker and can
                    link two processes or two calls (UG1448 214-169); pass it explicitly
``run-time-bank``   in a loop Vitis unrolls (``#pragma HLS UNROLL``, a loop inside a
                    pipelined loop, or any loop of a function called from a pipelined
                    loop's body: UG1399 "pragma HLS pipeline" unrolls the loops below it),
                    the lane variable offset by a run-time (lower-case) value, as in
                    ``row[c0 + l]`` or ``col = ot * LIN_OUT + o``: in a cyclic-partitioned
                    buffer that lane's bank is known only at run time (UG1399 "pragma HLS
                    array_partition"; the II misses of UG1448 200-885 / 200-880). Access
                    such rows through ``load_lanes``/``store_lanes`` (``banked.h``: the
                    unrolled index is the bank), or state on the line, in a ``// bank:``
                    comment, why the bank is a constant there (e.g. the offset is a
                    multiple of the factor)

The rules above are regex based: comments and string literals are blanked first (line
numbers kept), then each rule runs on what remains.

Rules of the HLS review's classes of error (``scan`` and the command line; the AST ones
parse the sources with clang through libclang's Python bindings, see ``hls_ast.py``):

``dependence-proof`` (text) a ``#pragma HLS DEPENDENCE ... false`` without a stated proof:
                    a ``// proof:`` comment on the pragma's line, or in the block of
                    ``//`` lines right above it (other DEPENDENCE pragmas may stand
                    between), that names the pragma's variable. UG1399 "pragma HLS
                    dependence": a false dependence that is not false builds wrong
                    hardware, so the reason it holds is written where it is claimed
``port-budget``     (AST) an array without a complete partition accessed more than
                    2 x II times per iteration of a pipelined loop
``const-division``  (AST) a run-time ``/`` or ``%`` by a constant that is not a power of
                    two inside a pipelined loop: in an unrolled lane (a divider per
                    lane) always; one per iteration unless a ``// div:`` comment on its
                    line says why it is acceptable
``lane-reload``     (AST) an array element indexed by no unrolled lane (a per-row value)
                    read inside an unrolled loop of a pipelined loop

The AST rules need the project's venv (the pinned ``libclang`` wheel, hls4ml's ap_types
headers) and g++'s builtin headers; without them, or when clang cannot parse the
sources, the guard stops with one line and exit status 2 rather than check half.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_SUFFIXES = (".h", ".hh", ".hpp", ".cpp", ".cc", ".cxx")
TOP_FILE = Path("src") / "edgemoe_top.cpp"


@dataclass(frozen=True)
class Violation:
    """One rule broken at one place."""

    path: Path
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


# ---------------------------------------------------------------------------
# Text preparation: comments and literals out, C-sim-only blocks out.


def strip_comments(text: str, *, blank_strings: bool) -> str:
    """Blank comments (and, if asked, string/char literals), keeping every newline."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c == "/" and nxt == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            if blank_strings:
                out.append(c + " " * max(j - i - 2, 0) + (c if j - i >= 2 else ""))
            else:
                out.append(text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


_SYN = r"__SYNTHESIS__"
_IF_NOT_SYN = re.compile(
    rf"^\s*#\s*(?:ifndef\s+{_SYN}\b|if\s+!\s*defined\s*\(?\s*{_SYN}\s*\)?\s*$)"
)
_IF_SYN = re.compile(rf"^\s*#\s*(?:ifdef\s+{_SYN}\b|if\s+defined\s*\(?\s*{_SYN}\s*\)?\s*$)")
_IF_ANY = re.compile(r"^\s*#\s*if(?:n?def)?\b")
_ELIF = re.compile(r"^\s*#\s*elif\b")
_ELSE = re.compile(r"^\s*#\s*else\b")
_ENDIF = re.compile(r"^\s*#\s*endif\b")


def drop_csim_only(text: str) -> str:
    """Blank the lines that only C-sim compiles (``#ifndef __SYNTHESIS__`` branches)."""
    lines = text.split("\n")
    # Each frame: [kind, exempt_now]; kind is "not_syn", "syn" or "other".
    stack: list[list] = []
    out: list[str] = []
    for line in lines:
        if _IF_NOT_SYN.match(line):
            stack.append(["not_syn", True])
            out.append("")
            continue
        if _IF_SYN.match(line):
            stack.append(["syn", False])
            out.append("")
            continue
        if _IF_ANY.match(line):
            stack.append(["other", False])
        elif _ELIF.match(line) and stack:
            stack[-1][1] = False
        elif _ELSE.match(line) and stack:
            kind = stack[-1][0]
            stack[-1][1] = {"not_syn": False, "syn": True}.get(kind, False)
            if kind != "other":
                out.append("")
                continue
        elif _ENDIF.match(line) and stack:
            kind = stack.pop()[0]
            if kind != "other":
                out.append("")
                continue
        exempt = any(frame[1] for frame in stack)
        out.append("" if exempt else line)
    return "\n".join(out)


@dataclass
class Source:
    """One file, prepared for scanning."""

    path: Path
    code: str  # comments, literals and C-sim-only blocks blanked
    directives: str  # comments and C-sim-only blocks blanked, literals kept
    raw: str = ""  # the text as written (for annotations in comments)

    @classmethod
    def read(cls, path: Path, text: str | None = None) -> Source:
        raw = path.read_text(encoding="utf-8", errors="replace") if text is None else text
        directives = drop_csim_only(strip_comments(raw, blank_strings=False))
        code = drop_csim_only(strip_comments(raw, blank_strings=True))
        return cls(path, code, directives, raw)

    def raw_line(self, line: int) -> str:
        lines = self.raw.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def line_of(self, offset: int) -> int:
        return self.code.count("\n", 0, offset) + 1


# ---------------------------------------------------------------------------
# Rules on single tokens.

_TOKEN_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("heap", re.compile(r"\bnew\b"), "heap allocation with new"),
    ("heap", re.compile(r"\bdelete\b"), "heap release with delete"),
    (
        "heap",
        re.compile(r"\b(?:std\s*::\s*)?(malloc|calloc|realloc|free)\s*\("),
        "C heap call",
    ),
    (
        "stl",
        re.compile(
            r"\bstd\s*::\s*(vector|array_view|map|multimap|list|forward_list|deque|string|"
            r"wstring|string_view|set|multiset|unordered_\w+|function|queue|priority_queue|"
            r"stack|shared_ptr|unique_ptr|weak_ptr)\b"
        ),
        "STL container / dynamic type",
    ),
    (
        "math",
        re.compile(
            r"\b(?:std|hls)\s*::\s*(exp|exp2|expm1|log|log2|log10|log1p|sqrt|rsqrt|cbrt|pow|"
            r"erf|erfc|tanh|sinh|cosh|sin|cos|tan|asin|acos|atan|atan2|floor|ceil|round|"
            r"lround|trunc|fabs|fmod|hypot|tgamma|lgamma|fma|ldexp|frexp|recip)\s*\("
        ),
        "library math function (use the edgemoe units, docs/numerics.md)",
    ),
    ("exception", re.compile(r"\bthrow\b"), "exception thrown"),
    ("exception", re.compile(r"\btry\s*\{"), "exception handler"),
    ("exception", re.compile(r"\bcatch\s*\("), "exception handler"),
)

_FORBIDDEN_INCLUDES = {
    "math": ("cmath", "math.h", "hls_math.h", "complex"),
    "stl": (
        "vector",
        "map",
        "list",
        "forward_list",
        "deque",
        "string",
        "set",
        "unordered_map",
        "unordered_set",
        "functional",
        "queue",
        "stack",
        "memory",
    ),
}
_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.MULTILINE)
_DELETED_FN = re.compile(r"=\s*delete\b")


def check_tokens(src: Source) -> list[Violation]:
    found: list[Violation] = []
    for m in _INCLUDE.finditer(src.directives):
        header = m.group(1).strip()
        for rule, names in _FORBIDDEN_INCLUDES.items():
            if header in names:
                line = src.directives.count("\n", 0, m.start()) + 1
                found.append(Violation(src.path, line, rule, f"#include <{header}>"))
    code_no_deleted = _DELETED_FN.sub(lambda m: " " * len(m.group(0)), src.code)
    for rule, pattern, message in _TOKEN_RULES:
        text = code_no_deleted if rule == "heap" else src.code
        for m in pattern.finditer(text):
            found.append(Violation(src.path, src.line_of(m.start()), rule, message))
    return found


# ---------------------------------------------------------------------------
# Loops need labels.

_LOOP = re.compile(r"\b(for|while|do)\b")
_NOT_LABELS = {"default", "public", "private", "protected"}


def _skip_back(code: str, i: int) -> int:
    """Index of the last significant character before ``i`` (preprocessor lines skipped)."""
    while i > 0:
        i -= 1
        if code[i].isspace():
            continue
        line_start = code.rfind("\n", 0, i) + 1
        if code[line_start:i].lstrip().startswith("#") or code[line_start] == "#":
            i = line_start
            continue
        return i
    return -1


def _matching(code: str, i: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at ``i`` (or len(code))."""
    depth = 0
    for j in range(i, len(code)):
        if code[j] == open_:
            depth += 1
        elif code[j] == close:
            depth -= 1
            if depth == 0:
                return j
    return len(code)


def _has_label(code: str, start: int) -> bool:
    j = _skip_back(code, start)
    if j < 0 or code[j] != ":" or (j > 0 and code[j - 1] == ":"):
        return False
    k = _skip_back(code, j)
    m = re.search(r"([A-Za-z_]\w*)$", code[: k + 1]) if k >= 0 else None
    if not m or m.group(1) in _NOT_LABELS:
        return False
    before = _skip_back(code, m.start())
    # `case X:` and `a ? b : c` are not labels; `::` handled above.
    if before >= 0 and code[before] == "?":
        return False
    prev_word = re.search(r"(\w+)\s*$", code[: m.start()])
    return not (prev_word and prev_word.group(1) == "case")


def check_loop_labels(src: Source) -> list[Violation]:
    code = src.code
    found: list[Violation] = []
    for m in _LOOP.finditer(code):
        kw = m.group(1)
        if kw == "while":
            # The tail of a do-while is not a loop of its own.
            paren = code.find("(", m.end())
            if paren >= 0 and not code[m.end() : paren].strip():
                close = _matching(code, paren, "(", ")")
                after = code[close + 1 :].lstrip()
                if after.startswith(";"):
                    continue
        if not _has_label(code, m.start()):
            found.append(
                Violation(
                    src.path, src.line_of(m.start()), "loop-label", f"`{kw}` loop has no label"
                )
            )
    return found


# ---------------------------------------------------------------------------
# Recursion: a function body that calls its own name.

_NON_FUNCTIONS = {
    "if",
    "for",
    "while",
    "switch",
    "catch",
    "return",
    "sizeof",
    "alignof",
    "decltype",
    "static_assert",
    "do",
    "else",
    "new",
    "delete",
    "operator",
}
_FUNC_HEAD = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_QUALIFIERS = re.compile(r"^(?:\s*(?:const|noexcept|override|final|volatile|&|&&))*\s*")


@dataclass(frozen=True)
class Function:
    name: str
    head: int  # offset of the name
    body_start: int  # offset of '{'
    body_end: int  # offset of the matching '}'
    template_params: tuple[str, ...] | None  # names, or None when not a template


def find_functions(code: str) -> list[Function]:
    """Function definitions: ``name(params) [qualifiers] [-> ret] {``."""
    functions: list[Function] = []
    for m in _FUNC_HEAD.finditer(code):
        name = m.group(1)
        if name in _NON_FUNCTIONS:
            continue
        paren = m.end() - 1
        close = _matching(code, paren, "(", ")")
        if close >= len(code):
            continue
        rest = code[close + 1 :]
        q = _QUALIFIERS.match(rest)
        tail = rest[q.end() :] if q else rest
        arrow = re.match(r"->\s*[\w:<>,\s*&]+?(?=\{)", tail)
        if arrow:
            tail = tail[arrow.end() :]
        ctor_init = re.match(r":\s*[^;{}]*\{", tail)  # constructor initialiser lists
        if not (tail.startswith("{") or ctor_init):
            continue
        brace = close + 1 + (len(rest) - len(tail)) + (ctor_init.end() - 1 if ctor_init else 0)
        # A call inside an expression (`x = f(a) {` cannot happen) - but `} else if (c) {`
        # was filtered by the keyword list; lambdas `[](...) {` have no name.
        before = code[: m.start()].rstrip()
        if before.endswith((".", "->", "=", "(", ",", "return")):
            continue
        end = _matching(code, brace, "{", "}")
        stmt_start = max(code.rfind(";", 0, m.start()), code.rfind("}", 0, m.start()))
        stmt_start = max(stmt_start, code.rfind("{", 0, m.start()))
        tmpl = re.search(r"\btemplate\s*<(.*)>", code[stmt_start + 1 : m.start()], re.S)
        params = None
        if tmpl:
            params = tuple(
                p.split("=")[0].split()[-1] for p in tmpl.group(1).split(",") if p.split()
            )
        functions.append(Function(name, m.start(), brace, end, params))
    return functions


def check_recursion(src: Source) -> list[Violation]:
    code = src.code
    found: list[Violation] = []
    for fn in find_functions(code):
        body = code[fn.body_start + 1 : fn.body_end]
        call = re.compile(rf"(?<![\w.>])(?<!::){re.escape(fn.name)}\s*(<[^;{{}}()]*>)?\s*\(")
        for m in call.finditer(body):
            targs = m.group(1)
            if fn.template_params is not None and targs:
                same = [a.strip() for a in targs[1:-1].split(",")] == list(fn.template_params)
                if not same:
                    continue  # compile-time recursion to another instantiation
            offset = fn.body_start + 1 + m.start()
            found.append(
                Violation(
                    src.path,
                    src.line_of(offset),
                    "recursion",
                    f"`{fn.name}` calls itself (no recursion in synthesisable code)",
                )
            )
            break
    return found


# ---------------------------------------------------------------------------
# The top function's interface.

_PRAGMA_INTERFACE = re.compile(r"^\s*#\s*pragma\s+HLS\s+INTERFACE\b(.*)$", re.I | re.M)


@dataclass(frozen=True)
class ExpectedArg:
    """What the guard needs to know of an argument of the top function."""

    name: str
    kind: str  # "ptr" or "u32"
    bundle: str | None


def load_kernel_args() -> tuple[str, tuple[ExpectedArg, ...]]:
    """``(TOP, ARGS)`` from ``contracts.kernel`` (imported, else read from its file)."""
    try:
        from edgemoe.host.contracts import kernel  # noqa: PLC0415
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "_edgemoe_kernel", ROOT / "host" / "kernel.py"
        )
        if spec is None or spec.loader is None:
            raise
        kernel = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = kernel
        spec.loader.exec_module(kernel)
    args = tuple(ExpectedArg(a.name, a.kind, a.bundle) for a in kernel.ARGS)
    return kernel.TOP, args


def _param_names(params: str) -> list[str]:
    names: list[str] = []
    depth = 0
    current: list[str] = []
    parts: list[str] = []
    for ch in params:
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    for part in parts:
        decl = part.split("=")[0]
        decl = re.sub(r"\[[^\]]*\]", "", decl).strip()
        if not decl or decl == "void":
            continue
        m = re.search(r"([A-Za-z_]\w*)\s*$", decl)
        if m:
            names.append(m.group(1))
    return names


def _pragma_options(text: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    words = re.sub(r"\s*=\s*", "=", text).split()  # clang-format writes `port = x`
    for w in words:
        if "=" in w:
            k, v = w.split("=", 1)
            opts[k.strip().lower()] = v.strip()
        else:
            opts.setdefault("mode", w.strip().lower())  # legacy `INTERFACE m_axi port=x`
    if "mode" in opts:
        opts["mode"] = opts["mode"].lower()
    return opts


def check_top_interface(src: Source, top: str, args: Sequence[ExpectedArg]) -> list[Violation]:
    """Every argument of ``top`` (and ``return``) has the interface pragma it needs."""
    code = src.code
    fns = [f for f in find_functions(code) if f.name == top]
    if not fns:
        return [Violation(src.path, 1, "interface", f"top function `{top}` not defined here")]
    fn = fns[-1]
    paren = code.find("(", fn.head)
    close = _matching(code, paren, "(", ")")
    line = src.line_of(fn.head)
    found: list[Violation] = []
    names = _param_names(code[paren + 1 : close])
    expected = [a.name for a in args]
    if names != expected:
        found.append(
            Violation(
                src.path,
                line,
                "interface",
                f"`{top}` arguments {names} differ from contracts.kernel.ARGS {expected}",
            )
        )
    pragmas: dict[str, list[dict[str, str]]] = {}
    body = re.sub(r"\\\n", " ", src.directives[fn.body_start : fn.body_end])  # join `\` lines
    for m in _PRAGMA_INTERFACE.finditer(body):
        opts = _pragma_options(m.group(1))
        if "port" in opts:
            pragmas.setdefault(opts["port"], []).append(opts)
    for arg in args:
        have = pragmas.get(arg.name, [])
        modes = {p.get("mode") for p in have}
        if not have:
            found.append(
                Violation(
                    src.path, line, "interface", f"no `#pragma HLS INTERFACE port={arg.name}`"
                )
            )
        elif arg.kind == "ptr":
            maxi = [p for p in have if p.get("mode") == "m_axi"]
            if not maxi:
                found.append(
                    Violation(src.path, line, "interface", f"pointer `{arg.name}` is not m_axi")
                )
            for p in maxi:
                if arg.bundle and p.get("bundle") != arg.bundle:
                    found.append(
                        Violation(
                            src.path,
                            line,
                            "interface",
                            f"`{arg.name}` bundle={p.get('bundle')}, ARGS says {arg.bundle}",
                        )
                    )
                if p.get("offset", "slave") != "slave":
                    found.append(
                        Violation(
                            src.path, line, "interface", f"`{arg.name}` m_axi offset is not slave"
                        )
                    )
        elif "s_axilite" not in modes:
            found.append(
                Violation(src.path, line, "interface", f"scalar `{arg.name}` is not s_axilite")
            )
    ret_modes = {p.get("mode") for p in pragmas.get("return", [])}
    if not ret_modes:
        found.append(
            Violation(src.path, line, "interface", "no `#pragma HLS INTERFACE port=return`")
        )
    elif "s_axilite" not in ret_modes:
        found.append(Violation(src.path, line, "interface", "`return` is not on s_axilite"))
    if ret_modes - {"s_axilite", "ap_ctrl_hs", None}:
        found.append(
            Violation(
                src.path, line, "interface", f"block protocol must be ap_ctrl_hs, got {ret_modes}"
            )
        )
    return found


# ---------------------------------------------------------------------------
# The call graph: one-instance units and statics under DATAFLOW.

#: A unit that must be built once, and the only function that may call it.
OWNED_UNITS = {"linear_unit": "linear_lane"}

_CALL = re.compile(r"(?<![\w.>])(?<!::)([A-Za-z_]\w*)\s*(?:<[^;{}()]*>)?\s*\(")
_STATIC = re.compile(r"\bstatic\s+(?!const\b|constexpr\b)([^;=({]*)")
_DATAFLOW = re.compile(r"^\s*#\s*pragma\s+HLS\s+dataflow\b", re.I | re.M)


@dataclass(frozen=True)
class Defined:
    src: Source
    fn: Function

    @property
    def body(self) -> str:
        return self.src.code[self.fn.body_start + 1 : self.fn.body_end]


def _definitions(sources: Sequence[Source]) -> dict[str, list[Defined]]:
    defs: dict[str, list[Defined]] = {}
    for src in sources:
        for fn in find_functions(src.code):
            defs.setdefault(fn.name, []).append(Defined(src, fn))
    return defs


def _calls(d: Defined, names: Iterable[str]) -> list[tuple[str, int]]:
    """(callee, offset in the file) of every call in d's body to one of ``names``."""
    known = set(names)
    out = []
    for m in _CALL.finditer(d.body):
        if m.group(1) in known and m.group(1) != d.fn.name:
            out.append((m.group(1), d.fn.body_start + 1 + m.start()))
    return out


def check_unit_owners(
    sources: Sequence[Source], owners: dict[str, str] | None = None
) -> list[Violation]:
    owners = OWNED_UNITS if owners is None else owners
    found: list[Violation] = []
    defs = _definitions(sources)
    for unit, owner in owners.items():
        sites: list[tuple[Defined, int]] = []
        for ds in defs.values():
            for d in ds:
                sites += [(d, off) for name, off in _calls(d, [unit]) if name == unit]
        for d, off in sites:
            if d.fn.name != owner:
                found.append(
                    Violation(
                        d.src.path,
                        d.src.line_of(off),
                        "unit-owner",
                        f"`{unit}` called from `{d.fn.name}`: only `{owner}` calls it "
                        "(one call site, one instance)",
                    )
                )
        in_owner = [(d, off) for d, off in sites if d.fn.name == owner]
        for d, off in in_owner[1:]:
            found.append(
                Violation(
                    d.src.path,
                    d.src.line_of(off),
                    "unit-owner",
                    f"a second call site of `{unit}` in `{owner}` (one call site, one instance)",
                )
            )
    return found


def check_dataflow_statics(sources: Sequence[Source]) -> list[Violation]:
    defs = _definitions(sources)
    found: dict[tuple[str, int], Violation] = {}
    for ds in list(defs.values()):
        for region in ds:
            directives = region.src.directives[region.fn.body_start + 1 : region.fn.body_end]
            if not _DATAFLOW.search(directives):
                continue
            for process, _ in _calls(region, defs):
                seen: set[str] = set()
                todo = [process]
                while todo:
                    name = todo.pop()
                    if name in seen:
                        continue
                    seen.add(name)
                    for d in defs.get(name, []):
                        for m in _STATIC.finditer(d.body):
                            off = d.fn.body_start + 1 + m.start()
                            key = (str(d.src.path), d.src.line_of(off))
                            found.setdefault(
                                key,
                                Violation(
                                    d.src.path,
                                    key[1],
                                    "dataflow-static",
                                    f"function static `{' '.join(m.group(1).split())}` in "
                                    f"`{name}`, reached from DATAFLOW process `{process}` of "
                                    f"`{region.fn.name}`: pass it explicitly",
                                ),
                            )
                        todo += [c for c, _ in _calls(d, defs)]
    return list(found.values())


# ---------------------------------------------------------------------------
# Run-time banks: an unrolled lane index offset by a run-time value.

_FOR_HEAD = re.compile(r"\bfor\s*\(\s*(?:const\s+)?(?:int|unsigned|uint32_t|size_t)\s+(\w+)\s*=")
_PIPELINE = re.compile(r"#\s*pragma\s+HLS\s+pipeline\b", re.I)
_UNROLL = re.compile(r"#\s*pragma\s+HLS\s+unroll\b", re.I)
_LOOP_KW = re.compile(r"\b(?:for|while|do)\b")
_TERM = r"[A-Za-z_][\w.]*(?:\s*\*\s*[A-Za-z_][\w.]*)*"
BANK_NOTE = "// bank:"


@dataclass(frozen=True)
class Loop:
    src: Source
    var: str
    start: int  # offset of `for`
    body_start: int
    body_end: int
    pipelined: bool
    unroll: bool


def _loops(src: Source) -> list[Loop]:
    code, found = src.code, []
    for m in _FOR_HEAD.finditer(code):
        paren = code.find("(", m.start())
        close = _matching(code, paren, "(", ")")
        brace = close + 1
        while brace < len(code) and code[brace].isspace():
            brace += 1
        if brace >= len(code) or code[brace] != "{":
            continue
        end = _matching(code, brace, "{", "}")
        nested = _LOOP_KW.search(code, brace + 1, end)
        head = src.directives[brace + 1 : nested.start() if nested else end]
        found.append(
            Loop(
                src,
                m.group(1),
                m.start(),
                brace,
                end,
                bool(_PIPELINE.search(head)),
                bool(_UNROLL.search(head)),
            )
        )
    return found


def _runtime_names(term: str, static: set[str]) -> list[str]:
    names = re.findall(r"[A-Za-z_][\w.]*", term)
    return [n for n in names if n.split(".")[0] not in static and n[0].islower()]


def _offset_terms(body: str, var: str) -> list[tuple[int, str]]:
    """(offset in body, the run-time term) of every `term +/- <var term>` or the other way."""
    out = []
    for m in re.finditer(rf"(?<![\w.]){re.escape(var)}\b", body):
        # the product term holding var
        left = re.search(rf"(?:{_TERM}\s*\*\s*)?$", body[: m.start()])
        right = re.match(r"(?:\s*\*\s*[A-Za-z_][\w.]*)*", body[m.end() :])
        lo = left.start() if left else m.start()
        hi = m.end() + (right.end() if right else 0)
        before = re.search(rf"({_TERM})\s*[-+]\s*$", body[:lo])
        after = re.match(rf"\s*[-+]\s*({_TERM})", body[hi:])
        tail = body[hi + (after.end() if after else 0) :]
        if re.match(r"\s*(?:<|>|==|!=)", tail):
            continue  # a bound check, not an index
        for t in (before, after):
            if t and not re.match(r"\s*\(", body[t.end(1) :]):
                out.append((m.start(), t.group(1)))
    return out


def check_runtime_banks(sources: Sequence[Source]) -> list[Violation]:
    defs = _definitions(sources)
    loops = {id(s): _loops(s) for s in sources}
    # functions whose loops a pipeline unrolls: called from a pipelined loop's body
    reached: set[str] = set()
    todo: list[str] = []
    for s in sources:
        for lp in loops[id(s)]:
            if lp.pipelined:
                body = s.code[lp.body_start + 1 : lp.body_end]
                todo += [m.group(1) for m in _CALL.finditer(body) if m.group(1) in defs]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        for d in defs[name]:
            todo += [c for c, _ in _calls(d, defs)]
    fn_of: dict[tuple[int, int], str] = {}
    for name, ds in defs.items():
        for d in ds:
            fn_of[(id(d.src), d.fn.body_start)] = name
    found: dict[tuple[str, int], Violation] = {}
    for s in sources:
        ls = loops[id(s)]
        fns = [d.fn for ds in defs.values() for d in ds if d.src is s]
        for lp in ls:
            outer = [o for o in ls if o.body_start < lp.start < o.body_end]
            in_fn = [f for f in fns if f.body_start < lp.start < f.body_end]
            unrolled = (
                lp.unroll
                or any(o.pipelined for o in outer)
                or any(f.name in reached for f in in_fn)
            )
            if not unrolled:
                continue
            static = {lp.var} | {
                o.var
                for o in outer
                if o.unroll
                or any(p.pipelined for p in ls if p.body_start < o.start < p.body_end)
                or any(f.name in reached for f in in_fn)
            }
            static |= {i.var for i in ls if lp.body_start < i.start < lp.body_end}
            body = s.code[lp.body_start + 1 : lp.body_end]
            for off, term in _offset_terms(body, lp.var):
                names = _runtime_names(term, static)
                if not names:
                    continue
                line = s.line_of(lp.body_start + 1 + off)
                if BANK_NOTE in s.raw_line(line):
                    continue
                found.setdefault(
                    (str(s.path), line),
                    Violation(
                        s.path,
                        line,
                        "run-time-bank",
                        f"unrolled lane `{lp.var}` offset by run-time `{names[0]}`: its bank "
                        "in a cyclic-partitioned buffer is known only at run time (UG1399 "
                        "array_partition); go through load_lanes/store_lanes (banked.h) or "
                        f"say why the bank is fixed in a `{BANK_NOTE}` comment on the line",
                    ),
                )
    return list(found.values())


# ---------------------------------------------------------------------------
# DEPENDENCE ... false needs a stated proof.

PROOF_NOTE = "proof:"
_DEPENDENCE = re.compile(r"^\s*#\s*pragma\s+HLS\s+DEPENDENCE\b(.*)$", re.I)
_FALSE = re.compile(r"\b(?:dependent\s*=\s*)?false\b", re.I)


def check_dependence_proofs(src: Source) -> list[Violation]:
    """Every ``DEPENDENCE ... false`` has a ``// proof:`` naming its variable (see above)."""
    found: list[Violation] = []
    raw = src.raw.split("\n")
    directives = src.directives.split("\n")
    for i, line in enumerate(directives):
        m = _DEPENDENCE.match(line)
        if not m or not _FALSE.search(m.group(1)):
            continue
        var = _pragma_options(m.group(1)).get("variable", "")
        comment = raw[i].split("//", 1)[1] if "//" in raw[i] else ""
        block: list[str] = [comment] if PROOF_NOTE in comment else []
        j = i - 1
        while not block and j >= 0:
            text = raw[j].strip()
            if text.startswith("//"):
                block.insert(0, text)
                k = j - 1
                while k >= 0 and raw[k].strip().startswith("//"):
                    block.insert(0, raw[k].strip())
                    k -= 1
                break
            if not _DEPENDENCE.match(directives[j]):
                break
            j -= 1
        text = " ".join(block)
        if PROOF_NOTE not in text:
            why = "no `// proof:` comment on or right above it"
        elif var and not re.search(rf"\b{re.escape(var.split('.')[-1])}\b", text):
            why = f"the `// proof:` above it does not name `{var}`"
        else:
            continue
        found.append(
            Violation(
                src.path,
                i + 1,
                "dependence-proof",
                f'DEPENDENCE on `{var or "?"}` declared false with {why} (UG1399 "pragma HLS '
                'dependence": a false dependence that is not false builds wrong hardware); '
                "state why it holds, or give the true distance",
            )
        )
    return found


def check_review(files: Sequence[Path], top: str | None = None) -> list[Violation]:
    """The review's classes of error: DEPENDENCE proofs (text) and the AST rules of
    ``hls_ast`` (port budgets, constant divisions, per-lane reloads)."""
    found = [v for f in files for v in check_dependence_proofs(Source.read(f))]
    ast = load_ast()
    why = ast.available()
    if why is not None:
        raise GuardError(f"the AST rules cannot run: {why}")
    try:
        findings = ast.analyse(list(files), lambda p: Source.read(p).directives, top)
    except ast.ParseError as e:
        raise GuardError(str(e)) from None
    for path, line, rule, message in findings:
        found.append(Violation(path, line, rule, message))
    return found


class GuardError(RuntimeError):
    """The guard cannot check what it was asked to."""


def load_ast():
    """``hls_ast`` beside this script (scripts/ is no package)."""
    name = "hls_ast"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("hls_ast.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def check_program(sources: Sequence[Source]) -> list[Violation]:
    """The rules over all the files together."""
    return (
        check_unit_owners(sources) + check_dataflow_statics(sources) + check_runtime_banks(sources)
    )


# ---------------------------------------------------------------------------
# Driver.


def source_files(paths: Iterable[Path]) -> list[Path]:
    """The files to scan: ``<hls>/src`` and ``<hls>/include`` of an hls folder, else all."""
    files: list[Path] = []
    for p in paths:
        if p.is_file():
            files.append(p)
            continue
        roots = [p / "src", p / "include"]
        roots = [r for r in roots if r.is_dir()] or [p]
        for r in roots:
            files.extend(f for f in sorted(r.rglob("*")) if f.suffix in SOURCE_SUFFIXES)
    return sorted(set(files))


def scan_file(path: Path) -> list[Violation]:
    """All per-file rules on one file."""
    src = Source.read(path)
    return check_tokens(src) + check_loop_labels(src) + check_recursion(src)


def scan(
    paths: Sequence[Path],
    *,
    top_file: Path | None = None,
    kernel: tuple[str, Sequence[ExpectedArg]] | None = None,
    review: bool = True,
) -> list[Violation]:
    """Scan files and, when ``top_file`` exists, the top function's interface; with
    ``review``, the review rules too (:func:`check_review`, from the top function)."""
    found: list[Violation] = []
    files = source_files(paths)
    for f in files:
        found.extend(scan_file(f))
    found.extend(check_program([Source.read(f) for f in files]))
    top = None
    if top_file is not None and top_file.is_file():
        top, args = kernel if kernel is not None else load_kernel_args()
        found.extend(check_top_interface(Source.read(top_file), top, args))
    if review and files:
        found.extend(check_review(files, top))
    return sorted(found, key=lambda v: (str(v.path), v.line, v.rule))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / "hls"])
    parser.add_argument(
        "--top-file",
        type=Path,
        default=None,
        help="file defining the top function (default: <hls>/src/edgemoe_top.cpp)",
    )
    parser.add_argument(
        "--require-top", action="store_true", help="fail when the top file does not exist"
    )
    ns = parser.parse_args(argv)
    top_file = ns.top_file
    if top_file is None and ns.paths and ns.paths[0].is_dir():
        top_file = ns.paths[0] / TOP_FILE
    files = source_files(ns.paths)
    if not files:
        print(f"hls_guard: no HLS sources under {', '.join(map(str, ns.paths))}", file=sys.stderr)
        return 0
    try:
        found = scan(ns.paths, top_file=top_file)
    except GuardError as e:
        print(f"hls_guard: {e}", file=sys.stderr)
        return 2
    if top_file is not None and not top_file.is_file():
        msg = f"hls_guard: top file {top_file} not found; interface not checked"
        if ns.require_top:
            print(msg, file=sys.stderr)
            return 1
        print(msg, file=sys.stderr)
    for v in found:
        print(v)
    print(f"hls_guard: {len(files)} files, {len(found)} violations", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
