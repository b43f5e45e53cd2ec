"""hippograph's settings, as the public face exports them (defined in `stores.settings`, the bottom layer)."""

from hippograph.stores.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
