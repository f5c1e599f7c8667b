"""batchctl: a command-line client of BatchService over gRPC."""
