"""Settings from the environment: every malformed value is one ConfigError line."""

from __future__ import annotations

import pytest

from batchd.config import ConfigError, host_port


@pytest.mark.parametrize(
    "address",
    [
        "",
        "127.0.0.1",
        ":8080",
        "127.0.0.1:",
        "127.0.0.1:²",
        "127.0.0.1:٣٠",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:8080 ",
        "127.0.0.1:+80",
        "h:1e3",
    ],
)
def test_a_malformed_address_is_a_config_error(address: str) -> None:
    with pytest.raises(ConfigError, match=r"^BATCH_X=.* is not host:port$"):
        host_port(address, "BATCH_X")


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:1", ("127.0.0.1", 1)), ("[::1]:65535", ("::1", 65535)), ("h:080", ("h", 80))],
)
def test_a_host_and_port_are_split(address: str, expected: tuple[str, int]) -> None:
    assert host_port(address, "BATCH_X") == expected
