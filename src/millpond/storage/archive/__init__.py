"""The archive tier: sealed ranges of the log as Parquet files (:mod:`.files`), kept by a
backend beside its hot store and read through the same contracts.

Backend-neutral: a file holds the log's rows of one seq range, sorted by (event time,
seq), zstd-compressed, with min/max statistics per row group on ``ts``, ``seq`` and
``source_id``, so a reader skips every row group (and whole files, by the manifest's
bounds) a window or a seq range cannot touch.
"""
