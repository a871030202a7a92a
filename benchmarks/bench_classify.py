"""Benchmark the L1 heuristic classifier per column, next to plain ``re`` over the same words.

Targets (issue 3): p99 < 50 µs per column and >= 20,000 columns/s.

The name mix is generated (seeded) from the words the rules know plus ordinary warehouse
words, in every casing style (snake, camel, Pascal, UPPER, kebab, dotted), so that most names
are distinct and the memo cannot hide the cost. Modes:

* ``cold, no caches``  every cache (names and words) cleared before each call: the full cost of
  normalising and matching a name never seen, with nothing learnt from earlier names;
* ``cold, first sight`` fresh caches, each distinct name once: what a warehouse scan costs
  (name memo misses; word memo warms because words repeat across names);
* ``cached``            the same names again (memo hits);
* ``with 20 samples``   name cached, 20 sample values through the value recognisers;
* ``re loop``           baseline: per rule, one ``re.search`` of its words (separators
  flexible) over the lower-cased name - the obvious implementation;
* ``re alternation``    baseline: one regex of all rules' words, first match only.

Run: ``.venv/bin/python benchmarks/bench_classify.py [--names 5000] [--repeats 3] [--quick]``
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Check, Row, write_results

from lacuna_orchestration.classify.heuristics import (
    COLUMN,
    HeuristicClassifier,
    load_rules,
)

TARGET_P99_US = 50.0
TARGET_PER_S = 20_000

NEUTRAL = (  # noqa: SIM905 - word lists read best as text
    "order status created updated deleted quantity sku product category description title "
    "comment note event type time page url referrer agent browser campaign clicks impressions "
    "conversion weight height width length color size brand vendor supplier warehouse store "
    "region segment channel source system batch load version etag uuid row record priority "
    "severity ticket resolution rating review score rank tier level stage step flag active "
    "enabled start end duration latency response error message log thread parent root depth "
    "file path table column schema host port protocol session request shipment delivery "
    "route carrier tracking inventory stock unit lot serial model release build metric value"
).split()
SENSITIVE = (  # noqa: SIM905
    "email phone mobile ssn passport tax_id iban card_number cvv ip_address device_id dob "
    "birth_date age first_name last_name full_name surname address street postcode zip city "
    "latitude longitude mrn diagnosis icd10 medication patient salary bonus revenue price "
    "amount balance password api_key token secret gender ethnicity religion customer_id "
    "user_id username country currency holiday"
).split()
PREFIXES = [
    "",
    "",
    "",
    "customer",
    "user",
    "billing",
    "shipping",
    "src",
    "raw",
    "stg",
    "prev",
    "primary",
    "home",
    "work",
    "tmp",
    "total",
    "avg",
    "hashed",
    "masked",
    "dim",
    "new",
]
SUFFIXES = [
    "",
    "",
    "",
    "id",
    "code",
    "v2",
    "2",
    "hash",
    "ts",
    "at",
    "flag",
    "pct",
    "name",
    "type",
    "raw",
    "old",
    "key",
    "sha256",
    "count",
    "date",
]


def style(words: list[str], how: int) -> str:
    if how == 0:
        return "_".join(words)
    if how == 1:
        return words[0] + "".join(w.capitalize() for w in words[1:])
    if how == 2:
        return "".join(w.capitalize() for w in words)
    if how == 3:
        return "_".join(words).upper()
    if how == 4:
        return "-".join(words)
    return ".".join(words)


def name_mix(count: int, seed: int = 20261123) -> list[str]:
    """``count`` distinct names, about 35% built around a sensitive word."""
    rng = random.Random(seed)
    names: dict[str, None] = {}
    while len(names) < count:
        core = rng.choice(SENSITIVE) if rng.random() < 0.35 else rng.choice(NEUTRAL)
        words = [w for w in (rng.choice(PREFIXES), *core.split("_"), rng.choice(SUFFIXES)) if w]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), rng.choice(NEUTRAL))
        names.setdefault(style(words, rng.randrange(6)), None)
    return list(names)


# -- baselines ----------------------------------------------------------------------------


def _phrase_regex(phrase: str) -> str:
    return r"[\W_]*".join(re.escape(w) for w in re.split(r"[\s_]+", phrase.lower()) if w)


def baseline_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """Per column rule, its words as one alternation between separators (same words)."""
    out = []
    for rule in load_rules().rules:
        if COLUMN not in rule.applies_to or not rule.words:
            continue
        body = "|".join(_phrase_regex(w) for w in rule.words)
        out.append((rule.id, re.compile(rf"(?:^|[\W_])(?:{body})(?:$|[\W_])")))
    return out


def baseline_loop(patterns: list[tuple[str, re.Pattern[str]]]) -> Callable[[str], list[str]]:
    def classify(name: str) -> list[str]:
        text = name.lower()
        return [rule for rule, pattern in patterns if pattern.search(text)]

    return classify


def baseline_alternation(patterns: list[tuple[str, re.Pattern[str]]]) -> Callable[[str], str]:
    joined = re.compile("|".join(f"(?P<r{i}>{p.pattern})" for i, (_, p) in enumerate(patterns)))
    ids = [rule for rule, _ in patterns]

    def classify(name: str) -> str:
        found = joined.search(name.lower())
        return ids[int(found.lastgroup[1:])] if found and found.lastgroup else ""

    return classify


# -- measuring ----------------------------------------------------------------------------


def per_call(
    fn: Callable[[str], object], names: Sequence[str], before: Callable[[], None] | None = None
) -> list[float]:
    """Microseconds per call, one timer around each call."""
    clock = time.perf_counter_ns
    out = []
    for name in names:
        if before is not None:
            before()
        start = clock()
        fn(name)
        out.append((clock() - start) / 1000)
    return out


def throughput(fn: Callable[[str], object], names: Sequence[str]) -> float:
    start = time.perf_counter()
    for name in names:
        fn(name)
    return len(names) / (time.perf_counter() - start)


def summary(mode: str, micros: list[float], per_s: float) -> dict[str, Any]:
    ordered = sorted(micros)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        "mode": mode,
        "calls": len(micros),
        "p50_us": round(pct(0.50), 2),
        "p99_us": round(pct(0.99), 2),
        "max_us": round(ordered[-1], 2),
        "mean_us": round(statistics.fmean(micros), 2),
        "columns_per_s": round(per_s),
    }


def run(count: int, repeats: int) -> dict[str, Any]:
    names = name_mix(count)
    rows: dict[str, list[dict[str, Any]]] = {}
    patterns = baseline_patterns()
    loop, alternation = baseline_loop(patterns), baseline_alternation(patterns)
    samples = ["ada@example.com", "n/a", "4111 1111 1111 1111", "+44 20 7946 0958"] * 5
    hits = {}
    for _ in range(repeats):
        gc.collect()
        clf = HeuristicClassifier.from_file()
        classify = clf.classify_column

        strict = per_call(classify, names, clf.clear_caches)
        clf.clear_caches()
        first = per_call(classify, names)
        clf.clear_caches()
        first_rate = throughput(classify, names)
        cached = per_call(classify, names)
        cached_rate = throughput(classify, names)

        def with_values(name: str, c: Callable[..., object] = classify) -> object:
            return c(name, samples=samples)

        valued = per_call(with_values, names[:1000])
        valued_rate = throughput(with_values, names[:1000])
        base_loop = per_call(loop, names)
        base_alt = per_call(alternation, names)
        measured = [
            ("L1 cold, no caches", strict, 1e6 / statistics.fmean(strict)),
            ("L1 cold, first sight", first, first_rate),
            ("L1 cached", cached, cached_rate),
            ("L1 cached name + 20 samples", valued, valued_rate),
            ("re loop, one regex per rule", base_loop, throughput(loop, names)),
            ("re one alternation", base_alt, throughput(alternation, names)),
        ]
        for mode, micros, rate in measured:
            rows.setdefault(mode, []).append(summary(mode, micros, rate))
        hits = {
            "l1_names_with_a_rule_match": sum(bool(classify(n).evidence) for n in names),
            "re_loop_names_with_a_match": sum(bool(loop(n)) for n in names),
        }
    results = []
    for mode, runs in rows.items():
        best = sorted(runs, key=lambda r: float(r["p99_us"]))[len(runs) // 2]  # median run
        results.append(best)
    return {
        "benchmark": "classify L1 per column",
        "distinct_names": len(names),
        "repeats": repeats,
        "targets": {"p99_us": TARGET_P99_US, "columns_per_s": TARGET_PER_S},
        "results": results,
        "matches": hits,
        "examples": names[:12],
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }


def print_table(report: dict[str, Any]) -> None:
    results = report["results"]
    assert isinstance(results, list)
    print(
        f"L1 heuristic classifier - {report['distinct_names']} distinct column names, "
        f"median of {report['repeats']} runs"
    )
    header = f"{'mode':34} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>9} {'columns/s':>11}"
    print(header)
    print("-" * len(header))
    for row in results:
        print(
            f"{row['mode']:34} {row['p50_us']:>8} {row['p99_us']:>8} {row['max_us']:>9} "
            f"{row['columns_per_s']:>11,}"
        )
    print(f"targets: p99 < {TARGET_P99_US:.0f} µs, >= {TARGET_PER_S:,} columns/s")
    print(f"names matched: {report['matches']}")


def rows_of(report: dict[str, Any]) -> list[Row]:
    """The harness's rows: each L1 mode next to the plain ``re`` loop over the same names."""
    by_mode = {r["mode"]: r for r in report["results"]}
    base = by_mode["re loop, one regex per rule"]
    p99 = (Check("ours", "<", TARGET_P99_US),)
    rate = (Check("ours", ">=", TARGET_PER_S),)
    rows = []
    for mode, label in (("L1 cold, first sight", "first sight"),
                        ("L1 cold, no caches", "no caches at all"), ("L1 cached", "cached")):
        r = by_mode[mode]
        rows.append(Row(f"L1 classify per column, {label} (p99)", "µs", r["p99_us"],
                        baseline=base["p99_us"], baseline_label="plain re loop",
                        ratio_label="L1 / re", checks=p99, note=f"p50 {r['p50_us']} µs"))
    first = by_mode["L1 cold, first sight"]
    rows.append(Row("L1 classify throughput, first sight", "/s", first["columns_per_s"],
                    baseline=base["columns_per_s"], baseline_label="plain re loop",
                    ratio_label="L1 / re", checks=rate))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=None,
                        help="distinct column names (>= 1000; default 5,000)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3")
    parser.add_argument("--quick", action="store_true", help="2,000 names, one run")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default: results/classify.json)")
    args = parser.parse_args(argv)
    names = args.names or (2000 if args.quick else 5000)
    repeats = args.repeats or (1 if args.quick else 3)
    if names < 1000:
        parser.error("use at least 1,000 distinct names")
    report = run(names, repeats)
    print_table(report)
    print(f"wrote {write_results('classify', rows_of(report), report, out=args.out)}")


if __name__ == "__main__":
    main()
