"""The one import name: code imports `hippograph.graphs|nodes|stores|evals`, never the bare folder names.

The folders stay at the top of the repository (the product card), but installed they live inside the hippograph
package (pyproject: wheel force-include), so a bare `import stores` would work in a checkout and break when installed
(or load a second copy of every class next to the `hippograph.stores` one).
"""

from __future__ import annotations

import re

from tests.conftest import REPO

BARE = re.compile(r"^\s*(?:from|import) (?:graphs|nodes|stores|evals)\b", re.M)
SKIP = {".venv", ".git", ".hippograph", ".neo4j", "node_modules"}


def test_no_bare_imports_of_the_layer_folders() -> None:
    offenders = []
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if SKIP & set(rel.parts) or any(p.is_symlink() for p in path.parents if REPO in p.parents):
            continue  # hippograph/stores is a link to stores/: read each file once
        text = path.read_text()
        offenders += [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}" for m in BARE.finditer(text)]
    assert offenders == []


def test_the_source_tree_maps_the_folders_into_the_package() -> None:
    for name in ("graphs", "nodes", "stores", "evals"):
        link = REPO / "hippograph" / name
        assert link.is_symlink() and link.resolve() == (REPO / name).resolve()
