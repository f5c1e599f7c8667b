"""The execution engine: claims stored operations and runs them against the upstream."""
