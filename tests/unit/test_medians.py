"""The median-of-medians sample (pipeline/medians.py): exact for the users it holds, idempotent on a re-run of a
batch, bounded per user, and a uniform (bottom-k by hash) sample past SAMPLE_USERS users."""
import statistics

from pipeline import medians, queries
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
    import json
    from pipeline import store
    held = json.loads(store.get_item("state", medians.SAMPLE_KEY)["users"])
    assert sorted(held) == expected
    assert queries.stats(settings())["median_of_medians_sampled"] is True
