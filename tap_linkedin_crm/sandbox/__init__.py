"""A fault-injectable emulator of LinkedIn's Sales Navigator export APIs, served on loopback.

:class:`Sandbox` (``server``) is the facade: start and stop, addresses, tap config, inspection.
Behind it, one module per part: ``transport`` (HTTP server, writing replies, wire faults),
``router`` (endpoint kinds), ``messages`` (requests, replies, LinkedIn's error bodies),
``context`` (shared state), ``oauth`` (authorization page, token endpoint, token checks),
``crm_api`` and ``analytics_api`` (the two export-job APIs), ``quota`` (per-member daily
limits), ``downloads`` (signed URLs and files), ``data`` and ``analytics_data`` (deterministic
CSV rows), ``byte_streams`` (gzip and damaged bodies), ``faults`` (fault definitions, counting,
the fired-fault log), ``fault_effects`` (what a fault does to a response), ``request_log``,
``scenario`` and ``clock``. Each endpoint module says in its docstring which behaviour is
LinkedIn's documented contract and which is assumed.
"""

from __future__ import annotations

from tap_linkedin_crm.sandbox.analytics_data import (
    ACTIVITY,
    ACTIVITY_OUTCOME,
    DEFAULT_ANALYTICS_COLUMNS,
    EXPORT_ACTIONS,
    SEAT,
)
from tap_linkedin_crm.sandbox.clock import SandboxClock
from tap_linkedin_crm.sandbox.data import DEFAULT_COLUMNS
from tap_linkedin_crm.sandbox.faults import (
    FAILED_STATUSES,
    FAULT_KINDS,
    RULE_KINDS,
    Fault,
    FaultScope,
    FiredFault,
)
from tap_linkedin_crm.sandbox.request_log import RequestRecord
from tap_linkedin_crm.sandbox.scenario import (
    AMERICAS_CONTRACT,
    DYNAMICS_INSTANCE,
    EMEA_CONTRACT,
    NO_REPORTING_CONTRACT,
    SANDBOX_MEMBER,
    SFDC_INSTANCE,
    ContractSpec,
    InstanceSpec,
    Scenario,
)
from tap_linkedin_crm.sandbox.server import Sandbox

__all__ = [
    "ACTIVITY",
    "ACTIVITY_OUTCOME",
    "AMERICAS_CONTRACT",
    "DEFAULT_ANALYTICS_COLUMNS",
    "DEFAULT_COLUMNS",
    "DYNAMICS_INSTANCE",
    "EMEA_CONTRACT",
    "EXPORT_ACTIONS",
    "FAILED_STATUSES",
    "FAULT_KINDS",
    "NO_REPORTING_CONTRACT",
    "RULE_KINDS",
    "SANDBOX_MEMBER",
    "SEAT",
    "SFDC_INSTANCE",
    "ContractSpec",
    "Fault",
    "FaultScope",
    "FiredFault",
    "InstanceSpec",
    "RequestRecord",
    "Sandbox",
    "SandboxClock",
    "Scenario",
]
