"""What an operator runs beside the services: the effective settings, dead letters, consumer lag."""
