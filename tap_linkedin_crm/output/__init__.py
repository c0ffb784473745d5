"""Output: how schemas, records and state leave the tap (Singer RECORD lines, BATCH files, Airbyte messages)."""
