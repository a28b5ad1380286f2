"""Masks and pruning: pure functions over name -> tensor dicts, plus the few helpers that touch a model."""
