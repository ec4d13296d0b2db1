"""MLflow: client (`tracker`), bulk inserts (`run_tables`), writer thread."""
