"""Message sizes every batchd process agrees on, and the policy built on them: every
stored operation fits in one reply.

The service, the gateway and batchctl all send and receive gRPC messages of at most
MAX_MESSAGE_BYTES (16 MiB), so whatever the service sends them arrives. Within it:

- An operation is read back with the largest response it may have stored:
  BATCH_MAX_RESPONSE_BYTES, at most MAX_RESPONSE_BYTES_LIMIT (2 MiB). A stored JSON
  body of N bytes can take STORED_VALUE_GROWTH (5.5) N as a protobuf Value:
  `[0,0,...]` spends 2 bytes a number, the Value 11 (tag, length, tag, 8-byte double).
- So CreateBatch refuses (`batch_operation.too_large`) an operation larger than
  max_operation_bytes(): the message limit, less that stored response, less
  OPERATION_REPLY_OVERHEAD (64 KiB: ids, status, times). That is about 10.4 MiB at
  the default 1 MiB, 4.9 MiB at the 2 MiB limit.
- The operation is measured as it will be read back (read_back_size()), where small
  JSON values take more room than as text.
- A batch's full view inlines operations while they fit in FULL_VIEW_BUDGET_BYTES,
  half a message; a client reads the rest with ListBatchOperations.
- A page of operations whose stored responses add up to more than one message is
  refused (`list.limit.too_large`): the client asks for fewer, as batchctl does.
- The gateway refuses (413) a create body that does not fit in one message once
  converted.

Lists have a default and a largest page size, which the gateway shows and batchctl
asks for.
"""

from __future__ import annotations

import math
from typing import Any

from batchd.json_values import to_struct
from batchd.v1 import batch_pb2

# Big enough for a batch of 1,000 operations with modest bodies, and for a full view.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MESSAGE_SIZE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
MAX_RESPONSE_BYTES_LIMIT = 2 * 1024 * 1024
STORED_VALUE_GROWTH = 5.5
OPERATION_REPLY_OVERHEAD = 64 * 1024
# Room for the rest of the reply, and the gateway's JSON stays a sane size.
FULL_VIEW_BUDGET_BYTES = MAX_MESSAGE_BYTES // 2
# A list request without a page size gets the default; none gets more than the most.
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def max_operation_bytes(max_response_bytes: int) -> int:
    """The largest operation (its request, as a message) CreateBatch accepts."""
    stored_response = math.ceil(max_response_bytes * STORED_VALUE_GROWTH)
    return MAX_MESSAGE_BYTES - stored_response - OPERATION_REPLY_OVERHEAD


def read_back_size(
    operation: batch_pb2.BatchOperation,
    query_params: dict[str, Any] | None,
    body: dict[str, Any] | None,
    max_bytes: int,
) -> int:
    """The operation's size in the replies that carry it. A Value of no kind comes
    back as null, 2 bytes more, which doubles a list of them; nothing grows more, so
    only an operation over half the limit is built again to be measured."""
    size = operation.ByteSize()
    if size <= max_bytes // 2:
        return size
    stored = batch_pb2.BatchOperation(http_method=operation.http_method, path=operation.path)
    for name, value in (("query_params", query_params), ("body", body)):
        if value is not None:
            getattr(stored, name).CopyFrom(to_struct(value))
    return stored.ByteSize()
