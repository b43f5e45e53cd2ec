"""Tree memory backends behind one protocol (`stores.tree.base.TreeStore`)."""

from hippograph.stores.tree.base import Edge, Rel, TreeStore

__all__ = ["Edge", "Rel", "TreeStore"]
