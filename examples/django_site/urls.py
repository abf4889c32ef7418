"""Two views: ``/orders/<id>`` logs one event; ``/health`` logs nothing."""

from __future__ import annotations

import logging
import os

from django.http import HttpRequest, HttpResponse
from django.urls import path

log = logging.getLogger("shop.orders")


def order(request: HttpRequest, order_id: str) -> HttpResponse:
    log.info("order viewed", extra={"order_id": order_id, "card_number": "4242424242424242"})
    return HttpResponse(str(os.getpid()), content_type="text/plain")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(os.getpid()), content_type="text/plain")


urlpatterns = [path("orders/<str:order_id>", order), path("health", health)]
