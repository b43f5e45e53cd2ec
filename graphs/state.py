"""Moved to `nodes.state` (floor 2, beside the nodes that read it); this alias goes once every import is updated."""

from nodes.state import *  # noqa: F403
from nodes.state import ChatContext, ChatInput, ChatState, merge_dicts  # noqa: F401
