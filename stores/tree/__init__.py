"""Tree memory backends behind one protocol (`stores.tree.base.TreeStore`)."""

from stores.tree.base import Edge, Rel, TreeStore

__all__ = ["Edge", "Rel", "TreeStore"]
