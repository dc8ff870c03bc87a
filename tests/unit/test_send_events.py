"""scripts/send_events.py: a second run sends new events, not duplicates of the first; --seed repeats a run."""
from scripts.send_events import synthetic_events


def test_event_ids_are_new_on_every_run_unless_seeded():
    first, second = synthetic_events(20), synthetic_events(20)
    assert len({e["event_id"] for e in first}) == 20
    assert not {e["event_id"] for e in first} & {e["event_id"] for e in second}
    assert [e["event_id"] for e in synthetic_events(5, seed=3)] == [e["event_id"] for e in synthetic_events(5, seed=3)]
    assert {e["user_id"] for e in synthetic_events(5, user="alice")} == {"alice"}
