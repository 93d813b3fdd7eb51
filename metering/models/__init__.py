from .events import CustomerUsageState, EventKey, UsageEvent
from .meters import Meter
from .rollups import UsageDiscrepancy, UsageRollup, UsageUniqueValue

__all__ = [
    "CustomerUsageState",
    "EventKey",
    "Meter",
    "UsageDiscrepancy",
    "UsageEvent",
    "UsageRollup",
    "UsageUniqueValue",
]
