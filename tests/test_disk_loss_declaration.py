"""The durability suite's verdict on a store that lost its local disk
(suites/durability/test_crash.py, ``disk_loss_violations``), against stand-ins
of both wrong outcomes: a store declared in object storage that comes back
short or changed, and a store declared on its own volume whose data survived
the volume (the declaration is wrong). The real run is the suite itself:
``pytest suites/durability --storage s3 --no-skips`` proves the metrics store
in the bucket and the logs store on its own volume."""

from __future__ import annotations

from suites.durability.test_crash import disk_loss_violations

WRITTEN = [(1_000 + i, float(i)) for i in range(30)]


def test_a_store_in_object_storage_must_serve_exactly_what_was_written():
    assert disk_loss_violations("metrics", True, WRITTEN, list(WRITTEN)) == []
    short = disk_loss_violations("metrics", True, WRITTEN, WRITTEN[:-1])
    assert short == ["metrics: declared in object storage, but after the local disk was lost it served 29 items "
                     "where 30 were written (or other values)"]
    changed = WRITTEN[:-1] + [(WRITTEN[-1][0], -1.0)]
    assert disk_loss_violations("metrics", True, WRITTEN, changed), "a changed value is no exact read-back"
    assert disk_loss_violations("metrics", True, WRITTEN, []), "nothing at all is loss"


def test_a_store_on_its_own_volume_must_lose_exactly_what_was_on_it():
    assert disk_loss_violations("logs", False, WRITTEN, []) == []
    survived = disk_loss_violations("logs", False, WRITTEN, WRITTEN[:3])
    assert survived == ["logs: declared on its own volume (lost with it), but 3 of the 30 items written before the "
                        "volume was removed came back: the target should declare object_storage"]
