"""The HLS guard's rules that need a C++ front end (libclang's Python bindings).

:mod:`hls_guard` runs these beside its regular-expression rules. The sources are parsed
by clang as Vitis compiles them: C++14, the kernel's include path, the ap_types headers
(hls4ml's copy, or ``$XILINX_HLS/include``), and ``__SYNTHESIS__`` defined after those
headers, so the C-sim-only branches drop out. ``#pragma HLS`` lines, which clang does not
keep, are read from the text and tied to the loop or function whose body holds them
(ARRAY_PARTITION to the array it names: ``variable=buf_a.x`` as the access reaches it,
or a name declared in the pragma's own function).

From the top function (without one, from every function nothing calls) the call graph
is walked with each call's array arguments bound to the caller's arrays and each
template's arguments to their values, so an access inside a helper counts against the
array the caller passed, with the caller's partitioning. Inside each pipelined loop
(``#pragma HLS PIPELINE``; every loop below it is unrolled, UG1399 "pragma HLS
pipeline") one iteration is counted:

``port-budget``     an array that is not completely partitioned is accessed more than
                    2 x II times per iteration (a RAM or ROM has at most two ports:
                    UG1448 200-885 / 200-880). Accesses in the branches of one
                    ``if``/``?:`` or the cases of one ``switch`` share ports (the larger
                    branch counts); separate statements add up; a read-modify-write is
                    two. An access inside an unrolled loop counts once per lane, unless
                    the lane's index selects the bank on a partitioned dimension, or the
                    array is a constant table read at an address no lane changes (those
                    loads merge: nothing can store between them). A second read of the
                    same element by the same code, no write between, is one load.
``const-division``  ``/`` or ``%`` of a run-time value by a constant that is not a power of
                    two: Vitis builds a divider core or a magic-number multiplier per
                    instance, where a power of two is a shift. One whose dividend depends
                    on an unrolled lane is built once per lane and always fails; one per
                    iteration passes only with a ``// div:`` comment on its line saying
                    why it is acceptable (e.g. one narrow division per bank walk). A
                    dividend known to be a multiple of the divisor (``(ot * 24) / 24``)
                    folds and is not counted.
``lane-reload``     inside an unrolled loop, an element of a writable array whose index
                    depends on no unrolled lane (a per-row value such as ``token[e][r]``):
                    each lane loads it again (the loads of a writable array do not merge
                    across lanes), one port use each. Read it once before the lane loop.

Not counted (by construction): m_axi ports (``INTERFACE m_axi``), arrays declared inside
the pipelined region (new each iteration: with indices that unroll to constants Vitis
makes them registers), sub-arrays passed on (no access until indexed), pointers built
by arithmetic, partitions set outside the scanned sources, pipelined functions (only
pipelined loops are regions), and divisors it cannot evaluate (a template metafunction
other than ``Gcd<A, B>::value``, a ``constexpr`` function call): those are skipped
rather than guessed.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:  # the pinned wheel ships libclang.so
    import clang.cindex as ci
except ImportError:  # pragma: no cover - reported by available()
    ci = None

Finding = tuple[Path, int, str, str]  # path, line, rule, message
#: The in-memory header every file is parsed after (see Program).
PRELUDE = "/edgemoe-hls-guard/synthesis_prelude.h"
#: A comment on a division's line that states why one division per iteration is fine.
DIV_NOTE = "// div:"


class ParseError(RuntimeError):
    """The sources do not parse: the rules would see part of them."""


def available() -> str | None:
    """None when the AST rules can run, else why not (one line)."""
    if ci is None:
        return "libclang's Python bindings are not installed (pip install libclang; make venv)"
    return None


def include_dirs() -> list[str]:
    """The ap_types headers (Vitis's, else hls4ml's copy) and the compiler's builtin headers
    (stddef.h and friends, which the libclang wheel does not ship)."""
    dirs: list[str] = []
    xilinx = os.environ.get("XILINX_HLS")
    if xilinx and (Path(xilinx) / "include" / "ap_int.h").exists():
        dirs.append(str(Path(xilinx) / "include"))
    else:
        spec = importlib.util.find_spec("hls4ml")
        for loc in (spec.submodule_search_locations or []) if spec else []:
            p = Path(loc) / "templates" / "vivado" / "ap_types"
            if (p / "ap_int.h").exists():
                dirs.append(str(p))
                break
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++")
    if cxx:
        run = subprocess.run(
            [cxx, "-print-file-name=include"], capture_output=True, text=True, check=False
        )
        if run.returncode == 0 and Path(run.stdout.strip(), "stddef.h").exists():
            dirs.append(run.stdout.strip())
    return dirs


# ---------------------------------------------------------------------------
# Pragmas (clang drops unknown pragmas from the AST: they come from the text).


@dataclass(frozen=True)
class Pragma:
    path: str
    line: int
    kind: str  # upper case: PIPELINE, UNROLL, ARRAY_PARTITION, DEPENDENCE, INTERFACE, ...
    opts: dict[str, str]  # key=value options, lower-case keys; bare words map to ""


_PRAGMA = re.compile(r"^\s*#\s*pragma\s+HLS\s+(\w+)(.*)$", re.I)


def read_pragmas(path: Path, directives: str) -> list[Pragma]:
    """``#pragma HLS`` lines of a file (continuations joined), from text with comments and
    C-sim-only blocks blanked (hls_guard.Source.directives)."""
    out: list[Pragma] = []
    lines = directives.split("\n")
    i = 0
    while i < len(lines):
        start = i
        text = lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i]
        m = _PRAGMA.match(text)
        if m:
            opts: dict[str, str] = {}
            for w in re.sub(r"\s*=\s*", "=", m.group(2)).split():
                k, _, v = w.partition("=")
                opts[k.lower()] = v
            out.append(Pragma(str(path), start + 1, m.group(1).upper(), opts))
        i += 1
    return out


@dataclass(frozen=True)
class Partition:
    kind: str  # complete, cyclic, block
    dim: int  # 0: every dimension


# ---------------------------------------------------------------------------
# Constant evaluation over tokens (the kernel's constants are constexpr ints).

_INT = re.compile(r"^(0[xX][0-9a-fA-F]+|\d+)[uUlL]*$")
_CAST_TYPES = {"int", "unsigned", "uint64_t", "uint32_t", "int64_t", "int32_t", "long", "size_t"}
_OPS = {
    "+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^", "~", "(", ")",
    "<", ">", "<=", ">=", "==", "!=", "&&", "||", "!",
}  # fmt: skip


def eval_tokens(toks: Sequence[str], lookup: Callable[[str], int | None]) -> int | None:
    """The value of a constant expression, or None (unknown names, unsupported forms)."""
    toks = list(toks)
    # Gcd<A, B>::value (banked.h's compile-time gcd)
    while "Gcd" in toks:
        i = toks.index("Gcd")
        try:
            close = toks.index(">", i)
            colon = toks.index(",", i, close)
        except ValueError:
            return None
        a = eval_tokens(toks[i + 2 : colon], lookup)
        b = eval_tokens(toks[colon + 1 : close], lookup)
        if a is None or b is None or toks[close + 1 : close + 3] != ["::", "value"]:
            return None
        toks[i : close + 3] = [str(math.gcd(a, b))]
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if i + 1 < len(toks) and toks[i + 1] == "::":  # a qualifier: params::LIN_OUT
            i += 2
            continue
        if t in _CAST_TYPES and i + 1 < len(toks) and toks[i + 1] == "(":
            i += 1  # int(x): the value of x
            continue
        m = _INT.match(t)
        if m:
            out.append(str(int(m.group(1), 0)))
        elif t in _OPS:
            out.append({"&&": " and ", "||": " or ", "!": " not "}.get(t, t))
        elif re.fullmatch(r"[A-Za-z_]\w*", t):
            if t in ("true", "false"):
                out.append("1" if t == "true" else "0")
                i += 1
                continue
            v = lookup(t)
            if v is None:
                return None
            out.append(f"({v})")
        else:
            return None
        i += 1
    expr = "".join(f" {o} " if o in ("/", "%") else o for o in out)
    if not expr.strip():
        return None
    # Python's // and % floor where C truncates: equal for the non-negative constants here
    expr = re.sub(r"\s/\s", " // ", expr)
    try:
        value = eval(expr, {"__builtins__": {}})  # noqa: S307 - digits and operators only
    except Exception:  # noqa: BLE001 - anything unparsable is "unknown"
        return None
    return int(value)


# ---------------------------------------------------------------------------
# The program: parsed sources, definitions, loops and pragmas.


def _tokens(c) -> list[str]:
    return [t.spelling for t in c.get_tokens()]


def _strip(c):
    """Through implicit casts, parentheses and explicit casts to the expression itself."""
    while c is not None and c.kind in (
        ci.CursorKind.UNEXPOSED_EXPR,
        ci.CursorKind.PAREN_EXPR,
        ci.CursorKind.CSTYLE_CAST_EXPR,
        ci.CursorKind.CXX_FUNCTIONAL_CAST_EXPR,
        ci.CursorKind.CXX_STATIC_CAST_EXPR,
    ):
        kids = [k for k in c.get_children() if k.kind != ci.CursorKind.TYPE_REF]
        if len(kids) != 1:
            break
        c = kids[0]
    return c


def _file(c) -> str:
    f = c.location.file
    return os.path.realpath(f.name) if f is not None else ""


@dataclass
class LoopInfo:
    cursor: object
    label: str
    path: str
    line: int
    body_start: int
    body_end: int
    var: object | None  # VAR_DECL of `for (int v = ...`
    bound: list[str] | None  # tokens of the bound, `v < bound`
    first: list[str] | None  # tokens of the start value
    pipelined: bool = False
    ii: str = "1"  # the PIPELINE pragma's II, as written


class Program:
    """The scanned sources as clang parsed them, with their HLS pragmas."""

    def __init__(
        self, files: Sequence[Path], directives_of: Callable[[Path], str], extra_args=()
    ) -> None:
        self.files = {os.path.realpath(f) for f in files}
        incl = {str(Path(f).parent) for f in files}
        for f in files:  # <hls>/src/x.cpp includes "edgemoe/..." from <hls>/include
            inc = Path(f).parent.parent / "include"
            if inc.is_dir():
                incl.add(str(inc))
        # Parsed as Vitis compiles it: __SYNTHESIS__ defined, so the C-sim-only branches
        # drop out -- after the ap_types and hls_stream headers, which need it undefined
        # outside Vitis (a prelude through -include, as an in-memory file).
        texts = [Path(f).read_text(encoding="utf-8", errors="replace") for f in files]
        vendor = sorted(
            {h for t in texts for h in re.findall(r"#\s*include\s*<((?:ap_|hls_)\w+\.h)>", t)}
        )
        if any('#include "edgemoe/' in t for t in texts):
            vendor = sorted({*vendor, "ap_int.h", "hls_stream.h"})
        prelude = "".join(f"#include <{h}>\n" for h in vendor) + "#define __SYNTHESIS__ 1\n"
        args = ["-x", "c++", "-std=c++14", "-Wno-unknown-pragmas", "-include", PRELUDE]
        args += [f"-I{d}" for d in sorted(incl)] + [f"-isystem{d}" for d in include_dirs()]
        args += list(extra_args)
        index = ci.Index.create()
        self.tus = []
        reached: set[str] = set()
        mains = [f for f in files if Path(f).suffix in (".cpp", ".cc", ".cxx")]
        for f in mains + [f for f in files if f not in mains]:
            if os.path.realpath(f) in reached:
                continue
            tu = index.parse(str(f), args=args, unsaved_files=[(PRELUDE, prelude)])
            errors = [d for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
            if errors:
                d = errors[0]
                where = f"{d.location.file}:{d.location.line}" if d.location.file else str(f)
                raise ParseError(f"clang cannot parse {f}: {where}: {d.spelling}")
            self.tus.append(tu)
            reached.add(os.path.realpath(f))
            reached |= {os.path.realpath(i.include.name) for i in tu.get_includes()}
        self.pragmas: dict[str, list[Pragma]] = {
            os.path.realpath(f): read_pragmas(Path(f), directives_of(Path(f))) for f in files
        }
        self.defs: dict[str, list] = {}
        self.consts: dict[str, list[str]] = {}
        self.enums: dict[str, int] = {}
        self.labels: dict[tuple[str, int], str] = {}
        self.loops: dict[str, list[LoopInfo]] = {}
        self.fn_ranges: dict[str, list[tuple[int, int, str]]] = {}
        seen: set[tuple[str, int, int]] = set()
        for tu in self.tus:
            self._collect(tu.cursor, seen)
        self.m_axi = {
            p.opts.get("port", "")
            for ps in self.pragmas.values()
            for p in ps
            if p.kind == "INTERFACE" and ("m_axi" in p.opts or p.opts.get("mode") == "m_axi")
        }
        self._const_cache: dict[str, int | None] = {}
        self._raw: dict[str, list[str]] = {}

    # -- collection ----------------------------------------------------------------

    def _collect(self, c, seen: set) -> None:
        K = ci.CursorKind
        for ch in c.get_children():
            f = _file(ch)
            if ch.kind in (K.NAMESPACE, K.STRUCT_DECL, K.CLASS_DECL, K.CLASS_TEMPLATE) or (
                ch.kind == K.CLASS_TEMPLATE_PARTIAL_SPECIALIZATION
            ):
                self._collect(ch, seen)
                if f not in self.files:
                    continue
            if ch.kind == K.ENUM_DECL:
                self.enums.update((e.spelling, e.enum_value) for e in ch.get_children())
            if f not in self.files:
                # constants of the generated parameter header count too
                if ch.kind == K.VAR_DECL:
                    self._maybe_const(ch)
                continue
            key = (f, ch.extent.start.offset, ch.kind.value)
            if key in seen:
                continue
            seen.add(key)
            if ch.kind in (K.FUNCTION_DECL, K.FUNCTION_TEMPLATE, K.CXX_METHOD) and (
                ch.is_definition()
            ):
                self.defs.setdefault(ch.spelling, []).append(ch)
                self.fn_ranges.setdefault(f, []).append(
                    (ch.extent.start.line, ch.extent.end.line, ch.spelling)
                )
                for n in ch.walk_preorder():
                    if n.kind in (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT):
                        self.loops.setdefault(f, []).append(self._loop_info(n))
                    elif n.kind == K.LABEL_STMT:
                        for loop in n.get_children():
                            self.labels[(f, loop.extent.start.offset)] = n.spelling
            elif ch.kind == K.VAR_DECL:
                self._maybe_const(ch)

    def _maybe_const(self, v) -> None:
        toks = _tokens(v)
        if ("constexpr" in toks or "const" in toks) and "=" in toks and "[" not in toks:
            self.consts.setdefault(v.spelling, toks[toks.index("=") + 1 :])

    def _loop_info(self, n) -> LoopInfo:
        K = ci.CursorKind
        kids = list(n.get_children())
        body = kids[-1] if kids else n
        var = bound = first = None
        if n.kind == K.FOR_STMT and kids and kids[0].kind == K.DECL_STMT:
            decls = [d for d in kids[0].get_children() if d.kind == K.VAR_DECL]
            if decls:
                var = decls[0]
                toks = _tokens(var)
                first = toks[toks.index("=") + 1 :] if "=" in toks else None
            for k in kids[1:-1]:
                toks = _tokens(k)
                if var is not None and len(toks) >= 3 and toks[0] == var.spelling:
                    if toks[1] == "<":
                        bound = toks[2:]
                    elif toks[1] == "<=":
                        bound = ["(", *toks[2:], ")", "+", "1"]
                    break
        info = LoopInfo(
            cursor=n,
            label="",
            path=_file(n),
            line=n.extent.start.line,
            body_start=body.extent.start.line,
            body_end=body.extent.end.line,
            var=var,
            bound=bound,
            first=first,
        )
        return info

    def finish(self) -> None:
        """Loop labels and pipelining, from the text and the pragmas."""
        for path, loops in self.loops.items():
            for lp in loops:
                label = self.labels.get((path, lp.cursor.extent.start.offset))
                lp.label = label or f"{Path(path).name}:{lp.line}"
            for p in self.pragmas.get(path, []):
                if p.kind == "PIPELINE" and "off" not in p.opts:
                    lp = self.loop_of_line(path, p.line)
                    if lp is not None:
                        lp.pipelined = True
                        lp.ii = p.opts.get("ii", "1")

    def raw_line(self, path: str, line: int) -> str:
        if path not in self._raw:
            self._raw[path] = Path(path).read_text(encoding="utf-8", errors="replace").split("\n")
        lines = self._raw[path]
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def loop_of_line(self, path: str, line: int) -> LoopInfo | None:
        """The innermost loop whose body holds ``line``."""
        best = None
        for lp in self.loops.get(path, []):
            if lp.body_start <= line <= lp.body_end and (best is None or lp.line > best.line):
                best = lp
        return best

    def function_of_line(self, path: str, line: int) -> str | None:
        best = None
        for a, b, name in self.fn_ranges.get(path, []):
            if a <= line <= b and (best is None or a > best[0]):
                best = (a, name)
        return best[1] if best else None

    def const(self, name: str) -> int | None:
        if name in self._const_cache:
            return self._const_cache[name]
        self._const_cache[name] = None  # no cycles
        toks = self.consts.get(name)
        v = eval_tokens(toks, self.const) if toks else None
        if v is None:
            v = self.enums.get(name)
        self._const_cache[name] = v
        return v

    def partitions(self, mem: MemRef) -> list[Partition]:
        """ARRAY_PARTITION pragmas of an array: those naming it as the access reaches it
        (``variable=buf_a.x``), else those naming its own name in the function that
        declares it; an empty list means none."""
        exact, local = [], []
        for path, ps in self.pragmas.items():
            for p in ps:
                if p.kind != "ARRAY_PARTITION":
                    continue
                var = p.opts.get("variable", "")
                kind = next((k for k in ("complete", "cyclic", "block") if k in p.opts), "")
                kind = p.opts.get("type", kind)
                dim = p.opts.get("dim", "1")
                part = Partition(kind, int(dim) if dim.isdigit() else 1)
                if var == mem.name:
                    exact.append(part)
                elif var == mem.leaf and self.function_of_line(path, p.line) == mem.fn:
                    local.append(part)
        return exact or local


# ---------------------------------------------------------------------------
# Walking the call graph with bindings.


@dataclass(frozen=True)
class MemRef:
    """An array (or a part of one) as an access reaches it."""

    key: str  # identity: where it is declared, plus the member path
    name: str  # as the source spells it, for messages
    leaf: str  # the last member / variable name (partition pragmas name it)
    fn: str | None  # function declaring it (partition pragmas of that function first)
    outer: tuple = ()  # (expr, frame) subscripts before the last member step
    subs: tuple = ()  # (expr, frame) subscripts after it
    m_axi: bool = False
    scratch: bool = False  # declared anew in each iteration of the region (not static)
    readonly: bool = False  # a const / constexpr table (loads of one address merge)


_UIDS = itertools.count()


@dataclass
class Frame:
    fn: object
    name: str
    env: dict[str, int]  # template parameters
    bind: dict[str, MemRef | None]  # array / pointer / reference parameters
    deps: dict[str, frozenset]  # lane dependences of parameters
    prog: Program = field(repr=False, default=None)
    args: dict[str, tuple] = field(default_factory=dict)  # parameter -> (argument, frame)
    _locals: dict[str, list[str]] | None = None
    uid: int = field(default_factory=lambda: next(_UIDS))

    def locals_(self) -> dict[str, list[str]]:
        if self._locals is None:
            self._locals = {}
            for n in self.fn.walk_preorder():
                if n.kind == ci.CursorKind.VAR_DECL:
                    toks = _tokens(n)
                    if ("constexpr" in toks or "const" in toks) and "=" in toks:
                        self._locals.setdefault(n.spelling, toks[toks.index("=") + 1 :])
        return self._locals

    def value(self, name: str, depth: int = 0) -> int | None:
        if name in self.env:
            return self.env[name]
        loc = self.locals_().get(name)
        if loc is not None and depth < 8:
            return eval_tokens(loc, lambda n: self.value(n, depth + 1))
        return self.prog.const(name)

    def eval(self, c) -> int | None:
        return eval_tokens(_tokens(c), self.value)


@dataclass
class Lane:
    key: tuple
    trip: int | None
    label: str


class Region:
    """One pipelined loop's iteration, counted."""

    def __init__(self, prog: Program, loop: LoopInfo, frame: Frame, out: dict) -> None:
        self.prog, self.loop, self.root, self.out = prog, loop, frame, out
        self.sites: dict[str, list[tuple[str, int]]] = {}
        self.names: dict[str, str] = {}
        self.lane_of: dict[tuple, Lane] = {}
        self.read_sigs: set = set()
        self._deps: dict[tuple, frozenset] = {}

    # -- dependences on unrolled lanes ---------------------------------------------

    def deps(self, expr, frame: Frame) -> frozenset:
        K = ci.CursorKind
        found: set = set()
        for n in expr.walk_preorder():
            if n.kind != K.DECL_REF_EXPR:
                continue
            ref = n.referenced
            if ref is None:
                continue
            if ref.kind == K.PARM_DECL:
                found |= frame.deps.get(ref.spelling, frozenset())
            elif ref.kind == K.VAR_DECL:
                key = (frame.uid, _file(ref), ref.extent.start.offset)
                if key in self.lane_of:
                    found.add(key)
                    continue
                if key not in self._deps:
                    self._deps[key] = frozenset()  # no cycles
                    init = [k for k in ref.get_children() if k.kind != K.TYPE_REF]
                    self._deps[key] = self.deps(init[-1], frame) if init else frozenset()
                found |= self._deps[key]
        return frozenset(found)

    # -- counting ------------------------------------------------------------------

    def run(self) -> None:
        body = list(self.loop.cursor.get_children())[-1]
        counts = self.count(body, self.root, ())
        ii = eval_tokens(re.findall(r"\w+|\S", self.loop.ii), self.root.value) or 1
        for key, n in counts.items():
            if n <= 2 * ii:
                continue
            sites = self.sites.get(key, [])
            path, line = sites[0] if sites else (self.loop.path, self.loop.line)
            where = ", ".join(f"{Path(p).name}:{ln}" for p, ln in sorted(set(sites))[:4])
            self.add(
                path,
                line,
                "port-budget",
                f"`{self.names[key]}`: {n} accesses per iteration of pipelined loop "
                f"`{self.loop.label}` (at {where}); a RAM/ROM has 2 ports, so II >= "
                f"{-(-n // 2)}, not {ii} (UG1448 200-885): partition it per lane, give each "
                "access its own copy, or merge the accesses",
            )

    def add(self, path: str, line: int, rule: str, message: str, where: str = "") -> None:
        """One finding; the same one from several pipelined loops is listed once, naming
        them (``where``: this loop, with what it adds)."""
        loops = self.out.setdefault((path, line, rule, message), [])
        if where and where not in loops:
            loops.append(where)

    def count(self, c, frame: Frame, lanes: tuple) -> Counter:
        K = ci.CursorKind
        k = c.kind
        if k == K.IF_STMT:
            kids = list(c.get_children())
            res = self.count(kids[0], frame, lanes)
            branches = [self.count(b, frame, lanes) for b in kids[1:]]
            return res + _max(branches)
        if k == K.CONDITIONAL_OPERATOR:
            kids = list(c.get_children())
            return self.count(kids[0], frame, lanes) + _max(
                [self.count(b, frame, lanes) for b in kids[1:]]
            )
        if k == K.SWITCH_STMT:
            kids = list(c.get_children())
            res = self.count(kids[0], frame, lanes)
            groups: list[Counter] = []
            body = kids[-1]
            for s in body.get_children() if body.kind == K.COMPOUND_STMT else [body]:
                if s.kind in (K.CASE_STMT, K.DEFAULT_STMT):
                    groups.append(Counter())
                    while s.kind in (K.CASE_STMT, K.DEFAULT_STMT):
                        s = list(s.get_children())[-1]
                if not groups:
                    groups.append(Counter())
                groups[-1] += self.count(s, frame, lanes)
            return res + _max(groups)
        if k in (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT):
            lp = self._loop(c)
            trip = None
            if lp is not None and lp.bound is not None:
                hi = eval_tokens(lp.bound, frame.value)
                lo = eval_tokens(lp.first, frame.value) if lp.first else 0
                trip = hi - lo if hi is not None and lo is not None else None
            key = (frame.uid, _file(lp.var), lp.var.extent.start.offset) if lp and lp.var else None
            lane = Lane(
                key or (frame.uid, _file(c), c.extent.start.offset), trip, lp.label if lp else ""
            )
            if key is not None:
                self.lane_of[key] = lane
            kids = list(c.get_children())
            return _sum(self.count(b, frame, (*lanes, lane)) for b in kids[1:])
        if k == K.CALL_EXPR and c.spelling.startswith("operator"):
            return self.operator_call(c, frame, lanes)
        if k == K.CALL_EXPR and _wrapper(c):
            return self.count(next(iter(c.get_children())), frame, lanes)
        if k == K.CALL_EXPR:
            return self.call(c, frame, lanes)
        if k == K.ARRAY_SUBSCRIPT_EXPR:
            return self.access(c, frame, lanes, 1)
        if k == K.COMPOUND_ASSIGNMENT_OPERATOR or (
            k == K.UNARY_OPERATOR
            and any(t in ("++", "--") for t in _tokens(c)[:1] + _tokens(c)[-1:])
        ):
            kids = list(c.get_children())
            target = _strip(kids[0]) if kids else None
            self.division(c, frame, lanes)
            if target is not None and target.kind == K.ARRAY_SUBSCRIPT_EXPR:
                res = self.access(target, frame, lanes, 2)  # read-modify-write
                return res + _sum(self.count(x, frame, lanes) for x in kids[1:])
            return _sum(self.count(x, frame, lanes) for x in kids)
        if k == K.BINARY_OPERATOR:
            self.division(c, frame, lanes)
            kids = list(c.get_children())
            target = _strip(kids[0]) if len(kids) == 2 else None
            if (
                target is not None
                and target.kind == K.ARRAY_SUBSCRIPT_EXPR
                and _operator(c, kids[0]) == "="
            ):
                rhs = self.count(kids[1], frame, lanes)  # read before the write
                return rhs + self.access(target, frame, lanes, 1, write=True)
        return _sum(self.count(x, frame, lanes) for x in c.get_children())

    def _loop(self, c) -> LoopInfo | None:
        for lp in self.prog.loops.get(_file(c), []):
            if (
                lp.line == c.extent.start.line
                and lp.cursor.extent.start.offset == c.extent.start.offset
            ):
                return lp
        return None

    # -- rule: divisions by constants that are not powers of two --------------------

    def division(self, c, frame: Frame, lanes: tuple) -> None:
        kids = list(c.get_children())
        if len(kids) == 2:
            self.divide(c, _operator(c, kids[0]), kids[0], kids[1], frame, lanes)

    def operator_call(self, c, frame: Frame, lanes: tuple) -> Counter:
        """An operator of a class type (ap_int, ap_uint): ``a / b``, ``x[i] = v``, ..."""
        op = c.spelling[len("operator") :]
        kids = [x for x in c.get_children() if not _names_operator(x)]
        if op in ("/", "%", "/=", "%=") and len(kids) == 2:
            self.divide(c, op, kids[0], kids[1], frame, lanes)
        target = _strip(kids[0]) if kids else None
        rest = _sum(self.count(x, frame, lanes) for x in kids[1:])
        if target is not None and target.kind == ci.CursorKind.ARRAY_SUBSCRIPT_EXPR:
            if op == "=":
                return rest + self.access(target, frame, lanes, 1, write=True)
            if op in _UPDATES:
                return rest + self.access(target, frame, lanes, 2)  # read-modify-write
        return rest + (self.count(kids[0], frame, lanes) if kids else Counter())

    def divide(self, c, op: str, lhs, rhs, frame: Frame, lanes: tuple) -> None:
        if op not in ("/", "%", "/=", "%="):
            return
        d = frame.eval(rhs)
        if d is None or d <= 0 or d & (d - 1) == 0 or frame.eval(lhs) is not None:
            return
        if grain(lhs, frame) % d == 0:
            return  # an exact multiple: (ot * 24) / 24 folds to ot
        copies = [ln for ln in lanes if ln.key in self.deps(lhs, frame)]
        n = math.prod((ln.trip or 2) for ln in copies)
        path, line = _file(c), c.extent.start.line
        if n == 1 and DIV_NOTE in self.prog.raw_line(path, line):
            return  # one division per iteration, its reason stated on the line
        if n > 1:
            why = (
                f"one copy per lane of unrolled {', '.join(f'`{ln.label}`' for ln in copies)} "
                f"({n} in all): "
                "compute it once per iteration, outside the lanes (the lanes' offsets are "
                "constants)"
            )
        else:
            why = (
                "one per iteration: keep a running counter instead, or state on the line "
                f"why this one is acceptable (a `{DIV_NOTE}` comment: e.g. its operand "
                "is narrow)"
            )
        self.add(
            path,
            line,
            "const-division",
            f"run-time `{op} {d}` in a pipelined loop, {d} not a power of two: Vitis builds a "
            f"divider or a magic-number multiplier for it; {why}",
            self.loop.label,
        )

    # -- accesses ------------------------------------------------------------------

    def access(self, c, frame: Frame, lanes: tuple, times: int, write: bool = False) -> Counter:
        K = ci.CursorKind
        idx = []
        node = c
        while node is not None and node.kind == K.ARRAY_SUBSCRIPT_EXPR:
            kids = list(node.get_children())
            idx.insert(0, kids[1])
            node = _strip(kids[0])
        res = _sum(self.count(i, frame, lanes) for i in idx)  # accesses inside the indices
        mem = self.resolve(node, frame) if node is not None else None
        if mem is None:
            if node is not None:
                res += self.count(node, frame, lanes)
            return res
        if (
            mem.m_axi
            or mem.scratch
            or c.type.kind
            in (
                ci.TypeKind.CONSTANTARRAY,
                ci.TypeKind.INCOMPLETEARRAY,
            )
        ):
            return res  # an m_axi port, an iteration's own array, or a sub-array (no access)
        subs = list(mem.subs) + [(i, frame) for i in idx]
        parts = self.prog.partitions(mem)
        dims = {p.dim for p in parts}
        complete = {p.dim for p in parts if p.kind == "complete"}

        def partitioned(d: int) -> bool:
            return 0 in dims or d in dims

        if subs and all(0 in complete or d in complete for d in range(1, len(subs) + 1)):
            return res  # registers
        spread: set = set()
        for e, f in mem.outer:
            spread |= self.deps(e, f)
        for d, (e, f) in enumerate(subs, start=1):
            if partitioned(d):
                spread |= self.deps(e, f)
        lane_keys = {ln.key for ln in lanes}
        used: set = set()
        constant = True
        for e, f in [*mem.outer, *subs]:
            used |= self.deps(e, f)
            constant = constant and f.eval(e) is not None
        # loads of one address of a constant table merge (nothing can store between them);
        # a writable array's per-lane loads stay apart
        copies = [ln for ln in lanes if ln.key not in spread]
        if mem.readonly:
            copies = [ln for ln in copies if ln.key in used]
        n = math.prod((ln.trip or 2) for ln in copies)
        # a second read of the same element by the same code (same call, same subscripts,
        # no write between in the source order counted here) is one load
        sig = (mem.key, tuple((" ".join(_tokens(e)), f.uid) for e, f in [*mem.outer, *subs]))
        if write or times > 1:
            self.read_sigs.discard(sig)
        elif sig in self.read_sigs:
            n = 0
        else:
            self.read_sigs.add(sig)
        res[mem.key] += n * times
        self.names[mem.key] = mem.name
        self.sites.setdefault(mem.key, []).append((_file(c), c.extent.start.line))
        # rule: a per-row element re-read in every lane
        if lanes and not mem.readonly:
            if not constant and not (used & lane_keys):
                inner = lanes[-1]
                self.add(
                    _file(c),
                    c.extent.start.line,
                    "lane-reload",
                    f"`{''.join(_tokens(c))}` does not depend on the lane of unrolled loop "
                    f"`{inner.label}` (x{inner.trip or '?'}): every lane re-reads the same "
                    f"element of `{mem.name}`; read it once before the lane loop",
                    self.loop.label,
                )
        return res

    def _scratch(self, decl, frame: Frame) -> bool:
        """A local array declared in the region (its body, or a function it calls) is
        new in every iteration: with indices that unroll to constants, Vitis partitions
        it into registers (UG1399 config_array_partition, throughput_driven)."""
        loop = getattr(self, "loop", None)
        if loop is None or "static" in _tokens(decl)[:2]:
            return False
        if frame is not self.root:
            return self.prog.function_of_line(_file(decl), decl.location.line) is not None
        body = list(loop.cursor.get_children())[-1].extent
        return _file(decl) == loop.path and (
            body.start.offset <= decl.extent.start.offset <= body.end.offset
        )

    def resolve(self, e, frame: Frame) -> MemRef | None:
        K = ci.CursorKind
        e = _strip(e)
        if e is None:
            return None
        if e.kind == K.DECL_REF_EXPR:
            ref = e.referenced
            name = e.spelling
            if ref is None:
                return None
            if ref.kind == K.PARM_DECL:
                if name in frame.bind:
                    return frame.bind[name]
                return MemRef(
                    f"param:{frame.name}:{name}",
                    name,
                    name,
                    frame.name,
                    m_axi=name in self.prog.m_axi,
                )
            if ref.kind == K.VAR_DECL:
                tk = ref.type.kind
                if tk in (ci.TypeKind.POINTER, ci.TypeKind.LVALUEREFERENCE):
                    init = [k for k in ref.get_children() if k.kind != K.TYPE_REF]
                    return self.resolve(init[-1], frame) if init else None
                if tk in (ci.TypeKind.CONSTANTARRAY, ci.TypeKind.RECORD, ci.TypeKind.ELABORATED):
                    owner = self.prog.function_of_line(_file(ref), ref.location.line)
                    key = f"{_file(ref)}:{ref.location.line}:{name}"
                    if owner is not None:
                        key += f"@{frame.uid}"
                    toks = _tokens(ref)[:3]
                    return MemRef(
                        key,
                        name,
                        name,
                        owner,
                        scratch=self._scratch(ref, frame),
                        readonly=owner is None and ("const" in toks or "constexpr" in toks),
                    )
            return None
        if e.kind == K.MEMBER_REF_EXPR:
            kids = list(e.get_children())
            base = self.resolve(kids[0], frame) if kids else None
            if base is None:
                return None
            return MemRef(
                f"{base.key}.{e.spelling}",
                f"{base.name}.{e.spelling}",
                e.spelling,
                base.fn,
                outer=base.outer + base.subs,
                subs=(),
                m_axi=base.m_axi,
                scratch=base.scratch,
                readonly=base.readonly,
            )
        if e.kind == K.ARRAY_SUBSCRIPT_EXPR:
            kids = list(e.get_children())
            base = self.resolve(kids[0], frame)
            if base is None:
                return None
            return MemRef(
                base.key,
                base.name,
                base.leaf,
                base.fn,
                base.outer,
                (*base.subs, (kids[1], frame)),
                base.m_axi,
                base.scratch,
                base.readonly,
            )
        return None

    # -- calls ---------------------------------------------------------------------

    def call(self, c, frame: Frame, lanes: tuple) -> Counter:
        args = list(c.get_arguments())
        res = _sum(self.count(a, frame, lanes) for a in args)
        kids = list(c.get_children())
        if kids and kids[0].kind == ci.CursorKind.MEMBER_REF_EXPR:
            res += self.count(kids[0], frame, lanes)  # obj.method(): the object's accesses
        results = []
        for callee, sub in callees(self.prog, c, frame, self):
            results.append(_sum(self.count(b, sub, lanes) for b in _body(callee)))
        return res + _max(results)


def grain(e, frame: Frame, depth: int = 0) -> int:
    """A known divisor of an integer expression's value (1 when nothing is known): a
    constant divides itself, a product its factors' product, a sum their gcd; parameters
    and locals carry their argument's or initialiser's grain."""
    K = ci.CursorKind
    e = _strip(e)
    if e is None or depth > 20:
        return 1
    v = frame.eval(e)
    if v is not None:
        return abs(v) or 1
    kids = list(e.get_children())
    if e.kind == K.BINARY_OPERATOR and len(kids) == 2:
        op = _operator(e, kids[0])
        a, b = grain(kids[0], frame, depth + 1), grain(kids[1], frame, depth + 1)
        if op == "*":
            return a * b
        if op in ("+", "-"):
            return math.gcd(a, b)
        if op == "<<":
            sh = frame.eval(kids[1])
            return a << sh if sh is not None and 0 <= sh < 32 else a
        return 1
    if e.kind == K.DECL_REF_EXPR and e.referenced is not None:
        ref = e.referenced
        if ref.kind == K.PARM_DECL and ref.spelling in frame.args:
            arg, caller = frame.args[ref.spelling]
            return grain(arg, caller, depth + 1)
        if ref.kind == K.VAR_DECL and "const" in _tokens(ref)[:2]:
            init = [k for k in ref.get_children() if k.kind != K.TYPE_REF]
            return grain(init[-1], frame, depth + 1) if init else 1
    return 1


_UPDATES = {"+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", "++", "--"}


def _names_operator(c) -> bool:
    """The callee reference of an operator call (``operator/``), not an operand."""
    c = _strip(c)
    return (
        c is not None
        and c.kind == ci.CursorKind.DECL_REF_EXPR
        and (c.spelling.startswith("operator"))
    )


def _operator(c, lhs) -> str:
    end = lhs.extent.end.offset
    for t in c.get_tokens():
        if t.extent.start.offset >= end:
            return t.spelling
    return ""


def _body(fn) -> list:
    return [k for k in fn.get_children() if k.kind == ci.CursorKind.COMPOUND_STMT]


def _sum(cs: Iterable[Counter]) -> Counter:
    out: Counter = Counter()
    for c in cs:
        out += c
    return out


def _max(cs: Sequence[Counter]) -> Counter:
    out: Counter = Counter()
    for c in cs:
        for k, v in c.items():
            out[k] = max(out[k], v)
    return out


def _callee_name_and_targs(c) -> tuple[str, list[list[str]]]:
    """The called function's name and its explicit template arguments (token lists)."""
    toks = _tokens(c)
    if "(" not in toks:
        return c.spelling, []
    paren = toks.index("(")
    head = toks[:paren]
    targs: list[list[str]] = []
    if head and head[-1] == ">":
        depth, j = 0, len(head) - 1
        while j >= 0:
            depth += {">": 1, "<": -1}.get(head[j], 0)
            if depth == 0:
                break
            j -= 1
        inner, cur, d = head[j + 1 : -1], [], 0
        for t in inner:
            if t == "," and d == 0:
                targs.append(cur)
                cur = []
                continue
            d += {"<": 1, ">": -1, "(": 1, ")": -1}.get(t, 0)
            cur.append(t)
        if cur:
            targs.append(cur)
        head = head[:j]
    # the resolved callee's name first: an implicit conversion wraps a call in a call
    # whose tokens are the inner call's
    return c.spelling or (head[-1] if head else ""), targs


def _wrapper(c) -> bool:
    """An implicit constructor call around an expression (ap_int's, say): no call of its
    own, its one child spans it."""
    kids = list(c.get_children())
    return not c.spelling and len(kids) == 1 and kids[0].extent.end.offset == c.extent.end.offset


def callees(prog: Program, c, frame: Frame, region: Region | None):
    """(definition, frame) of each function a call may reach, arguments bound."""
    K = ci.CursorKind
    if _wrapper(c):
        return []
    name, targs = _callee_name_and_targs(c)
    defs = prog.defs.get(name, [])
    args = list(c.get_arguments())
    out = []
    for d in defs:
        params = [k for k in d.get_children() if k.kind == K.PARM_DECL]
        if len(params) < len(args):
            continue
        tparams = [
            k
            for k in d.get_children()
            if k.kind in (K.TEMPLATE_TYPE_PARAMETER, K.TEMPLATE_NON_TYPE_PARAMETER)
        ]
        env: dict[str, int] = {}
        for tp, ta in zip(tparams, targs, strict=False):
            if tp.kind == K.TEMPLATE_NON_TYPE_PARAMETER:
                v = eval_tokens(ta, frame.value)
                if v is not None:
                    env[tp.spelling] = v
        bind: dict[str, MemRef | None] = {}
        deps: dict[str, frozenset] = {}
        for p, a in zip(params, args, strict=False):
            ptoks = _tokens(p)
            if any(t in ("*", "&", "[") for t in ptoks):
                bind[p.spelling] = (
                    region.resolve(a, frame) if region else _resolve_outside(prog, a, frame)
                )
            if region is not None:
                deps[p.spelling] = region.deps(a, frame)
        sub = Frame(d, d.spelling, env, bind, deps, prog)
        sub.args = {p.spelling: (a, frame) for p, a in zip(params, args, strict=False)}
        out.append((d, sub))
    return out


def _resolve_outside(prog: Program, a, frame: Frame) -> MemRef | None:
    return Region.resolve(_Resolver(prog), a, frame)


class _Resolver:
    """Region.resolve's needs outside a region (binding arguments on the way down)."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog

    resolve = Region.resolve

    def _scratch(self, decl, frame: Frame) -> bool:
        return False


# ---------------------------------------------------------------------------
# Driver.


def analyse(
    files: Sequence[Path],
    directives_of: Callable[[Path], str],
    top: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[Finding]:
    """Every AST rule over ``files``, from the top function when they define it (only what
    it reaches is synthesised), else from every function that nothing calls."""
    prog = Program(files, directives_of, extra_args)
    prog.finish()
    called: set[str] = set()
    for ds in prog.defs.values():
        for d in ds:
            for n in d.walk_preorder():
                if n.kind == ci.CursorKind.CALL_EXPR:
                    called.add(_callee_name_and_targs(n)[0])
    roots = prog.defs.get(top or "", []) or [
        d for name, ds in prog.defs.items() if name not in called for d in ds
    ]
    out: dict = {}
    seen: set = set()
    for r in roots:
        _walk(prog, r, Frame(r, r.spelling, {}, {}, {}, prog), out, seen, 0)
    given = {os.path.realpath(f): Path(f) for f in files}
    found = []
    for (p, line, rule, msg), loops in sorted(out.items()):
        if loops and rule != "port-budget":
            msg += f" (pipelined loop{'s' if len(loops) > 1 else ''}: {', '.join(loops)})"
        found.append((given.get(p, Path(p)), line, rule, msg))
    return found


def _signature(frame: Frame) -> tuple:
    return (
        _file(frame.fn),
        frame.fn.extent.start.offset,
        tuple(sorted(frame.env.items())),
        tuple(sorted((k, v.key if v else None) for k, v in frame.bind.items())),
    )


def _walk(prog: Program, fn, frame: Frame, out: dict, seen: set, depth: int) -> None:
    sig = _signature(frame)
    if sig in seen or depth > 40:
        return
    seen.add(sig)
    K = ci.CursorKind

    def visit(n) -> None:
        if n.kind in (K.FOR_STMT, K.WHILE_STMT, K.DO_STMT):
            lp = next(
                (
                    x
                    for x in prog.loops.get(_file(n), [])
                    if x.cursor.extent.start.offset == n.extent.start.offset
                ),
                None,
            )
            if lp is not None and lp.pipelined:
                Region(prog, lp, frame, out).run()
                return
        if n.kind == K.CALL_EXPR:
            for callee, sub in callees(prog, n, frame, None):
                _walk(prog, callee, sub, out, seen, depth + 1)
        for ch in n.get_children():
            visit(ch)

    for b in _body(fn):
        visit(b)
