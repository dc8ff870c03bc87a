"""Self-tuning batch size: learn cost per event and latency from the cost records, pick the cheapest batch size
(and batching window) that keeps the latency SLO, and apply it (event source mapping BatchSize and
MaximumBatchingWindowInSeconds, and the invocation chunk size in the STATE_TABLE "config" item).

- records.py: the training data (the newest cost records of every 10-minute slot of the last HISTORY_DAYS, the
  training sample, the targets: tunable cost per event, processing latency).
- model.py: two scikit-learn RandomForests on the cost records (each on the residuals of a physical baseline),
  features = FEATURES (the batch's events, i.e. the batch size it turned out to have, and the workload: per-shard
  arrival rate, bytes per event, hour of day, recent process_stream and invoke_model seconds per event). Targets:
  the tunable cost per event (the cost lines a batch setting can change, see costs.py; shard-hours and other
  attributed lines do not depend on it) and the batch's processing latency (latency of its oldest event minus what
  that event waited before process_stream started).
- queueing.py: the batch the mapping would produce for a (BatchSize, window) at an arrival rate, from how a shard
  is read (an idle shard is polled once per second, a busy one as soon as process_stream returns; the window adds
  what arrives within it, up to BatchSize), with its p99 wait and whether the shard keeps up; the arrival-rate
  scenarios (now, and the hours of the day the decision will be in force for) measured from the records, each
  batch in the 10-minute slot its oldest event arrived in. While the load now follows the daily profile (within
  x1.5 of what its hours saw before) and the hours ahead have a history, the setting need only keep up at the
  rates now: the history forecasts the hour ahead, and at a step of the profile now is the hour before's load.
- policy.py: the choice (pure): over every (BatchSize B within the step bound, window W in 0..floor(SLO) s),
  predicted latency = wait + predicted processing + the 99th percentile of the latency model's out-of-bag error.
  Keep candidates within the SLO whose throughput keeps up with the arrival rate; take the cheapest predicted cost
  per event; among equals, stay nearest the current BatchSize, then the shorter window. Guard rails: a retrain
  moves BatchSize by at most MAX_STEP_FACTOR, measured down from the batches the current setting reaches (p90 of
  its recent batches: a BatchSize they never reach is not binding) and up from BatchSize, unless no setting within
  that bound is predicted to hold the SLO (then the cheapest one that does); too little data -> the configured
  default.
- rollback.py: after a change, the next retrain compares the measured cost per event under the new setting with
  the setting before at comparable arrival rates (at least MIN_COMPARE batches each); if the new one is more than
  ROLLBACK_TOLERANCE dearer and the one before held the SLO in SLO_SHARE of those batches, it rolls back, records
  why, and keeps that size out of the candidates for REJECT_SECONDS. A move away from a setting predicted to break
  the SLO is made for the SLO and not judged on cost. ``decide`` = that check, then choose.
- apply.py: ``retrain_and_apply``, what the scheduled function runs: read, decide, save the models, update the
  event source mapping and the "config" item.

Needs scikit-learn and numpy (the retrain function runs from the ML container image). The names below are what
callers use (``from pipeline import optimizer``; ``optimizer.choose``...). The tuning constants are read in the
module that defines them, so an ablation sets them there (``optimizer.policy.MAX_STEP_FACTOR``,
``optimizer.queueing.RATE_QUANTILES``); they are not re-exported, where setting them would change nothing.
"""
from .apply import retrain_and_apply
from .model import FEATURES, Hybrid, feature_matrix, feature_row
from .policy import Decision, choose, fallback
from .queueing import arrival_time99, decision_hours, predicted_batch, rate_scenarios, slot_rates
from .records import HISTORY_DAYS, RECORDS_PER_HOUR, SLOT_SECONDS, load_cost_records, training_sample
from .rollback import decide, evaluate_change, record_change

__all__ = ["FEATURES", "HISTORY_DAYS", "RECORDS_PER_HOUR", "SLOT_SECONDS", "Decision", "Hybrid", "arrival_time99",
           "choose", "decide", "decision_hours", "evaluate_change", "fallback", "feature_matrix", "feature_row",
           "load_cost_records", "predicted_batch", "rate_scenarios", "record_change", "retrain_and_apply",
           "slot_rates", "training_sample"]
