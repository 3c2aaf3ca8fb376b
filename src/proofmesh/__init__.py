"""proofmesh: a toolkit and node for an open, verifiable AI network on an EVM chain."""

__version__ = "0.1.0"
