"""What every batchd process agrees on about messages: the service's size limit, which
the gateway and batchctl use too, so that whatever the service sends them arrives, and
the page sizes of lists, which the gateway shows and batchctl asks for."""

from __future__ import annotations

# Big enough for a batch of 1,000 operations with modest bodies, and for a full
# view (whose operations stop at 8 MiB, see service/batch_view.py).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A list request without a page size gets the default; none gets more than the most.
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MESSAGE_SIZE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
