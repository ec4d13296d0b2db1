"""Datasets: files read with pyarrow, the built-in ones, splits, standardization."""
