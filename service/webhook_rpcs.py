"""BatchService's webhook endpoint methods, mixed into BatchServicer (servicer.py)."""

from __future__ import annotations

from batchd.v1 import batch_pb2
from service import validation
from service.credentials import Sealer
from service.database import Database
from service.rpc_scope import Context, current_caller
from service.webhook_endpoints import (
    create_endpoint,
    delete_endpoint,
    deliveries,
    delivery_message,
    endpoint_message,
    endpoints_page,
    list_deliveries,
    owned_endpoint,
)

# A delivery as listed: all but the body it sends.
_LISTED_DELIVERY_COLUMNS = [column for column in deliveries.c if column.name != "payload"]


class WebhookEndpointRpcs:
    database: Database
    sealer: Sealer

    async def CreateWebhookEndpoint(
        self, request: batch_pb2.CreateWebhookEndpointRequest, context: Context
    ) -> batch_pb2.CreateWebhookEndpointResponse:
        endpoint = await create_endpoint(self.database, current_caller(), request, self.sealer)
        return batch_pb2.CreateWebhookEndpointResponse(webhook_endpoint=endpoint)

    async def GetWebhookEndpoint(
        self, request: batch_pb2.GetWebhookEndpointRequest, context: Context
    ) -> batch_pb2.GetWebhookEndpointResponse:
        async with self.database.read() as connection:
            row = await owned_endpoint(connection, current_caller().tenant, request.id)
        return batch_pb2.GetWebhookEndpointResponse(webhook_endpoint=endpoint_message(row))

    async def ListWebhookEndpoints(
        self, request: batch_pb2.ListWebhookEndpointsRequest, context: Context
    ) -> batch_pb2.ListWebhookEndpointsResponse:
        page = validation.page_request(request.page_size, request.page, request.order_by)
        async with self.database.read() as connection:
            rows, total = await endpoints_page(connection, current_caller().tenant, page)
        return batch_pb2.ListWebhookEndpointsResponse(
            webhook_endpoints=[endpoint_message(row) for row in rows], total_size=total
        )

    async def DeleteWebhookEndpoint(
        self, request: batch_pb2.DeleteWebhookEndpointRequest, context: Context
    ) -> batch_pb2.DeleteWebhookEndpointResponse:
        deleted = await delete_endpoint(self.database, current_caller(), request.id)
        return batch_pb2.DeleteWebhookEndpointResponse(id=deleted)

    async def ListWebhookDeliveries(
        self, request: batch_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> batch_pb2.ListWebhookDeliveriesResponse:
        tenant = current_caller().tenant
        page = validation.page_request(request.page_size, request.page, request.order_by)
        async with self.database.read() as connection:
            endpoint = await owned_endpoint(connection, tenant, request.webhook_endpoint_id)
            rows, total = await list_deliveries(
                connection, tenant, [endpoint.id], [], page, columns=_LISTED_DELIVERY_COLUMNS
            )
        return batch_pb2.ListWebhookDeliveriesResponse(
            webhook_deliveries=[delivery_message(row) for row in rows], total_size=total
        )
