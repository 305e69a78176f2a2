"""Load generation for the write path with locust (locustfiles, users, shapes,
fast payload generators). Uses harness only."""
