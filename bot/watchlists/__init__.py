"""Per-user watchlists (a package; see registry.py while it is being split)."""
from .registry import *  # noqa: F401,F403
from .registry import __all__  # noqa: F401
