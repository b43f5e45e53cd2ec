"""The memory inspector served at `/ui` by `hippograph serve`: what is remembered, why it was recalled, what
enrichment did. Server-rendered Jinja2 pages (htmx for partial updates, cytoscape.js for the graph), both JS
libraries vendored under `static/vendor/` (no CDN). Every page acts through `Memory` as the caller, so the access
rules are those of REST.

    from hippograph.ui import install_ui
    install_ui(app, memory)            # done by hippograph.api.create_app
"""

from hippograph.ui.routes import COOKIE, install_ui

__all__ = ["COOKIE", "install_ui"]
