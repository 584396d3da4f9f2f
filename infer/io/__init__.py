"""Files in and out: streaming readers and writers of JSONL, CSV and Parquet, and resumable runs."""
