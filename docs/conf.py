"""Sphinx configuration of the im-task documentation (built by ``nox -s docs``)."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList

import im_task

project = "im-task"
author = "im-task developers"
copyright = "im-task developers"
release = im_task.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store"]

# Markdown: fenced ``{directive}`` blocks, ``:::`` fences, definition lists, heading anchors.
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3

# API reference: Google-style docstrings, signatures in source order, type hints in the descriptions.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# The build runs without internet: no intersphinx.
html_theme = "furo"
html_title = f"im-task {release}"
html_static_path: list[str] = []


class OptionalAutomodule(Directive):
    """``automodule`` for a module that may not be installed (an adapter), with a note instead.

    Usage: ``.. optional-automodule:: im_task_flask`` with the package to install as content.
    """

    required_arguments = 1
    has_content = True
    option_spec: ClassVar[dict[str, Any]] = {"install": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        module = self.arguments[0]
        try:
            importlib.import_module(module)
        except Exception as exc:  # not installed, or needs configuration to import
            install = self.options.get("install", module)
            text = f"{module} is not importable in this build ({type(exc).__name__}); install {install}."
            return [nodes.note("", nodes.paragraph(text=text))]
        lines = StringList([f".. automodule:: {module}", ""], source=self.state_machine.input_lines.source(0))
        container = nodes.section()
        self.state.nested_parse(lines, self.content_offset, container)
        return list(container.children)


def setup(app: Any) -> dict[str, Any]:
    """Registers the ``optional-automodule`` directive."""
    app.add_directive("optional-automodule", OptionalAutomodule)
    return {"parallel_read_safe": True}
