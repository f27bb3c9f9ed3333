"""LiqMap: an estimated liquidation map from open interest, candles with taker volume and a leverage mix,
checked against realised liquidation prints. Pure: `model` (the map), `read` (clusters, bias, footnote);
`bot.liqmap.view` (one window's map and its heatmap grid) is imported on its own, since it needs numpy."""
from .model import Accuracy, Ledger, Leverage, LiqMap, Params, Print, Side, Step, liquidation_price, run
from .read import FLOOR_NOTE, Cluster, Reading, clusters_within, footnote, read, text

__all__ = ["Accuracy", "Ledger", "Leverage", "LiqMap", "Params", "Print", "Side", "Step", "liquidation_price", "run",
           "FLOOR_NOTE", "Cluster", "Reading", "clusters_within", "footnote", "read", "text"]
