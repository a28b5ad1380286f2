"""``dpcluster report``: a sweep folder (or a run's) turned into the papers' figures, a summary table and one
self-contained HTML page."""
