"""banish: an intrusion-prevention daemon that reads fail2ban's configuration unchanged."""

__version__ = "0.1.0"
