"""Measuring expertmatch on Stack Exchange dumps (`expertmatch eval`) and backfilling them (`expertmatch import`)."""
