"""Native notification actions: ``banish-mail``, ``banish-webhook``, ``banish-apprise``,
``banish-jsonlog``, ``banish-exec`` -- each a subscriber of the ban event stream with its own
durable outbox in the store, its own pace (rate limit, digest, quiet hours) and retries.

Configuration is compiled by ``config/notify.py``; ``subscriber.Notifications`` is what the
daemon creates, configures at each (re)load and stops.
"""
