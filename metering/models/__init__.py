from .events import CustomerUsageState, EventKey, UsageEvent
from .meters import Meter
from .reconciliation import UsageReconciliationRun
from .rollups import UsageDiscrepancy, UsageRollup, UsageUniqueValue

__all__ = [
    "CustomerUsageState",
    "EventKey",
    "Meter",
    "UsageDiscrepancy",
    "UsageEvent",
    "UsageReconciliationRun",
    "UsageRollup",
    "UsageUniqueValue",
]
