import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HttpMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HTTP_METHOD_UNSPECIFIED: _ClassVar[HttpMethod]
    HTTP_METHOD_GET: _ClassVar[HttpMethod]
    HTTP_METHOD_POST: _ClassVar[HttpMethod]
    HTTP_METHOD_PUT: _ClassVar[HttpMethod]
    HTTP_METHOD_PATCH: _ClassVar[HttpMethod]
    HTTP_METHOD_DELETE: _ClassVar[HttpMethod]

class BatchOperationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_OPERATION_STATUS_UNSPECIFIED: _ClassVar[BatchOperationStatus]
    BATCH_OPERATION_STATUS_PENDING: _ClassVar[BatchOperationStatus]
    BATCH_OPERATION_STATUS_IN_PROGRESS: _ClassVar[BatchOperationStatus]
    BATCH_OPERATION_STATUS_COMPLETED: _ClassVar[BatchOperationStatus]
    BATCH_OPERATION_STATUS_FAILED: _ClassVar[BatchOperationStatus]
    BATCH_OPERATION_STATUS_TIMED_OUT: _ClassVar[BatchOperationStatus]
    BATCH_OPERATION_STATUS_CANCELED: _ClassVar[BatchOperationStatus]

class BatchStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_STATUS_UNSPECIFIED: _ClassVar[BatchStatus]
    BATCH_STATUS_PENDING: _ClassVar[BatchStatus]
    BATCH_STATUS_IN_PROGRESS: _ClassVar[BatchStatus]
    BATCH_STATUS_COMPLETED: _ClassVar[BatchStatus]
    BATCH_STATUS_CANCELED: _ClassVar[BatchStatus]

class BatchView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_VIEW_UNSPECIFIED: _ClassVar[BatchView]
    BATCH_VIEW_BASIC: _ClassVar[BatchView]
    BATCH_VIEW_FULL: _ClassVar[BatchView]

class WebhookDeliveryStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_DELIVERY_STATUS_UNSPECIFIED: _ClassVar[WebhookDeliveryStatus]
    WEBHOOK_DELIVERY_STATUS_PENDING: _ClassVar[WebhookDeliveryStatus]
    WEBHOOK_DELIVERY_STATUS_DELIVERED: _ClassVar[WebhookDeliveryStatus]
    WEBHOOK_DELIVERY_STATUS_FAILED: _ClassVar[WebhookDeliveryStatus]
HTTP_METHOD_UNSPECIFIED: HttpMethod
HTTP_METHOD_GET: HttpMethod
HTTP_METHOD_POST: HttpMethod
HTTP_METHOD_PUT: HttpMethod
HTTP_METHOD_PATCH: HttpMethod
HTTP_METHOD_DELETE: HttpMethod
BATCH_OPERATION_STATUS_UNSPECIFIED: BatchOperationStatus
BATCH_OPERATION_STATUS_PENDING: BatchOperationStatus
BATCH_OPERATION_STATUS_IN_PROGRESS: BatchOperationStatus
BATCH_OPERATION_STATUS_COMPLETED: BatchOperationStatus
BATCH_OPERATION_STATUS_FAILED: BatchOperationStatus
BATCH_OPERATION_STATUS_TIMED_OUT: BatchOperationStatus
BATCH_OPERATION_STATUS_CANCELED: BatchOperationStatus
BATCH_STATUS_UNSPECIFIED: BatchStatus
BATCH_STATUS_PENDING: BatchStatus
BATCH_STATUS_IN_PROGRESS: BatchStatus
BATCH_STATUS_COMPLETED: BatchStatus
BATCH_STATUS_CANCELED: BatchStatus
BATCH_VIEW_UNSPECIFIED: BatchView
BATCH_VIEW_BASIC: BatchView
BATCH_VIEW_FULL: BatchView
WEBHOOK_DELIVERY_STATUS_UNSPECIFIED: WebhookDeliveryStatus
WEBHOOK_DELIVERY_STATUS_PENDING: WebhookDeliveryStatus
WEBHOOK_DELIVERY_STATUS_DELIVERED: WebhookDeliveryStatus
WEBHOOK_DELIVERY_STATUS_FAILED: WebhookDeliveryStatus

class BatchOperation(_message.Message):
    __slots__ = ("id", "batch_id", "http_method", "path", "query_params", "body", "status", "response_status", "response_body", "failure_reason", "attempts", "position", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    QUERY_PARAMS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BODY_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    batch_id: str
    http_method: HttpMethod
    path: str
    query_params: _struct_pb2.Struct
    body: _struct_pb2.Struct
    status: BatchOperationStatus
    response_status: int
    response_body: _struct_pb2.Value
    failure_reason: str
    attempts: int
    position: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., batch_id: _Optional[str] = ..., http_method: _Optional[_Union[HttpMethod, str]] = ..., path: _Optional[str] = ..., query_params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., body: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[_Union[BatchOperationStatus, str]] = ..., response_status: _Optional[int] = ..., response_body: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., failure_reason: _Optional[str] = ..., attempts: _Optional[int] = ..., position: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExecutionOptions(_message.Message):
    __slots__ = ("sequential", "stop_on_failure", "max_concurrency")
    SEQUENTIAL_FIELD_NUMBER: _ClassVar[int]
    STOP_ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    sequential: bool
    stop_on_failure: bool
    max_concurrency: int
    def __init__(self, sequential: _Optional[bool] = ..., stop_on_failure: _Optional[bool] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("id", "status", "batch_operations_count", "finished_batch_operations_count", "batch_operations", "create_time", "update_time", "execution_options", "retry_of", "metadata", "outcome_counts", "held_back")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BATCH_OPERATIONS_COUNT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_BATCH_OPERATIONS_COUNT_FIELD_NUMBER: _ClassVar[int]
    BATCH_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    RETRY_OF_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_COUNTS_FIELD_NUMBER: _ClassVar[int]
    HELD_BACK_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: BatchStatus
    batch_operations_count: int
    finished_batch_operations_count: int
    batch_operations: _containers.RepeatedCompositeFieldContainer[BatchOperation]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    execution_options: ExecutionOptions
    retry_of: str
    metadata: _containers.ScalarMap[str, str]
    outcome_counts: BatchOutcomeCounts
    held_back: HeldBack
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[BatchStatus, str]] = ..., batch_operations_count: _Optional[int] = ..., finished_batch_operations_count: _Optional[int] = ..., batch_operations: _Optional[_Iterable[_Union[BatchOperation, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., execution_options: _Optional[_Union[ExecutionOptions, _Mapping]] = ..., retry_of: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., outcome_counts: _Optional[_Union[BatchOutcomeCounts, _Mapping]] = ..., held_back: _Optional[_Union[HeldBack, _Mapping]] = ...) -> None: ...

class BatchOutcomeCounts(_message.Message):
    __slots__ = ("completed", "failed", "timed_out", "canceled", "responses_2xx", "responses_3xx", "responses_4xx", "responses_5xx")
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_2XX_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_3XX_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_4XX_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_5XX_FIELD_NUMBER: _ClassVar[int]
    completed: int
    failed: int
    timed_out: int
    canceled: int
    responses_2xx: int
    responses_3xx: int
    responses_4xx: int
    responses_5xx: int
    def __init__(self, completed: _Optional[int] = ..., failed: _Optional[int] = ..., timed_out: _Optional[int] = ..., canceled: _Optional[int] = ..., responses_2xx: _Optional[int] = ..., responses_3xx: _Optional[int] = ..., responses_4xx: _Optional[int] = ..., responses_5xx: _Optional[int] = ...) -> None: ...

class HeldBack(_message.Message):
    __slots__ = ("reason", "until")
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REASON_UNSPECIFIED: _ClassVar[HeldBack.Reason]
        REASON_UPSTREAM_PAUSE: _ClassVar[HeldBack.Reason]
    REASON_UNSPECIFIED: HeldBack.Reason
    REASON_UPSTREAM_PAUSE: HeldBack.Reason
    REASON_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    reason: HeldBack.Reason
    until: _timestamp_pb2.Timestamp
    def __init__(self, reason: _Optional[_Union[HeldBack.Reason, str]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateBatchRequest(_message.Message):
    __slots__ = ("batch", "view", "request_id")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    view: BatchView
    request_id: str
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ..., view: _Optional[_Union[BatchView, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("id", "view")
    ID_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    id: str
    view: BatchView
    def __init__(self, id: _Optional[str] = ..., view: _Optional[_Union[BatchView, str]] = ...) -> None: ...

class GetBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class ListBatchesRequest(_message.Message):
    __slots__ = ("page_size", "page", "ids", "statuses", "order_by", "view", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    statuses: _containers.RepeatedScalarFieldContainer[BatchStatus]
    order_by: str
    view: BatchView
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, page_size: _Optional[int] = ..., page: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ..., statuses: _Optional[_Iterable[_Union[BatchStatus, str]]] = ..., order_by: _Optional[str] = ..., view: _Optional[_Union[BatchView, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListBatchesResponse(_message.Message):
    __slots__ = ("batches", "total_size")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[Batch]
    total_size: int
    def __init__(self, batches: _Optional[_Iterable[_Union[Batch, _Mapping]]] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetBatchOperationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetBatchOperationResponse(_message.Message):
    __slots__ = ("batch_operation",)
    BATCH_OPERATION_FIELD_NUMBER: _ClassVar[int]
    batch_operation: BatchOperation
    def __init__(self, batch_operation: _Optional[_Union[BatchOperation, _Mapping]] = ...) -> None: ...

class ListBatchOperationsRequest(_message.Message):
    __slots__ = ("page_size", "page", "batch_ids", "statuses", "order_by")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    BATCH_IDS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page: int
    batch_ids: _containers.RepeatedScalarFieldContainer[str]
    statuses: _containers.RepeatedScalarFieldContainer[BatchOperationStatus]
    order_by: str
    def __init__(self, page_size: _Optional[int] = ..., page: _Optional[int] = ..., batch_ids: _Optional[_Iterable[str]] = ..., statuses: _Optional[_Iterable[_Union[BatchOperationStatus, str]]] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListBatchOperationsResponse(_message.Message):
    __slots__ = ("batch_operations", "total_size")
    BATCH_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    batch_operations: _containers.RepeatedCompositeFieldContainer[BatchOperation]
    total_size: int
    def __init__(self, batch_operations: _Optional[_Iterable[_Union[BatchOperation, _Mapping]]] = ..., total_size: _Optional[int] = ...) -> None: ...

class CancelBatchRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class WatchBatchRequest(_message.Message):
    __slots__ = ("id", "resume_after")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    id: str
    resume_after: str
    def __init__(self, id: _Optional[str] = ..., resume_after: _Optional[str] = ...) -> None: ...

class WatchBatchResponse(_message.Message):
    __slots__ = ("batch", "batch_operation")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    BATCH_OPERATION_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    batch_operation: BatchOperation
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ..., batch_operation: _Optional[_Union[BatchOperation, _Mapping]] = ...) -> None: ...

class ExportBatchOperationsRequest(_message.Message):
    __slots__ = ("id", "statuses")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    id: str
    statuses: _containers.RepeatedScalarFieldContainer[BatchOperationStatus]
    def __init__(self, id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[BatchOperationStatus, str]]] = ...) -> None: ...

class ExportBatchOperationsResponse(_message.Message):
    __slots__ = ("batch_operations",)
    BATCH_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    batch_operations: _containers.RepeatedCompositeFieldContainer[BatchOperation]
    def __init__(self, batch_operations: _Optional[_Iterable[_Union[BatchOperation, _Mapping]]] = ...) -> None: ...

class DeleteBatchRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteBatchResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RetryBatchRequest(_message.Message):
    __slots__ = ("id", "statuses", "response_statuses", "view", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_STATUSES_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    statuses: _containers.RepeatedScalarFieldContainer[BatchOperationStatus]
    response_statuses: _containers.RepeatedScalarFieldContainer[str]
    view: BatchView
    request_id: str
    def __init__(self, id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[BatchOperationStatus, str]]] = ..., response_statuses: _Optional[_Iterable[str]] = ..., view: _Optional[_Union[BatchView, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RetryBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class WebhookEndpoint(_message.Message):
    __slots__ = ("id", "url", "webhook_events", "signing_secret", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_EVENTS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    url: str
    webhook_events: _containers.RepeatedScalarFieldContainer[str]
    signing_secret: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., url: _Optional[str] = ..., webhook_events: _Optional[_Iterable[str]] = ..., signing_secret: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("id", "webhook_endpoint_id", "event_id", "event_type", "batch_id", "status", "attempts", "last_response_status", "last_error", "last_attempt_time", "next_attempt_time", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_RESPONSE_STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    webhook_endpoint_id: str
    event_id: str
    event_type: str
    batch_id: str
    status: WebhookDeliveryStatus
    attempts: int
    last_response_status: int
    last_error: str
    last_attempt_time: _timestamp_pb2.Timestamp
    next_attempt_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., webhook_endpoint_id: _Optional[str] = ..., event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., batch_id: _Optional[str] = ..., status: _Optional[_Union[WebhookDeliveryStatus, str]] = ..., attempts: _Optional[int] = ..., last_response_status: _Optional[int] = ..., last_error: _Optional[str] = ..., last_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateWebhookEndpointRequest(_message.Message):
    __slots__ = ("webhook_endpoint",)
    WEBHOOK_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    webhook_endpoint: WebhookEndpoint
    def __init__(self, webhook_endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ...) -> None: ...

class CreateWebhookEndpointResponse(_message.Message):
    __slots__ = ("webhook_endpoint",)
    WEBHOOK_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    webhook_endpoint: WebhookEndpoint
    def __init__(self, webhook_endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ...) -> None: ...

class GetWebhookEndpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetWebhookEndpointResponse(_message.Message):
    __slots__ = ("webhook_endpoint",)
    WEBHOOK_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    webhook_endpoint: WebhookEndpoint
    def __init__(self, webhook_endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ...) -> None: ...

class ListWebhookEndpointsRequest(_message.Message):
    __slots__ = ("page_size", "page", "order_by")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page: int
    order_by: str
    def __init__(self, page_size: _Optional[int] = ..., page: _Optional[int] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListWebhookEndpointsResponse(_message.Message):
    __slots__ = ("webhook_endpoints", "total_size")
    WEBHOOK_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    webhook_endpoints: _containers.RepeatedCompositeFieldContainer[WebhookEndpoint]
    total_size: int
    def __init__(self, webhook_endpoints: _Optional[_Iterable[_Union[WebhookEndpoint, _Mapping]]] = ..., total_size: _Optional[int] = ...) -> None: ...

class DeleteWebhookEndpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteWebhookEndpointResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListWebhookDeliveriesRequest(_message.Message):
    __slots__ = ("webhook_endpoint_id", "page_size", "page", "order_by")
    WEBHOOK_ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    webhook_endpoint_id: str
    page_size: int
    page: int
    order_by: str
    def __init__(self, webhook_endpoint_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page: _Optional[int] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListWebhookDeliveriesResponse(_message.Message):
    __slots__ = ("webhook_deliveries", "total_size")
    WEBHOOK_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    webhook_deliveries: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    total_size: int
    def __init__(self, webhook_deliveries: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ..., total_size: _Optional[int] = ...) -> None: ...
