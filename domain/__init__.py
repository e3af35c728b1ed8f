"""Pure domain model of racer profiles: aggregates, rules, errors, the application service."""
