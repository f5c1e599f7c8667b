"""The REST gateway: SureCart-compatible JSON over HTTP, translated to BatchService gRPC calls."""
