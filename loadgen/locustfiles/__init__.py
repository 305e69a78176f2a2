"""locustfiles: ``locust -f loadgen/locustfiles/<signal>.py``, or ``stackproof load``,
which sets the environment they read (see ``loadgen.locustfiles.common``)."""
