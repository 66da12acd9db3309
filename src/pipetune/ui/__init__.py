"""``pipetune ui``: a local dashboard over the store (read-only), for every run and study ever recorded."""
