"""Golden A/B assignments: fixed user ids pinned to their variants, so a change of the hash or of the slicing (which
would move users between variants at deploy) fails here. The points were worked out once from the documented rule
(first 8 bytes of SHA-256(user_id), big-endian, / 2**64) and are written out, not recomputed."""
import json

import pytest

from pipeline import variants
from pipeline.variants import VariantSpec, assign, parse, user_point

USERS = [f"user-{i}" for i in range(12)]
POINTS = [0.49874, 0.776406, 0.848319, 0.571048, 0.744905, 0.364825, 0.446483, 0.035652, 0.297979, 0.080101,
          0.893247, 0.485363]


def test_user_points_are_pinned():
    assert user_point("user-1") == 0.7764059241441005
    assert [round(user_point(u), 6) for u in USERS] == POINTS


def test_golden_assignment_of_a_50_50_split():
    ab = [VariantSpec("A", 0.5), VariantSpec("B", 0.5)]
    assert [assign(u, ab).name for u in USERS] == ["A", "B", "B", "B", "B", "A", "A", "A", "A", "A", "B", "A"]


def test_weights_are_normalised_and_slices_taken_in_order():
    three = [VariantSpec("A", 1), VariantSpec("B", 2), VariantSpec("C", 1)]   # [0, .25) [.25, .75) [.75, 1)
    assert [assign(u, three).name for u in USERS] == ["B", "C", "C", "B", "B", "B", "B", "A", "B", "A", "C", "B"]
    # a boundary just above and just below user-0's point (0.49874...)
    assert assign("user-0", [VariantSpec("A", 0.4988), VariantSpec("B", 0.5012)]).name == "A"
    assert assign("user-0", [VariantSpec("A", 0.4987), VariantSpec("B", 0.5013)]).name == "B"


def test_zero_weights_get_nobody_unless_all_are_zero():
    """(A negative weight never gets here: parse refuses it, test_variants.py.)"""
    assert {assign(u, [VariantSpec("A", 0), VariantSpec("B", 1)]).name for u in USERS} == {"B"}
    assert {assign(u, [VariantSpec("A", 1), VariantSpec("B", 0)]).name for u in USERS} == {"A"}
    all_zero = [VariantSpec("A", 0), VariantSpec("B", 0)]
    assert [assign(u, all_zero).name for u in USERS] == ["A", "B", "B", "B", "B", "A", "A", "A", "A", "A", "B", "A"]
    with pytest.raises(ValueError):
        assign("user-0", [])


def test_parse_fills_defaults_from_the_stack():
    raw = [{"name": "p", "weight": 0.7, "kind": "pytorch", "model_version": "t-1", "model_data_url": "s3://b/k",
            "endpoint": "ep-p"}, {"name": "q"}]
    assert parse(json.dumps(raw), "xgb-9") == parse(raw, "xgb-9") == [
        VariantSpec("p", 0.7, "pytorch", "t-1", "s3://b/k", "ep-p"), VariantSpec("q", 1.0, "xgboost", "xgb-9", "", "")]
    assert parse("", "x") == parse(None) == parse([]) == []
    assert parse([{"name": "q"}])[0].model_version == ""
    assert parse([{"name": 1, "weight": "2", "model_version": None}], "v")[0] == VariantSpec("1", 2.0, "xgboost", "v")


def test_targets_count_variants_sharing_the_default_endpoint():
    live = [VariantSpec("a", 1), VariantSpec("b", 1, endpoint="ep"), VariantSpec("c", 1, endpoint="other")]
    assert variants.targets(live, "ep") == {"a": variants.Target("ep", "a"), "b": variants.Target("ep", "b"),
                                            "c": variants.Target("other", None)}


def test_live_variants_take_the_deployed_model_version_where_none_is_recorded(aws, monkeypatch):
    import dataclasses

    from pipeline import store
    from pipeline.settings import Settings

    monkeypatch.setenv("MODEL_VARIANTS", json.dumps([{"name": "primary", "weight": 1}]))
    monkeypatch.setenv("MODEL_VERSION", "xgb-7")
    assert [v.model_version for v in variants.live_variants(Settings.from_env())] == ["xgb-7"]
    store.put_item("state", {"pk": "model", "variants": [{"name": "primary", "weight": 1}, {"name": "b", "weight": 1,
                                                                                           "model_version": "t-2"}]})
    assert [v.model_version for v in variants.live_variants(Settings.from_env())] == ["xgb-7", "t-2"]
    # no state table configured: the stack's variants, and no read at all
    no_table = dataclasses.replace(Settings.from_env(), state_table="")
    monkeypatch.setattr(store, "get_item", lambda *a, **k: pytest.fail("read the state table"))
    assert [v.name for v in variants.live_variants(no_table)] == ["primary"]
