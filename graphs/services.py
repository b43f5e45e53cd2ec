"""Moved to `stores.services` (the bottom layer); this alias goes once every import is updated."""

from stores.services import *  # noqa: F403
from stores.services import Services, load_chat_model, open_outbox, open_tree_store  # noqa: F401
