"""Sphinx configuration for offload's documentation.

``make docs`` and ``make doctest`` build with ``-W -n``: every warning and
every unresolved cross-reference fails the build.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import offload  # noqa: E402

project = "offload"
author = "offload developers"
copyright = "2026, offload developers"
release = version = offload.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.extlinks",
    "sphinx.ext.intersphinx",
]

# The real sites for the links, the inventories from docs/_inv/ (made by
# `make inventories`): the build never goes to the network.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "_inv/python.inv"),
    "gevent": ("https://www.gevent.org", "_inv/gevent.inv"),
    "pymongo": ("https://pymongo.readthedocs.io/en/stable", "_inv/pymongo.inv"),
}
intersphinx_timeout = 1
# Issues of other projects, by their GitHub name: :issue:`mysqlclient#464`
# needs a project name, so each project gets its own role.
extlinks = {
    "mysqlclient": ("https://github.com/PyMySQL/mysqlclient/issues/%s", "mysqlclient#%s"),
    "peewee": ("https://github.com/coleifer/peewee/issues/%s", "peewee#%s"),
    "relstorage": ("https://github.com/zodb/relstorage/issues/%s", "zodb/relstorage#%s"),
}

nitpicky = True
# Type variables are parameters of a signature, not documented objects.
nitpick_ignore_regex = [
    ("py:class", r"(.*\.)?_[A-Z]\w*"),
    # Private modules' classes show in type hints (a pool's base class); they
    # are not API, so they have no page to link to.
    ("py:class", r"offload\.(\w+\.)*_\w+\..*"),
    # prometheus_client's documentation is not Sphinx: there is no inventory.
    ("py:class", r"prometheus_client\..*"),
    # wait()'s return type: a namedtuple the Python docs do not list.
    ("py:class", r"concurrent\.futures\._base\.DoneAndNotDoneFutures"),
    # No SQLAlchemy inventory ships yet (its pages do not follow one pattern
    # the generator could guess): add one to docs/_inv/make_inventories.py.
    ("py:.*", r"sqlalchemy\..*"),
]

autodoc_member_order = "bysource"
exclude_patterns = ["_build", "_inv"]
html_theme = "alabaster"
doctest_global_setup = """
import gevent
import offload
"""


def _plain_signature(app):
    """Show ``offload.offload`` with api.rst's one signature, not its three ``@overload`` stubs.

    Sphinx replaces an explicit signature by a function's overloads whenever
    its module has any; the overloads only serve type checkers, so drop them
    from the analyzer Sphinx caches for the module.
    """
    from sphinx.pycode import ModuleAnalyzer

    analyzer = ModuleAnalyzer.for_module(offload.offload.__module__)
    analyzer.analyze()
    analyzer.overloads.pop(offload.offload.__name__, None)


def setup(app):
    app.connect("builder-inited", _plain_signature)
