"""Load this before anything imports ssl: ``pytest -p loadgen.gevent_first suites/load``.

locust runs on gevent and patches the standard library when imported; patching
ssl after requests (the stackproof plugins) imported it recurses forever. As a
pytest plugin given with ``-p``, this module is imported before the entry-point
plugins, so the patch comes first."""

from gevent import monkey

monkey.patch_all()
