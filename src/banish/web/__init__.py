"""``banish web``: the local dashboard (app.py) and its packaged templates and static files."""
