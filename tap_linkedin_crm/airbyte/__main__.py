"""Run the Airbyte source: ``python -m tap_linkedin_crm.airbyte`` (as ``source-linkedin-crm``)."""

from __future__ import annotations

import sys

from tap_linkedin_crm.airbyte.entrypoint import main

sys.exit(main())
