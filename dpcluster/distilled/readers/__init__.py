"""Readers of distilled sets made elsewhere, one module per family of formats (MTT's tensors, DC's results file,
``.npz`` arrays, image folders), sharing ``common.py``. A format of the registry (``dpcluster/distilled/formats/``)
names its reader here; every reader takes (path, DataBundle, ReadOptions) and returns a DistilledSet in the
data's normalization."""
