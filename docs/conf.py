"""Sphinx configuration: numpydoc API pages and a sphinx-gallery of the examples."""

import os
import sys
from pathlib import Path

import skmm

sys.path.insert(0, str(Path(__file__).parent))

project = "skmm"
author = "skmm developers"
copyright = "2026, skmm developers"
version = release = skmm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "**.md5"]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Cross-references to names outside skmm resolve through intersphinx, when reachable.
numpydoc_xref_param_type = False

intersphinx_mapping = {}  # offline builds: no inventories are fetched

# SKMM_GALLERY=run executes the examples (slow: several minutes); the default build
# renders their code and text without running them, so CI stays fast.
sphinx_gallery_conf = {
    "doc_module": ("skmm",),
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skmm": None},
    "filename_pattern": r"/plot_",
    "plot_gallery": os.environ.get("SKMM_GALLERY") == "run",
    "remove_config_comments": True,
}

html_theme = "pydata_sphinx_theme"
html_theme_options = {"navigation_with_keys": False}
html_static_path = ["_static"]
html_title = f"skmm {release}"
