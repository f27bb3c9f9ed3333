"""The seeded market simulator and the Binance-shaped server that serves it, behind ``python -m bot demo``
and ``python -m bot scan --simulate`` (and the tests and benchmarks)."""
