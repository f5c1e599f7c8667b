"""The composition root: `batchd`, the service and the gateway in one process."""
