"""`make bench`: batchd's throughput next to bare ceilings measured side by side in one run."""
