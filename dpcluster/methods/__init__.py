"""The pruning methods (dense, imp, distilled, hybrid, random) as one round engine."""
