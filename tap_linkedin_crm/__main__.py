"""Run the tap: ``python -m tap_linkedin_crm``."""

from __future__ import annotations

from tap_linkedin_crm.tap import TapLinkedInCRM

TapLinkedInCRM.cli()
