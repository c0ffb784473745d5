"""Singer tap for LinkedIn Sales Navigator CRM Data Validation exports."""
