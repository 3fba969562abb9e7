"""The daemon: the only place where stages are wired together (one asyncio runtime)."""
