"""The median-of-medians sample (pipeline/medians.py): exact for the users it holds, idempotent on a re-run of a
batch, bounded per user, and a uniform (bottom-k by hash) sample past SAMPLE_USERS users."""
import json
import statistics

import pytest
from botocore.exceptions import ClientError

from pipeline import medians, queries, store
from pipeline.settings import settings


def _p(event_id, user, ts, score):
    return {"event_id": event_id, "user_id": user, "ts": ts, "score": score}


def test_rolling_median_over_the_last_five_minutes_and_a_rerun_changes_nothing(aws):
    batch = [_p(f"e{i}", "u1", 1000.0 + 100 * i, i / 10) for i in range(6)]  # ts 1000..1500: window (1200, 1500]
    assert medians.update_sample(settings(), batch) == 1
    assert medians.median_of_medians(settings()) == (statistics.median([0.3, 0.4, 0.5]), False)
    medians.update_sample(settings(), batch)  # the same batch again (a redelivered execution)
    assert medians.median_of_medians(settings())[0] == 0.4
    medians.update_sample(settings(), [_p("late", "u1", 1250.0, 0.9)])  # older but inside the window
    assert medians.median_of_medians(settings())[0] == statistics.median([0.3, 0.4, 0.5, 0.9])


def test_a_very_active_user_keeps_the_newest_scores_only(aws):
    entry = medians.fold(None, "u1", [_p(f"e{i}", "u1", 1000.0 + i, float(i)) for i in range(100)])
    assert len(entry["w"]) == medians.MAX_SCORES and entry["m"] == statistics.median(range(68, 100))


def test_past_the_sample_size_the_smallest_hashes_are_kept(aws, monkeypatch):
    monkeypatch.setattr(medians, "SAMPLE_USERS", 8)
    users = [f"user-{n}" for n in range(40)]
    medians.update_sample(settings(), [_p(f"e-{u}", u, 1000.0, 0.5) for u in users])
    expected = sorted(medians.user_hash(u) for u in users)[:8]
    value, sampled = medians.median_of_medians(settings())
    assert sampled and value == 0.5
    assert sorted(_held()) == expected
    assert queries.stats(settings())["median_of_medians_sampled"] is True


def _held() -> dict:
    return json.loads(store.get_item("state", medians.SAMPLE_KEY)["users"])


def test_a_full_sample_takes_smaller_hashes_and_turns_larger_ones_away(aws, monkeypatch):
    monkeypatch.setattr(medians, "SAMPLE_USERS", 8)
    users = sorted((f"user-{n}" for n in range(40)), key=medians.user_hash)
    smallest, held, above = users[0], users[1:9], users[9:]
    medians.update_sample(settings(), [_p(f"e-{u}", u, 1000.0, 0.5) for u in held])
    assert medians.update_sample(settings(), [_p(f"x-{u}", u, 1000.0, 0.9) for u in above]) == 0
    assert sorted(_held()) == sorted(map(medians.user_hash, held))
    largest = held[-1]  # in the sample with the largest hash it holds: still updated
    assert medians.update_sample(settings(), [_p("again", largest, 1001.0, 0.9)]) == 1
    assert _held()[medians.user_hash(largest)]["m"] == 0.7
    assert medians.update_sample(settings(), [_p("new", smallest, 1000.0, 0.1)]) == 1
    assert sorted(_held()) == sorted(map(medians.user_hash, [smallest, *held[:-1]]))  # the largest made way


def test_ties_at_the_cut_are_kept_by_event_id_not_by_score(aws):
    """A user with more than MAX_SCORES events at one time keeps MAX_SCORES of them chosen by event id hash:
    choosing by score would bias their median (here upwards)."""
    events = [_p(f"e{i}", "u1", 1000.0, i / 100) for i in range(2 * medians.MAX_SCORES)]
    kept = sorted(events, key=lambda p: medians._event_key(p["event_id"]))[-medians.MAX_SCORES:]
    entry = medians.fold(None, "u1", events)
    assert sorted(key for _, _, key in entry["w"]) == sorted(medians._event_key(p["event_id"]) for p in kept)
    assert entry["m"] == round(statistics.median(p["score"] for p in kept), 6)


def test_a_concurrent_update_is_read_again_and_neither_is_lost(aws, monkeypatch):
    """The two shards' executions may fold their batches in at once: the one whose conditional write loses reads
    the item again and writes once more."""
    real_put, raced = store.put_item, []

    def put_after_a_competitor(*args, **kwargs):
        if not raced:
            raced.append(True)
            medians.update_sample(settings(), [_p("theirs", "u2", 1000.0, 0.2)])  # lands between our read and write
        return real_put(*args, **kwargs)
    monkeypatch.setattr(store, "put_item", put_after_a_competitor)
    assert medians.update_sample(settings(), [_p("ours", "u1", 1000.0, 0.8)]) == 1
    assert sorted(_held()) == sorted(map(medians.user_hash, ["u1", "u2"]))
    assert store.get_item("state", medians.SAMPLE_KEY)["version"] == 2  # one write each


def test_only_a_lost_race_is_retried(aws, monkeypatch):
    calls = []

    def failing(code):
        def put(*args, **kwargs):
            calls.append(code)
            raise ClientError({"Error": {"Code": code, "Message": "-"}}, "PutItem")
        return put
    monkeypatch.setattr(store, "put_item", failing("ProvisionedThroughputExceededException"))
    with pytest.raises(ClientError):
        medians.update_sample(settings(), [_p("e1", "u1", 1000.0, 0.5)])
    assert len(calls) == 1  # raised at once: the SDK has retried it already
    calls.clear()
    monkeypatch.setattr(store, "put_item", failing("ConditionalCheckFailedException"))
    with pytest.raises(RuntimeError, match="kept changing"):
        medians.update_sample(settings(), [_p("e1", "u1", 1000.0, 0.5)])
    assert len(calls) == medians._ATTEMPTS
