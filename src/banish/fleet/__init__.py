"""Bans shared through PostgreSQL: the database side of a fleet (``database``, ``schema``)."""
