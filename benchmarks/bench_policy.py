"""Policy evaluation throughput: the gate's decision path against the bare Rego engine.

For each scenario, in the same process and interleaved:

* ``raw``    — regorus' compiled VM driven directly on the same program (the bundle's one
  entry point, ``data.lacuna.decisions``): JSON-encode the input, ``set_input_json``,
  ``execute_entry_point``, decode the answer. The ceiling for any Python wrapper.
* ``decide`` — ``PolicyDecider.decide`` over ``EmbeddedRegoEngine`` with its defaults (reload
  check every 2 s, interpreter shadow check every 1,000 evaluations): answers validated into
  ``PolicyResult``s, combined into a ``Decision`` (uuid, timestamp, bundle revision).

Scenarios: ``seed`` (PROPRIETARY + PII to /tmp in production: every policy denies, the heaviest
case), ``allowed`` (PII exported to a governed location for an allowed purpose: every policy
runs, all allow), ``read`` (a plain read of public data) and ``mix`` (a rotating sample of 64
documents from the Rego test grid).

A second table compares engines on the seed input, answers included: regorus VM, regorus
interpreter, and regopy (rego-cpp) with a prebuilt bundle, when installed.

    python benchmarks/bench_policy.py            # 20,000 evaluations per run, 3 runs
    python benchmarks/bench_policy.py --quick    # 2,000 evaluations, 2 runs
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import regorus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "policy"))  # the scenario builders the tests use
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import Check, Row, write_results
from policy_helpers import scenario

from lacuna_orchestration.model import DatasetRef, Tier
from lacuna_orchestration.policy.decide import PolicyDecider
from lacuna_orchestration.policy.engine import ENTRYPOINT
from lacuna_orchestration.policy.rego import EmbeddedRegoEngine, load_bundle

POLICY_DIR = ROOT / "policies"
TARGETS = {"decide_evals_per_s": 20_000, "decide_vs_raw_max": 1.3}


def _scenarios() -> dict[str, list[tuple[dict[str, Any], Any]]]:
    governed = DatasetRef("file", "/governed/workspace/export.csv")
    mix = []
    for tier, tags, dest, env, purpose, domain, kind in itertools.product(
        [Tier.PUBLIC, Tier.INTERNAL, Tier.PROPRIETARY],
        [(), ("PII", "GDPR")],
        [DatasetRef("file", "/tmp/x.csv"), governed, DatasetRef("s3://partner", "x.csv")],
        ["production", "development"],
        ["", "analytics"],
        ["", "marketing"],
        ["export", "transform"],
    ):
        mix.append(
            scenario(
                kind,
                tier=tier,
                tags=tags,
                destination=dest,
                environment=env,
                purpose=purpose,
                domain=domain,
            )
        )
    return {
        "seed": [scenario()],
        "allowed": [scenario(tags=("PII", "GDPR"), destination=governed, purpose="analytics")],
        "read": [scenario("read", tier=Tier.PUBLIC, tags=(), destination=None)],
        "mix": mix[:: max(1, len(mix) // 64)][:64],
    }


def _raw_runner() -> Callable[[dict[str, Any]], Any]:
    bundle = load_bundle(POLICY_DIR)
    program = regorus.Program.compile_from_modules(
        bundle.data_json, list(bundle.modules), [ENTRYPOINT]
    )
    vm = regorus.Rvm()
    vm.load_program(program)
    vm.set_data_json(bundle.data_json)

    def run(doc: dict[str, Any]) -> Any:
        vm.set_input_json(orjson.dumps(doc).decode())
        return orjson.loads(vm.execute_entry_point(ENTRYPOINT))

    return run


def _measure(fn: Callable[[int], Any], n: int, size: int) -> tuple[float, list[int]]:
    """Evaluations/s over ``n`` calls, and each call's duration in ns."""
    durations = [0] * n
    clock = time.perf_counter_ns
    start = clock()
    for i in range(n):
        t = clock()
        fn(i % size)
        durations[i] = clock() - t
    elapsed = clock() - start
    return n / (elapsed / 1e9), durations


def _pct(durations: list[int], q: float) -> float:
    ordered = sorted(durations)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def _callables(
    raw: Callable[[dict[str, Any]], Any],
    decider: PolicyDecider,
    items: list[tuple[dict[str, Any], Any]],
) -> tuple[Callable[[int], Any], Callable[[int], Any]]:
    """The two paths over the same documents, indexed so the timing loop stays bare."""
    docs = [doc for doc, _ in items]
    classes = [c for _, c in items]
    actions = [doc["action"] for doc in docs]

    def raw_call(i: int) -> Any:
        return raw(docs[i])

    def decide_call(i: int) -> Any:
        return decider.decide(
            docs[i],
            action=actions[i],
            source_label="customers",
            destination_label="target",
            classification=classes[i],
        )

    return raw_call, decide_call


def bench_paths(n: int, runs: int) -> dict[str, Any]:
    raw = _raw_runner()
    decider = PolicyDecider(EmbeddedRegoEngine(POLICY_DIR))
    out: dict[str, Any] = {}
    for name, items in _scenarios().items():
        docs = [doc for doc, _ in items]
        raw_call, decide_call = _callables(raw, decider, items)
        for i in range(len(docs)):  # warm up, and the two paths must agree
            assert [e["decision"]["allow"] for e in raw_call(i)] == [
                r.allow for r in decider.engine.evaluate(docs[i])
            ]
            decide_call(i)
        raw_rates, decide_rates, raw_ns, decide_ns = [], [], [], []
        for _ in range(runs):
            rate, ns = _measure(raw_call, n, len(docs))
            raw_rates.append(rate)
            raw_ns += ns
            rate, ns = _measure(decide_call, n, len(docs))
            decide_rates.append(rate)
            decide_ns += ns
        raw_rate, decide_rate = statistics.median(raw_rates), statistics.median(decide_rates)
        out[name] = {
            "documents": len(docs),
            "raw_evals_per_s": round(raw_rate),
            "decide_evals_per_s": round(decide_rate),
            "decide_vs_raw": round(raw_rate / decide_rate, 3),
            "raw_p50_us": round(_pct(raw_ns, 0.50), 1),
            "raw_p99_us": round(_pct(raw_ns, 0.99), 1),
            "decide_p50_us": round(_pct(decide_ns, 0.50), 1),
            "decide_p99_us": round(_pct(decide_ns, 0.99), 1),
        }
    return out


def _rate(fn: Callable[[], Any], seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def bench_engines(seconds: float) -> dict[str, Any]:
    """regorus VM vs regorus interpreter vs regopy on the seed input, answers compared."""
    doc, _ = scenario()
    doc_json = orjson.dumps(doc).decode()
    bundle = load_bundle(POLICY_DIR)
    raw = _raw_runner()
    reference = raw(doc)
    rows: dict[str, Any] = {}
    rows["regorus-vm"] = {"evals_per_s": round(_rate(lambda: raw(doc), seconds)), "same": True}

    interp = regorus.Engine()
    for path, text in bundle.modules:
        interp.add_policy(path, text)
    interp.add_data_json(bundle.data_json)

    def run_interp() -> Any:
        interp.set_input_json(doc_json)
        return orjson.loads(interp.eval_rule_as_json(ENTRYPOINT))

    rows["regorus-interpreter"] = {
        "evals_per_s": round(_rate(run_interp, seconds)),
        "same": run_interp() == reference,
    }
    try:
        import regopy
        from regopy.interpreter import rego_bundle_query_entrypoint
        from regopy.rego_shared import rego_output_string
    except ImportError:
        rows["regopy-bundle"] = {"skipped": "regopy is not installed"}
        return rows
    rp = regopy.Interpreter()
    try:
        for path, text in bundle.modules:
            rp.add_module(path, text)
        rp.add_data_json(bundle.data_json)
        compiled = rp.build(None, ["lacuna/decisions"])
    except Exception as err:  # noqa: BLE001 - reported, not raised: this is a comparison
        rows["regopy-bundle"] = {"error": str(err).splitlines()[0]}
        return rows

    def run_regopy() -> str:
        rp.set_input_term(doc_json)
        return str(
            rego_output_string(
                rego_bundle_query_entrypoint(rp._impl, compiled._impl, "lacuna/decisions")
            )
        )

    text = run_regopy()
    try:
        same: Any = json.loads(text)["expressions"][0] == reference
    except (ValueError, KeyError, IndexError) as err:
        same = f"no: unparseable output ({err})"
    rows["regopy-bundle"] = {
        "evals_per_s": round(_rate(run_regopy, seconds)),
        "same": same,
        "sample": text[text.find("Cannot") :][:60],
    }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, runs, seconds = (2_000, 2, 0.5) if args.quick else (20_000, 3, 2.0)

    paths = bench_paths(n, runs)
    engines = bench_engines(seconds)

    print(
        f"\nPolicy evaluation, {n:,} evaluations x {runs} runs (median rate), "
        f"Python {platform.python_version()}"
    )
    header = (
        f"{'scenario':10} {'raw/s':>9} {'decide/s':>9} {'ratio':>6} "
        f"{'raw p50':>8} {'raw p99':>8} {'dec p50':>8} {'dec p99':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, r in paths.items():
        print(
            f"{name:10} {r['raw_evals_per_s']:>9,} {r['decide_evals_per_s']:>9,} "
            f"{r['decide_vs_raw']:>6.2f} {r['raw_p50_us']:>6.1f}µs {r['raw_p99_us']:>6.1f}µs "
            f"{r['decide_p50_us']:>6.1f}µs {r['decide_p99_us']:>6.1f}µs"
        )
    print("\nEngines on the seed input (all four policies deny)")
    for name, r in engines.items():
        if "evals_per_s" in r:
            print(f"{name:22} {r['evals_per_s']:>9,}/s  same answer as regorus VM: {r['same']}")
        else:
            print(f"{name:22} {r}")
    checks: dict[str, bool] = {}
    for name, r in paths.items():
        label = f"{name}: decide >= {TARGETS['decide_evals_per_s']:,}/s"
        checks[label] = r["decide_evals_per_s"] >= TARGETS["decide_evals_per_s"]
    for name, r in paths.items():
        label = f"{name}: decide <= {TARGETS['decide_vs_raw_max']}x raw"
        checks[label] = r["decide_vs_raw"] <= TARGETS["decide_vs_raw_max"]
    print("\nTargets")
    for label, ok in checks.items():
        print(f"  {'met ' if ok else 'MISS'}  {label}")
    payload = {
        "benchmark": "policy",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "evaluations_per_run": n,
        "runs": runs,
        "targets": TARGETS,
        "paths": paths,
        "engines": engines,
        "targets_met": checks,
    }
    print(f"\nwrote {write_results('policy', rows_of(paths), payload)}")


def rows_of(paths: dict[str, Any]) -> list[Row]:
    """The harness's rows: decide/s next to the bare engine, ratio as time (decide / raw)."""
    checks = (Check("ours", ">=", TARGETS["decide_evals_per_s"]),
              Check("ratio", "<=", TARGETS["decide_vs_raw_max"]))
    return [
        Row(f"embedded policy evaluation, {name} scenario", "/s", r["decide_evals_per_s"],
            baseline=r["raw_evals_per_s"], baseline_label="regorus VM, same query",
            ratio=r["decide_vs_raw"], ratio_label="decide time / engine time", checks=checks,
            note=f"p99 {r['decide_p99_us']} µs vs {r['raw_p99_us']} µs")
        for name, r in paths.items()
    ]


if __name__ == "__main__":
    main()
