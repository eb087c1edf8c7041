"""Everything after a program returns: one recorder per domain (recorders), the exact and
reference draws it compares with (references), two-sample and Frechet metrics (metrics), the
digit classifiers' metrics (image_metrics), figures (plots) and the markdown tables of every
experiment (tables)."""
