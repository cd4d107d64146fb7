"""`expertmatch run`: the whole system on one machine (broker, three services, demo receiver)."""
