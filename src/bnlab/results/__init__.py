"""What a run leaves: the SQLite store, statistics, reports."""
