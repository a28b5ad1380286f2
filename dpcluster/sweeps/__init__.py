"""Sweeps: a spec of data sets × models × methods × seeds × sparsity levels, expanded into a job graph."""
