"""The data: the input's columns, CSV files -> the ``transactions`` table, Delta reads and
writes, the metastore catalog, generated data at any volume, and read-only SQL over the tables."""
