"""Order details from customers' messages: the models, the extractors and the explicit merge."""

from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest, OrderExtractor
from wa_sessions.orders.merge import MergeOutcome, merge_order
from wa_sessions.orders.models import (
    ExtractionResult,
    ItemAction,
    ItemChange,
    OrderDetails,
    OrderItem,
)

__all__ = [
    "ExtractionFailure",
    "ExtractionRequest",
    "ExtractionResult",
    "ItemAction",
    "ItemChange",
    "MergeOutcome",
    "OrderDetails",
    "OrderExtractor",
    "OrderItem",
    "merge_order",
]
