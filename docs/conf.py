"""Sphinx configuration for offload's documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import offload  # noqa: E402

project = "offload"
author = "offload developers"
release = version = offload.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.doctest", "sphinx.ext.intersphinx"]
intersphinx_mapping = {}
autodoc_member_order = "bysource"
exclude_patterns = ["_build"]
html_theme = "alabaster"
doctest_global_setup = """
import gevent
import offload
"""
