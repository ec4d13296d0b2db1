"""Reading a sweep: status and best, trial rows, export, figures, report."""
