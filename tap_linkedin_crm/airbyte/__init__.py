"""The Airbyte source: `source-linkedin-crm spec|check|discover|read`, on the tap's own engine.

The same settings, streams, engine and state as the Singer tap, spoken in the Airbyte protocol:
`spec` and `discover` derive from the tap's settings schema and streams, `check` makes one cheap
authenticated call per configured export family, and `read` runs `sync.run_sync` in process
through `output.airbyte.AirbyteOutput`.
"""
