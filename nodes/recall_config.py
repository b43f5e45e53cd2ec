"""Moved to `stores.recall_config` (the bottom layer, beside Settings); this alias goes once every import is updated."""

from stores.recall_config import *  # noqa: F403
from stores.recall_config import RecallConfig, SignalWeights  # noqa: F401
