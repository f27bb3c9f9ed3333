"""LiqMap: an estimated liquidation map from open interest, candles with taker volume and a leverage mix,
checked against realised liquidation prints. Pure: `model` (the map), `read` (clusters, bias, footnote), `view` (one window's map)."""
from .model import Accuracy, Ledger, Leverage, LiqMap, Params, Print, Side, Step, liquidation_price, run
from .read import FLOOR_NOTE, Cluster, Reading, footnote, read, text
from .view import WARM_UP_MS, WINDOWS_MS, View, build, window_ms

__all__ = ["Accuracy", "Ledger", "Leverage", "LiqMap", "Params", "Print", "Side", "Step", "liquidation_price", "run",
           "FLOOR_NOTE", "Cluster", "Reading", "footnote", "read", "text", "WARM_UP_MS", "WINDOWS_MS", "View", "build", "window_ms"]
