"""The gRPC message size every batchd process agrees on: the service's limit, which
the gateway and batchctl use too, so that whatever the service sends them arrives."""

from __future__ import annotations

# Big enough for a batch of 1,000 operations with modest bodies, and for a full
# view (whose operations stop at 8 MiB, see service/batch_view.py).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MESSAGE_SIZE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
