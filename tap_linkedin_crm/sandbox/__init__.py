"""A fault-injectable emulator of LinkedIn's CRM Data Validation export API, served on loopback."""

from __future__ import annotations

from tap_linkedin_crm.sandbox.clock import SandboxClock
from tap_linkedin_crm.sandbox.data import DEFAULT_COLUMNS
from tap_linkedin_crm.sandbox.faults import FAULT_KINDS, Fault
from tap_linkedin_crm.sandbox.request_log import RequestRecord
from tap_linkedin_crm.sandbox.scenario import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    InstanceSpec,
    Scenario,
)
from tap_linkedin_crm.sandbox.server import Sandbox

__all__ = [
    "DEFAULT_COLUMNS",
    "DYNAMICS_INSTANCE",
    "FAULT_KINDS",
    "SFDC_INSTANCE",
    "Fault",
    "InstanceSpec",
    "RequestRecord",
    "Sandbox",
    "SandboxClock",
    "Scenario",
]
