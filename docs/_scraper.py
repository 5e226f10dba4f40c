"""Gallery figures that were never registered with pyplot.

:mod:`infoscope.plotting` returns :class:`matplotlib.figure.Figure` objects
built without pyplot (so a training script never opens a window), which
sphinx-gallery's matplotlib scraper cannot see. This scraper saves every such
figure bound to a name in the example's globals, once. It must run before
the matplotlib scraper, which closes pyplot's figures (after which they look
pyplot-free).
"""

from __future__ import annotations

import weakref

from sphinx_gallery.scrapers import figure_rst

_seen: weakref.WeakSet = weakref.WeakSet()


def figure_scraper(block, block_vars, gallery_conf, **kwargs):
    """Save the example's new pyplot-free figures; return their rST."""
    from matplotlib.figure import Figure

    paths = []
    for value in list(block_vars["example_globals"].values()):
        if not isinstance(value, Figure) or value in _seen:
            continue
        _seen.add(value)
        if value.canvas.manager is not None:
            # pyplot's own: the matplotlib scraper, which runs next, saves it.
            continue
        path = next(block_vars["image_path_iterator"])
        value.savefig(path, dpi=100, bbox_inches="tight")
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])
