"""batchd: the all-in-one program, and the generated API package `batchd.v1`."""
