"""What every benchmark script shares: the row format the harness reads, and timing helpers.

A benchmark measures *ours* next to a *baseline* run in the same process (or the same minute),
because these machines are noisy: only the ratio of the two is comparable across runs. Each
script writes ``benchmarks/results/<name>.json`` holding, besides its own details, a ``rows``
list in the format below; ``benchmarks/run.py`` collects the rows of every script into one
table and ``benchmarks/results/latest.json``.

One row (``Row.to_dict()``)::

    {
      "metric": "incremental propagation, one event, 100k nodes (p99)",
      "unit": "ms",                     # ms, µs, s, /s, MB, x (a plain ratio), % ...
      "ours": 3.1,                      # null when not measured
      "baseline": 2450.0,               # the same quantity for the baseline, or null
      "baseline_label": "full recomputation",
      "ratio": 790.3,                   # how ours compares, as ratio_label says; or null
      "ratio_label": "full / incremental",
      "checks": [{"subject": "ours", "op": "<", "value": 50.0},
                 {"subject": "ratio", "op": ">=", "value": 100.0}],
      "target": "< 50 ms; ratio >= 100x",
      "pass": true,                     # null: no target, or not run
      "status": "ok",                   # "ok" | "not run"
      "reason": "",                     # why not run
      "note": "median wave 12 nodes",
      "bench": "propagation"
    }

A script that cannot measure something still writes the row, ``status="not run"`` with the
reason, so the table shows the gap instead of hiding it.

>>> row = Row("L1 p99", "µs", 12.0, baseline=3.0, checks=(Check("ours", "<", 50),))
>>> row.ratio, row.passed, row.target
(4.0, True, '< 50 µs')
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_ENV = "LACUNA_BENCH_RESULTS"
PG_URL = os.environ.get("LACUNA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

Subject = Literal["ours", "ratio"]
Op = Literal["<", "<=", ">", ">="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}

__all__ = [
    "PG_URL",
    "ROOT",
    "Check",
    "Row",
    "compare",
    "environment",
    "fmt",
    "fmt_ratio",
    "percentile",
    "pg_reachable",
    "print_rows",
    "rate",
    "results_dir",
    "rss_mb",
    "stats",
    "time_each",
    "write_results",
]


# -- the row format -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One target: ``ours < 50`` or ``ratio >= 100``."""

    subject: Subject
    op: Op
    value: float

    def holds(self, ours: float | None, ratio: float | None) -> bool | None:
        got = ours if self.subject == "ours" else ratio
        if got is None or (isinstance(got, float) and math.isnan(got)):
            return None
        return _OPS[self.op](got, self.value)

    def text(self, unit: str) -> str:
        if self.subject == "ratio":
            return f"ratio {self.op} {_number(self.value)}x"
        return f"{self.op} {fmt(self.value, unit)}"

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "op": self.op, "value": self.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        if data["op"] not in _OPS or data["subject"] not in ("ours", "ratio"):
            raise ValueError(f"bad check {dict(data)!r}")
        return cls(data["subject"], data["op"], float(data["value"]))


@dataclass(frozen=True)
class Row:
    """One line of the table. ``ratio`` defaults to ``ours / baseline`` when both are known."""

    metric: str
    unit: str
    ours: float | None
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    ratio_label: str = ""
    checks: tuple[Check, ...] = ()
    note: str = ""
    status: Literal["ok", "not run"] = "ok"
    reason: str = ""
    bench: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.ours is not None and self.baseline:
            object.__setattr__(self, "ratio", self.ours / self.baseline)
            if not self.ratio_label:
                object.__setattr__(self, "ratio_label", "ours / baseline")

    @classmethod
    def not_run(cls, metric: str, reason: str, *, bench: str = "", unit: str = "",
                checks: Sequence[Check] = ()) -> Row:
        return cls(metric, unit, None, checks=tuple(checks), status="not run",
                   reason=reason, bench=bench)

    @property
    def passed(self) -> bool | None:
        """All targets hold (True), one fails (False), or nothing to judge (None)."""
        if self.status != "ok" or not self.checks:
            return None
        results = [c.holds(self.ours, self.ratio) for c in self.checks]
        if any(r is False for r in results):
            return False
        return None if any(r is None for r in results) else True

    @property
    def target(self) -> str:
        return "; ".join(c.text(self.unit) for c in self.checks)

    def with_bench(self, bench: str) -> Row:
        if self.bench:
            return self
        return Row(**{**self._fields(), "bench": bench})

    def _fields(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "unit": self.unit, "ours": self.ours,
            "baseline": self.baseline, "baseline_label": self.baseline_label,
            "ratio": self.ratio, "ratio_label": self.ratio_label, "checks": self.checks,
            "note": self.note, "status": self.status, "reason": self.reason,
            "bench": self.bench, "details": dict(self.details),
        }

    def to_dict(self) -> dict[str, Any]:
        out = self._fields()
        out["checks"] = [c.to_dict() for c in self.checks]
        out["target"] = self.target
        out["pass"] = self.passed
        for key in ("ours", "baseline", "ratio"):
            if isinstance(out[key], float):
                out[key] = _round(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Row:
        """Read a row back; unknown keys are ignored, missing optional ones defaulted."""
        status = data.get("status", "ok")
        if status not in ("ok", "not run"):
            raise ValueError(f"row {data.get('metric')!r}: status must be 'ok' or 'not run'")
        return cls(
            metric=str(data["metric"]),
            unit=str(data.get("unit", "")),
            ours=_float(data.get("ours")),
            baseline=_float(data.get("baseline")),
            baseline_label=str(data.get("baseline_label", "")),
            ratio=_float(data.get("ratio")),
            ratio_label=str(data.get("ratio_label", "")),
            checks=tuple(Check.from_dict(c) for c in data.get("checks", ())),
            note=str(data.get("note", "")),
            status=status,
            reason=str(data.get("reason", "")),
            bench=str(data.get("bench", "")),
            details=dict(data.get("details") or {}),
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _round(value: float) -> float:
    if value == 0 or math.isnan(value) or math.isinf(value):
        return value
    digits = max(0, 4 - math.floor(math.log10(abs(value))))
    return round(value, digits)


# -- formatting ---------------------------------------------------------------------------------


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_ratio(value: float | None, label: str = "") -> str:
    """``1.27x (decide / engine)``; ``-`` for nothing."""
    if value is None:
        return "-"
    return f"{_number(value)}x ({label})" if label else f"{_number(value)}x"


def fmt(value: float | None, unit: str) -> str:
    """``12.3 ms``, ``45,210/s``, ``0.82x``; ``-`` for nothing."""
    if value is None:
        return "-"
    if unit in ("x", "×"):
        return f"{_number(value)}x"
    if unit == "%":
        return f"{_number(value)} %"
    if unit.startswith("/"):
        return f"{_number(value)}{unit}"
    return f"{_number(value)} {unit}".strip()


def print_rows(rows: Sequence[Row], title: str = "", *, file: Any = None) -> None:
    """The table every script and the harness print: one line per row."""
    out = file or sys.stdout
    cells = [("metric", "ours", "baseline (same run)", "ratio", "target", "result")]
    for r in rows:
        if r.status != "ok":
            cells.append((r.metric, "-", "-", "-", r.target or "-", f"not run: {r.reason}"))
            continue
        base = fmt(r.baseline, r.unit) if r.baseline is not None else "-"
        if r.baseline_label and r.baseline is not None:
            base = f"{base} ({r.baseline_label})"
        elif r.baseline_label:
            base = r.baseline_label
        ratio = fmt_ratio(r.ratio, r.ratio_label)
        verdict = {True: "pass", False: "FAIL", None: "-"}[r.passed]
        if r.note:
            verdict += f"  {r.note}"
        cells.append((r.metric, fmt(r.ours, r.unit), base, ratio, r.target or "-", verdict))
    widths = [min(78 if i == 0 else 48, max(len(c[i]) for c in cells)) for i in range(5)]
    if title:
        print(title, file=out)
    for i, line in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(line[:5], widths, strict=True)) + "  "
              + line[5], file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 6, file=out)
    out.flush()


# -- results ------------------------------------------------------------------------------------


def results_dir() -> Path:
    """``$LACUNA_BENCH_RESULTS`` (the harness's test points it at a temporary folder), else
    ``benchmarks/results``."""
    return Path(os.environ.get(RESULTS_ENV) or HERE / "results")


def environment() -> dict[str, Any]:
    """Where the numbers come from, with the load average: on a shared machine a p99 taken
    under load 4 on 2 cores says more about the neighbours than about the code."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(name: str, rows: Iterable[Row], payload: Mapping[str, Any] | None = None,
                  *, out: Path | None = None) -> Path:
    """Write ``<results>/<name>.json``: the script's own details plus the shared ``rows``."""
    path = out or results_dir() / f"{name}.json"
    document = {"benchmark": name, **(payload or {}), "environment": environment(),
                "rows": [r.with_bench(name).to_dict() for r in rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n",
                    encoding="utf-8")
    return path


# -- timing -------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]) — no interpolation between samples."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def stats(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p90, p99, mean, max of ``values`` (whatever unit they are in)."""
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "mean": statistics.fmean(values),
        "max": max(values),
    }


def time_each(fn: Callable[[int], Any], n: int, *, warmup: int = 0) -> list[float]:
    """Seconds taken by each of ``n`` calls ``fn(i)`` (after ``warmup`` untimed calls)."""
    for i in range(warmup):
        fn(i)
    clock = time.perf_counter
    out = [0.0] * n
    for i in range(n):
        start = clock()
        fn(i)
        out[i] = clock() - start
    return out


def rate(fn: Callable[[], Any], seconds: float, *, batch: int = 1) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (``batch`` calls between clock reads)."""
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn()
        calls += batch
    return calls / elapsed


@dataclass(frozen=True, slots=True)
class Comparison:
    """Median seconds per call of ours and of the baseline, from interleaved rounds."""

    ours_s: float
    baseline_s: float
    ours_rounds: tuple[float, ...]
    baseline_rounds: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """ours / baseline time: 1.2 means ours takes 20 % longer."""
        return self.ours_s / self.baseline_s


def compare(ours: Callable[[], Any], baseline: Callable[[], Any], *, number: int,
            rounds: int = 5) -> Comparison:
    """Time ``number`` calls of each, alternating which goes first, ``rounds`` times; the
    median per-call time of each. Interleaving puts both under the same noise."""
    ours(), baseline()
    per_ours: list[float] = []
    per_base: list[float] = []
    for r in range(rounds):
        pair = [(ours, per_ours), (baseline, per_base)]
        for fn, sink in pair if r % 2 == 0 else pair[::-1]:
            gc.collect()
            start = time.perf_counter()
            for _ in range(number):
                fn()
            sink.append((time.perf_counter() - start) / number)
    return Comparison(statistics.median(per_ours), statistics.median(per_base),
                      tuple(per_ours), tuple(per_base))


# -- environment probes -------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (from /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return float(psutil.Process().memory_info().rss) / (1024 * 1024)


def pg_reachable(url: str = PG_URL) -> str:
    """``""`` when PostgreSQL answers at ``url``, else the one-line reason."""
    try:
        from lacuna_orchestration.db import check_connection, make_engine

        engine = make_engine(url)
        try:
            check_connection(engine)
        finally:
            engine.dispose()
    except Exception as err:  # noqa: BLE001 - the reason is the answer
        return str(err).splitlines()[0]
    return ""


@contextmanager
def fresh_schema(prefix: str, url: str = PG_URL) -> Iterator[Any]:
    """A throwaway PostgreSQL schema named ``<prefix>_<random>``, dropped afterwards."""
    import uuid

    from sqlalchemy import text

    from lacuna_orchestration.db import make_engine

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = make_engine(url, schema=schema)
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
