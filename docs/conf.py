"""Sphinx configuration of the edgemoe documentation (``make docs``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import edgemoe

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "edgemoe"
author = "the edgemoe developers"
copyright = "the edgemoe developers, Apache-2.0"  # noqa: A001 (Sphinx's name)
release = edgemoe.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",
    "edgemoe_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: $…$ maths is not used; headings get anchors for links inside a page.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The API reference: numpydoc docstrings through napoleon, members in source order.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}

html_theme = "furo"
html_title = f"edgemoe {release}"


# Docstrings name attributes (``name``, ``kind``, ``width``) that several classes have;
# the reference then goes to the first, which is what a reader expects. Nothing else
# is silenced: every other warning fails the build.
suppress_warnings = ["ref.python"]

_DESIGN = re.compile(r"DESIGN\.md(?:\s*§(\d+)[\d.]*(?:\s*[-–,]\s*§?[\d.]+)*)?")
#: The design reference's sections, by number, and the page of this site that covers each.
_SECTION_PAGE = {
    "2": "/configs",
    "3": "/numerics",
    "4": "/design",
    "5": "/numerics",
    "6": "/performance",
    "7": "/design",
    "8": "/workflows/synthesis",
}


def _page(m: re.Match) -> str:
    return f":doc:`{_SECTION_PAGE.get(m.group(1) or '', '/design')}`"


_BARS = re.compile(r"(?<![`\\|])\|(?=[^\s|`])([^|`\n]*?[^\s|`\\])\|(?![`|_])")


def _docstring(app, what, name, obj, options, lines) -> None:
    """Fit the code's docstrings to this site.

    The docstrings cite the design reference by section; on this site that is a page.
    ``|x|`` in a docstring is an absolute value, not a reStructuredText substitution.
    """
    for i, line in enumerate(lines):
        line = _DESIGN.sub(_page, line)
        lines[i] = _BARS.sub(r"\\|\1\\|", line)


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _docstring)
