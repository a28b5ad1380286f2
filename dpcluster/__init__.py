"""dpcluster: distilled pruning (and iterative magnitude pruning) at cluster scale."""

__version__ = "0.1.0"
