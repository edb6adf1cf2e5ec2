"""scaling: measure what buys reasoning accuracy (model size, RL data, thinking tokens) and fit laws to it."""

__version__ = "0.1.0"
