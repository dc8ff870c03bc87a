"""Mutation testing of the runtime library (functions/pipeline) with mutmut, one module at a time, each against the
fast unit tests that cover it; and of the state machine's Retry/Catch fields (statemachines/*.asl.json).

    .venv/bin/python scripts/mutate.py                 # every module below, then the ASL
    .venv/bin/python scripts/mutate.py events costs    # some modules (or "asl")
    .venv/bin/python scripts/mutate.py --survivors queries   # only the last run's survivors, with the current tests
    .venv/bin/python scripts/mutate.py --resume stream       # go on with a stopped run (the mutants not run yet)
    .venv/bin/python scripts/mutate.py stream --only load_users,hot_key   # those functions' mutants only

mutmut names a mutant after the module path it mutates (functions.pipeline.events) while the code runs as
``pipeline.events`` (tests/conftest.py puts functions/ on sys.path), so a mutant would never be switched on. Each
module is therefore run in a staging tree (.mutation/<module>/) where the library sits at the top level:
pipeline/ (mutated), tests/, functions/ without pipeline, and what the tests read (scripts, statemachines, model).
A module is a file (pipeline/events.py) or a package (pipeline/optimizer/: every file of it is mutated, and its
score is over all of them).
One worker (the machine is shared); mutmut runs, for each mutant, only the selected tests that reach its function
(under mutmut, tests/unit/conftest.py runs those without a mocked account first, then the fastest first).
Score = killed / mutants run, where survivors that only reword an error or log message are set apart (listed
in .mutation/<module>.survivors.txt; the score over all mutants is printed too). "No tests" mutants count as
survivors.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / ".mutation"
PYTHON = sys.executable

# test_optimizer.py without its five tests that run retrain_and_apply against moto (15-90 s each: most of it the 1,008
# Queries of a week's slots). Nearly every optimizer function is reached by them, so each surviving mutant ran them
# all (~160 s); test_optimizer_parts.py tests retrain_and_apply, decide's paths and save_models in seconds instead.
OPTIMIZER_END_TO_END = [f"tests/unit/test_optimizer.py::test_{name}" for name in (
    "optimizer_picks_the_known_optimum_on_a_synthetic_cost_surface",
    "optimizer_picks_a_different_optimum_when_the_surface_moves", "optimizer_respects_the_latency_slo",
    "when_no_setting_keeps_up_the_largest_is_chosen_and_the_decision_can_be_stored",
    "the_step_per_retrain_is_bounded", "the_batch_cannot_be_bigger_than_what_arrives_in_the_window",
    "optimizer_falls_back_to_the_configured_default_with_too_little_data",
    "holding_the_slo_does_not_wait_for_the_verdict_on_the_last_change",
    "the_model_extrapolates_the_per_batch_trend_beyond_the_sizes_seen",
    "cost_records_are_read_across_the_hours_of_the_history",
    "the_step_bound_counts_from_the_batches_the_setting_reaches_not_an_unreached_batch_size",
    "holding_the_slo_outranks_the_step_bound", "slot_rates_read_the_offered_load_from_small_batches",
    "the_decision_holds_the_slo_over_the_hours_it_stays_in_force",
    "a_pending_change_is_not_kept_when_it_would_break_the_slo_in_the_hour_ahead")]

# module -> the unit tests that cover it (the narrowest selection that exercises the module's behaviour)
TESTS = {
    "events": ["tests/unit/test_events.py", "tests/unit/test_event_limits.py"],
    "ingest": ["tests/unit/test_ingest.py"],
    "costs": ["tests/unit/test_costs.py", "tests/unit/test_cost_golden.py"],
    "variants": ["tests/unit/test_variants.py", "tests/unit/test_variant_golden.py"],
    "queries": ["tests/unit/test_queries.py"],
    "drift": ["tests/unit/test_drift_golden.py", "tests/unit/test_drift.py"],
    # stream: test_stream_units.py first (no mocked account; tests/unit/conftest.py orders them first under mutmut);
    # the 50,000-event scale test (test_stream_scale.py, ~16 s) is left out: it would be paid by every mutant
    "stream": ["tests/unit/test_stream_units.py", "tests/unit/test_process_stream.py",
               "tests/unit/test_stream_crashes.py", "tests/unit/test_warm_states.py"],
    "warm": ["tests/unit/test_warm_states.py"],
    "features": ["tests/unit/test_features.py", "tests/unit/test_feature_boundaries.py",
                 "tests/unit/test_feature_tiles.py", "tests/unit/test_feature_storage.py"],
    "optimizer": ["tests/unit/test_optimizer_parts.py", *OPTIMIZER_END_TO_END],
    "medians": ["tests/unit/test_medians.py", "tests/unit/test_queries.py"],
    "reconcile": ["tests/unit/test_reconcile.py"],
}
GOAL = {name: 0.80 if name == "optimizer" else 0.90 for name in TESTS}
COPY = ["tests", "scripts", "statemachines", "localcloud", "pyproject.toml", "cdk.json"]  # localcloud: test_drift.py evaluates alarms with it
KILLED = {1, 3}
NOT_RUN = {None, 34, 37}  # not checked, skipped, caught by a type checker (none configured)
# OMP_NUM_THREADS=1: mutmut forks each mutant from a process that has run the tests; once xgboost (test_drift.py
# trains a model) has started an OpenMP thread pool there, a forked child waits forever at its first parallel
# region (the pool's threads are not copied by fork). Its CPU time stays at 0, so mutmut's CPU-time limit never
# fires. With one OpenMP thread no pool is started.


def is_package(module: str) -> bool:
    """pipeline/<module>/ is a package (mutated whole) rather than the file pipeline/<module>.py."""
    return (ROOT / "functions" / "pipeline" / module).is_dir()


def stage(module: str) -> Path:
    """A fresh staging tree for one module (the stats mutmut keeps are per tree)."""
    tree = STAGE / module
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    shutil.copytree(ROOT / "functions" / "pipeline", tree / "pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "functions", tree / "functions", ignore=shutil.ignore_patterns("pipeline", "__pycache__"))
    for name in COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, tree / name)
    (tree / "model").symlink_to(ROOT / "model")
    _write_config(tree, module)
    return tree


def scores(tree: Path, module: str) -> dict:
    mutants = tree / "mutants" / "pipeline"
    metas = sorted((mutants / module).glob("*.py.meta")) if is_package(module) else [mutants / f"{module}.py.meta"]
    codes = {k: v for meta in metas for k, v in json.loads(meta.read_text())["exit_code_by_key"].items()}
    counted = {k: v for k, v in codes.items() if v not in NOT_RUN}
    killed = sum(v in KILLED for v in counted.values())
    survivors = sorted(k for k, v in counted.items() if v not in KILLED)
    return {"module": module, "mutants": len(codes), "run": len(counted), "killed": killed,
            "score": killed / len(counted) if counted else 0.0, "survivors": survivors}


STRING = re.compile(r"""[rbf]*("[^"]*"|'[^']*')|\bNone\b""")
MESSAGE_CALL = re.compile(r"raise |Error\(|BadRequest\(|NotFound\(|logger\.")


def is_message_wording(diff: str) -> bool:
    """A mutant that only rewrites the text of an error or log message (XX..XX, case, None): the message is for
    people; what the code does (the exception type, the error code, the status) is unchanged. Counted apart."""
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return (len(removed) == len(added) == 1 and bool(MESSAGE_CALL.search(removed[0]))
            and STRING.sub("S", removed[0]) == STRING.sub("S", added[0]))


def review_survivors(tree: Path, module: str, survivors: list[str]) -> list[str]:
    """Writes each surviving mutant's diff to .mutation/<module>.survivors.txt; returns the message-wording ones."""
    mutmut = str(Path(PYTHON).parent / "mutmut")
    diffs = {name: subprocess.run([mutmut, "show", name], cwd=tree, capture_output=True, text=True).stdout
             for name in survivors}
    wording = [name for name, diff in diffs.items() if is_message_wording(diff)]
    (STAGE / f"{module}.survivors.txt").write_text("".join(
        f"{'[message wording] ' if name in wording else ''}{name}\n{diff}\n" for name, diff in diffs.items()))
    return wording


# A mutant can allocate without end (stream's `list(map(round, SIX_DIGITS))` over itertools.repeat took 19 GB in five
# minutes, long before mutmut's time limit). Capped, its test gets a MemoryError: the mutant is killed, not the machine.
MEMORY_LIMIT = 4 * 2**30  # bytes of data segment per process; the fattest test process here uses well under 1 GB


def _mutmut_run(tree: Path, log, *names: str) -> None:
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))  # inherited by mutmut's children

    env = dict(os.environ, HYPOTHESIS_PROFILE="ci", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    subprocess.run([str(Path(PYTHON).parent / "mutmut"), "run", "--max-children", "1", *names], cwd=tree, env=env,
                   stdout=log, stderr=subprocess.STDOUT, check=False, preexec_fn=cap_memory)


def run_module(module: str, functions: tuple[str, ...] = ()) -> dict:
    """A fresh run of the module's mutants (of ``functions`` only, when given: function or method names, or mutant
    names such as pipeline.features.x_named__mutmut_5; the score is then over them)."""
    # mutmut names a method's mutants pipeline.stream.xǁClassǁmethod__mutmut_3, a function's x_name__mutmut_3
    return _run_and_score(stage(module), module, *(pattern for name in functions for pattern in (
        [name] if "__mutmut_" in name else [f"*.x_{name}__mutmut_*", f"*ǁ{name}__mutmut_*"])))


def _run_and_score(tree: Path, module: str, *names: str, log_mode: str = "w") -> dict:
    """mutmut on ``names`` (all mutants without a result when none) in the tree, its output in
    .mutation/<module>.log (why a run stopped early), then the tree's score."""
    started = time.monotonic()
    with (STAGE / f"{module}.log").open(log_mode) as log:
        _mutmut_run(tree, log, *names)
    return finish(tree, module, scores(tree, module) | {"seconds": round(time.monotonic() - started)})


def _write_config(tree: Path, module: str) -> None:
    """mutmut's settings in a fresh staging tree: what to mutate, the module's test selection (TESTS)."""
    tests = "\n    ".join(TESTS[module])
    (tree / "setup.cfg").write_text(f"""[mutmut]
source_paths = pipeline/
only_mutate = pipeline/{module}{"/*" if is_package(module) else ".py"}
pytest_add_cli_args_test_selection =
    {tests}
pytest_add_cli_args = -p no:cacheprovider -x
also_copy =
    functions/
    scripts/
    statemachines/
    localcloud/
    model/
    pyproject.toml
    cdk.json
""")


def _refresh(tree: Path, module: str) -> None:
    """Copies the current tests, and the library's modules other than the mutated one, into a staging tree. Its
    setup.cfg (the test selection) stays as the run was started: mutmut resets every verdict of a tree whose test
    selection changed. A module whose selection grew is re-run fresh (``--only`` its survivors' functions)."""
    shutil.copytree(ROOT / "tests", tree / "tests", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    # the library's other modules as they are now (the new tests may use them); the mutated module stays mutmut's
    for source in (ROOT / "functions" / "pipeline").iterdir():
        if source.name in (f"{module}.py", module, "__pycache__"):
            continue
        for copy in (tree / "pipeline", tree / "mutants" / "pipeline"):
            if source.is_dir():
                shutil.copytree(source, copy / source.name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, copy / source.name)


def rerun_survivors(module: str, only: tuple[str, ...] = ()) -> dict:
    """Runs again, in the module's existing staging tree with the current tests copied in, only the mutants that
    survived its last run (``--survivors``): minutes instead of a full run after tests were added. The other
    mutants keep their results (tests only get added, so a killed mutant stays killed)."""
    tree = STAGE / module
    previous = json.loads((STAGE / f"{module}.json").read_text())["survivors"]
    previous = [name for name in previous if not only or name in only]   # --only: these survivors alone
    _refresh(tree, module)
    if not previous:   # nothing to run: mutmut given no names would run every mutant without a result
        return finish(tree, module, scores(tree, module) | {"seconds": 0})
    return _run_and_score(tree, module, *previous)


def resume(module: str) -> dict:
    """Goes on with a run that was stopped (``--resume``): in the module's staging tree, with the current tests
    copied in, mutmut runs the mutants that have no result yet; the others keep theirs."""
    tree = STAGE / module
    _refresh(tree, module)
    return _run_and_score(tree, module, log_mode="a")


def finish(tree: Path, module: str, result: dict) -> dict:
    wording = review_survivors(tree, module, result["survivors"])
    counted = result["run"] - len(wording)
    result |= {"message_wording": len(wording), "score_all": result["score"],
               "score": result["killed"] / counted if counted else 0.0}
    (STAGE / f"{module}.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help=f"modules ({', '.join(TESTS)}) and/or asl; default: all")
    parser.add_argument("--survivors", action="store_true",
                        help="re-run only the last run's surviving mutants of each module, with the current tests")
    parser.add_argument("--rescore", action="store_true",
                        help="only score each module's staging tree as it stands (after a run that was stopped, or a "
                             "mutmut run started by hand there): mutants not run yet are left out of the count")
    parser.add_argument("--resume", action="store_true",
                        help="go on with each module's stopped run: the mutants with no result yet, current tests")
    parser.add_argument("--only", default="", metavar="F1,F2",
                        help="a fresh run of these functions' (or methods') mutants only, or of these mutants (full "
                             "names, as in <module>.survivors.txt); the score is over them")
    args = parser.parse_args(argv)
    targets = args.targets or [*TESTS, "asl"]
    results = []
    for target in targets:
        if target == "asl":
            sys.path.insert(0, str(ROOT))
            from scripts import mutate_asl

            results.append(mutate_asl.run())
        elif args.rescore:
            results.append(finish(STAGE / target, target, scores(STAGE / target, target) | {"seconds": 0}))
        else:
            only = tuple(filter(None, args.only.split(",")))
            results.append(rerun_survivors(target, only) if args.survivors else resume(target) if args.resume
                           else run_module(target, only))
        r = results[-1]
        wording = r.get("message_wording", 0)
        print(f"{r['module']:<10} {r['killed']:>4}/{r['run'] - wording:<4} killed  {100 * r['score']:5.1f} %"
              f"  (all {r['run']} mutants: {100 * r.get('score_all', r['score']):5.1f} %; {wording} message-wording"
              f" survivors set apart)  {r['seconds']} s", flush=True)
    below = [r["module"] for r in results if r["score"] < GOAL.get(r["module"], 0.90)]
    print(f"details: {STAGE}/<module>.json and <module>.survivors.txt (the surviving mutants' diffs)")
    if below:
        print("below the goal:", ", ".join(below))
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
