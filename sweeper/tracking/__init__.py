"""MLflow: the store (`store`), its client (`tracker`), bulk inserts (`run_tables`), and
the writer thread."""
