"""Benchmark of issue #12: score, ingest and train against their baselines, side by side, in one run.

    make bench                                    # everything below, about an hour on 2 cores
    .venv/bin/python benchmarks/speed.py --scales 1 3 --skip-train     # quicker
    .venv/bin/python benchmarks/speed.py --train-rows 284808           # also the search on generated rows

Every figure is measured in this run, against a baseline measured in this run too:

- the **baseline commit** (``--baseline``, default the commit before the speed work): its own
  ``./spark-submit.sh`` from a git worktree, on the same files and the same registered model;
- Spark ML's own ``transform`` of the same model (``[score] engine = "spark"``), the reference
  path the portable scorer is checked against;
- the same portable scorer run in one Python process on the same rows (the practical limit).

All data is generated (jobs/generate.py, fitted on the real sample), except the training search on
the real sample. Everything lives in a temporary folder (``--workdir``) with its own Delta tables
and MLflow store. Jobs run through ./spark-submit.sh as the nightly schedule runs them, each its
own JVM; wall time, CPU use ((user + sys) / wall, in cores, of every process of the job, Spark's
Python workers included) and the peak resident memory of the driver (JVM and Python, sampled
every 0.2 s) are taken per job.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from monitor_cost import RECIPE  # the demo's recipe, one grid point per member (this folder is on the path)

PROJECT = Path(__file__).resolve().parents[1]
# The last commit before the speed work (#12): what every "baseline" job runs.
BASELINE_COMMIT = "69fead1"
FIRST_DAY = date(2013, 9, 1)
DAILY_ROWS = 142_404
MILLION = 1_000_000
TINY_ROWS = 2_000  # a day this small is all fixed cost: what linear growth is measured above
SAMPLE = PROJECT / "data" / "creditcard_sample.csv.gz"



@dataclass
class Run:
    """One measured command."""

    seconds: float
    cpu_seconds: float
    peak_jvm_mb: float
    peak_python_mb: float
    output: str = field(repr=False, default="")

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else 0.0


@dataclass
class Row:
    what: str
    rows: int
    run: Run
    baseline_name: str = ""
    baseline: Run | None = None
    note: str = ""


# ---- configs ---------------------------------------------------------------------------------


def conf_file(folder: Path, name: str, *, lake: Path, store: Path, engine: str | None = "portable",
              recipe: str | None = RECIPE, normal_weight: str = "1.0", extra_train: str = "",
              scored: str = "scored_transactions", jit_quick: bool = True, tree: Path = PROJECT) -> Path:
    """``tree``'s conf/local.toml with its state in ``lake``/``store``; ``engine`` None leaves out
    [score] (the baseline commit does not know it); ``recipe`` None keeps the full search."""
    text = (tree / "conf" / "local.toml").read_text()
    text = text.replace('root = "lake"', f'root = "{lake}"')
    text = text.replace('scored = "scored_transactions"', f'scored = "{scored}"')
    text = text.replace('"sqlite:///mlruns/mlflow.db"', f'"sqlite:///{store / "mlflow.db"}"')
    text = text.replace('"mlruns/artifacts"', f'"{store / "artifacts"}"')
    text = text.replace("normal_weight = 57.79", f"normal_weight = {normal_weight}")
    text = text.replace("alerts_per_100k = [50, 1500]", "alerts_per_100k = [10, 10000]")
    if not jit_quick:
        text = re.sub(r'^"spark.driver.extraJavaOptions" = "-XX:TieredStopAtLevel=1"\n', "", text, flags=re.M)
    text = re.sub(r"\n\[score\]\nengine = \"\w+\"\n", "\n", text)
    if extra_train:
        text = text.replace("[train]\n", f"[train]\n{extra_train}\n", 1)
    if recipe is not None:
        head, _, rest = text.partition("[train.candidates.logistic_regression]")
        text = head + recipe + "\n" + rest[rest.index("# The online scoring service"):]
    if engine is not None:
        text += f'\n[score]\nengine = "{engine}"\n'
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def baseline_tree(folder: Path, commit: str) -> Path:
    """The baseline commit checked out beside the project, sharing its jars and environment."""
    tree = folder / "baseline"
    subprocess.run(["git", "-C", str(PROJECT), "worktree", "add", "--detach", "--force", str(tree), commit],
                   check=True, capture_output=True)
    (tree / ".jars").symlink_to(PROJECT / ".jars")
    return tree


# ---- running and measuring -------------------------------------------------------------------


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _cpu_seconds(pid: int) -> tuple[tuple[int, int], float]:
    """``pid``'s own user + system CPU seconds so far, keyed by (pid, start time) against pid reuse."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return (pid, 0), 0.0
    # fields[0] is the state (field 3 of proc(5)): utime and stime are fields 14 and 15, starttime 22
    return (pid, int(fields[19])), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> tuple[str, float]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmd:
            command = cmd.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return command, int(line.split()[1]) / 1024
    except OSError:
        pass
    return "", 0.0


def measure(command: list[str], *, cwd: Path = PROJECT, ok: tuple[int, ...] = (0,)) -> Run:
    """Run ``command``; its wall and CPU time and the peak RSS of the driver's JVM and Python.

    The CPU time is the larger of the children's rusage and the sum, over every process seen in
    the command's tree, of its own CPU time at its last sample. The rusage alone misses Spark's
    Python workers (measured: a job burning 40 s of CPU in ``mapInArrow`` added nothing to it):
    they are not reaped in a way that passes their time up to the JVM, so a scoring job looked
    like one core. Sampling misses at most the last 0.2 s of each process."""
    env = {**os.environ, "FRAUD_PYTHON": sys.executable}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    peaks = {"jvm": 0.0, "python": 0.0}
    cpu_seen: dict[tuple[int, int], float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in _descendants(process.pid):
                key, used = _cpu_seconds(pid)
                cpu_seen[key] = max(cpu_seen.get(key, 0.0), used)
                command_line, rss = _rss_mb(pid)
                if "org.apache.spark.deploy.SparkSubmit" in command_line:
                    peaks["jvm"] = max(peaks["jvm"], rss)
                elif "jobs/" in command_line or "benchmarks/" in command_line:
                    peaks["python"] = max(peaks["python"], rss)  # the driver, not the executors' workers
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode not in ok:
        sys.stderr.write(output[-6000:])
        raise SystemExit(f"{' '.join(command[:3])} failed with exit {process.returncode}")
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu = max(reaped, sum(cpu_seen.values()))
    return Run(seconds, cpu, peaks["jvm"], peaks["python"], output)


def job(tree: Path, *args: str, conf: Path) -> Run:
    return measure([str(tree / "spark-submit.sh"), *args, "--env", str(conf)], cwd=tree)


def generate(folder: Path, *, rows: int, day: date, conf: Path, days: int = 1) -> list[Path]:
    output = folder / "csv" / f"{day.isoformat()}-{rows}"
    job(PROJECT, "generate", "--days", str(days), "--rows-per-day", str(rows), "--fraud-rate", "0.01",
        "--start-date", day.isoformat(), "--seed", str(rows), "--output", str(output), conf=conf)
    return sorted(output.glob("*.csv*"))


# ---- the warm session: both engines and the in-process limit on the same rows ------------------


def warm(conf: str, day: str) -> None:
    """In one warm session: the portable scorer and Spark ML's transform of the champion, each
    scoring ``day`` into a Delta table twice (the second run counts); the same scorer on the same
    rows in this process; model loads; and the parity of the two paths on every row."""
    sys.path.insert(0, str(PROJECT))
    from datetime import datetime, timezone

    import numpy as np
    from pyspark.sql import functions as F

    from pipelines.core.config import load_settings
    from pipelines.core.session import get_spark
    from pipelines.data.schema import FEATURE_COLS, TXN_DATE
    from pipelines.data.tables import current_version, read_version
    from pipelines.model.portable.pyfunc import load_registered
    from pipelines.model.registry import configure_mlflow, load_model, resolve_model
    from pipelines.scoring.batch import score

    settings = load_settings(conf)
    spark = get_spark(settings.spark)
    configure_mlflow(settings.mlflow)
    ref = resolve_model(settings.mlflow)
    started = time.perf_counter()
    portable = load_registered(ref.name, ref.version)
    portable.check()
    print(f"RESULT load_portable {time.perf_counter() - started:.3f}")
    started = time.perf_counter()
    pipeline = load_model(ref)
    print(f"RESULT load_spark {time.perf_counter() - started:.3f}")
    path = settings.tables.transactions_path
    version = current_version(spark, path)
    rows = read_version(spark, path, version).filter(F.col(TXN_DATE) == date.fromisoformat(day))
    count = rows.count()
    now = datetime.now(timezone.utc)
    targets = {}
    for name, model in (("spark", pipeline), ("portable", portable)):
        target = f"{settings.tables.root}/warm_{name}"
        for attempt in range(2):
            started = time.perf_counter()
            scored = score(rows, model, model_ref=ref, source_table_version=version, scored_at=now)
            scored.write.format("delta").mode("overwrite").save(target)
            if attempt == 1 or name == "spark":  # the reference is slow enough to time once
                print(f"RESULT delta_{name} {time.perf_counter() - started:.3f}", flush=True)
                break
        targets[name] = target
    started = time.perf_counter()
    read_version(spark, path, version).filter(F.col(TXN_DATE) == date.fromisoformat(day)) \
        .write.format("noop").mode("overwrite").save()
    print(f"RESULT read_floor {time.perf_counter() - started:.3f}")
    features = rows.select(*FEATURE_COLS).toPandas().to_numpy(dtype=np.float64)
    portable.sample_probability(features[:1000])  # compiled and warm, as the executors' are
    started = time.perf_counter()
    portable.decision.apply(portable.sample_probability(features))
    print(f"RESULT in_process {time.perf_counter() - started:.3f}")
    left = spark.read.format("delta").load(targets["spark"]).alias("s")
    right = spark.read.format("delta").load(targets["portable"]).alias("p")
    parity = left.join(right, "transaction_id", "full_outer").agg(
        F.count(F.lit(1)).alias("rows"),
        F.max(F.abs(F.col("s.fraud_probability") - F.col("p.fraud_probability"))).alias("largest"),
        F.count_if(F.col("s.is_fraud") != F.col("p.is_fraud")).alias("decisions_apart"),
        F.count_if(F.col("s.fraud_probability").isNull() | F.col("p.fraud_probability").isNull()).alias("unmatched"),
    ).first()
    print(f"RESULT rows {count}")
    print(f"RESULT parity_rows {parity['rows']}")
    print(f"RESULT parity_largest {parity['largest']!r}")
    print(f"RESULT parity_decisions_apart {parity['decisions_apart']}")
    print(f"RESULT parity_unmatched {parity['unmatched']}")


def train_ensemble(conf: str) -> None:
    """The train job, with the search's choice fixed to the ensemble: the model every figure
    is about is the demo's champion (the issue's), while on generated rows the search may
    choose one of its members (XGBoost did, 2026-11-26). Everything else is the job's own code."""
    sys.path.insert(0, str(PROJECT))
    import jobs.train
    import pipelines.training.tracking
    from pipelines.model.stages import ENSEMBLE

    pipelines.training.tracking.best_candidate = lambda results: ENSEMBLE
    jobs.train.main(["--env", conf])


def results(output: str) -> dict[str, str]:
    return dict(re.findall(r"^RESULT (\w+) (\S+)$", output, flags=re.M))


def log_seconds(output: str, pattern: str) -> float | None:
    found = re.search(pattern, output)
    return float(found.group(1)) if found else None


def _chosen(output: str) -> str:
    found = re.findall(r"train: (\S+) .*, threshold ([\d.]+), held-out AUC-PR ([\d.]+)", output)
    return f"{found[-1][0]} (threshold {found[-1][1]}, held-out AUC-PR {found[-1][2]})" if found else "?"


def _points(output: str) -> list[str]:
    """Every search point's validation AUC-PR as logged, in a stable order."""
    return sorted(" ".join(found) for found in re.findall(r"search: (\w+) (.*?): validation AUC-PR ([\d.]+)", output))


# ---- the table -------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    head = (f"| {'what':<44} | {'rows':>10} | {'s':>7} | {'rows/s':>9} | {'cores':>5} | {'JVM MB':>6} | "
            f"{'Py MB':>5} | {'baseline':<26} | {'base s':>7} | {'speed-up':>8} |")
    print(head)
    print("|" + "|".join("-" * (len(cell)) for cell in head.split("|")[1:-1]) + "|")
    for row in rows:
        run, base = row.run, row.baseline
        rate = f"{row.rows / run.seconds:,.0f}" if row.rows and run.seconds else ""
        base_s = f"{base.seconds:.1f}" if base else ""
        ratio = f"{base.seconds / run.seconds:.2f}x" if base and run.seconds else ""
        # The warm session's parts are timed inside one process: no CPU or memory of their own.
        cores = f"{run.cores:.2f}" if run.cpu_seconds else ""
        jvm = f"{run.peak_jvm_mb:.0f}" if run.peak_jvm_mb else ""
        python = f"{run.peak_python_mb:.0f}" if run.peak_python_mb else ""
        print(f"| {row.what:<44} | {row.rows:>10,} | {run.seconds:>7.1f} | {rate:>9} | {cores:>5} | "
              f"{jvm:>6} | {python:>5} | {row.baseline_name:<26} | {base_s:>7} | {ratio:>8} |")
    notes = [f"- {row.what}: {row.note}" for row in rows if row.note]
    if notes:
        print("\n" + "\n".join(notes))


# ---- the run ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 3, 10],
                        help="score and ingest days of these many million rows (linear growth)")
    parser.add_argument("--training-rows", type=int, default=50_000, help="rows the scoring model is fitted on")
    parser.add_argument("--skip-train", action="store_true", help="leave out the search on the real sample")
    parser.add_argument("--train-rows", type=int, default=0,
                        help="also run the full search on this many generated rows (284808: the issue's figure)")
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="the commit the baseline jobs run")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="speed-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    lake, store = folder / "lake", folder / "store"
    new = conf_file(folder, "new", lake=lake, store=store)
    reference = conf_file(folder, "reference", lake=lake, store=store, engine="spark")
    base_tree = baseline_tree(folder, args.baseline)
    base_lake = folder / "baseline-lake"
    base_ingest = conf_file(folder, "baseline-ingest", lake=base_lake, store=store, engine=None, tree=base_tree)
    base_score = conf_file(folder, "baseline-score", lake=lake, store=store, engine=None, scored="baseline_scored",
                           tree=base_tree)
    table: list[Row] = []
    try:
        # 1. the model: the demo's recipe on two generated days, promoted to champion
        for file in generate(folder, rows=args.training_rows // 2, day=FIRST_DAY, conf=new, days=2):
            job(PROJECT, "ingest", "--input", str(file), conf=new)
        measure([sys.executable, str(Path(__file__).resolve()), "train-ensemble", str(new)])
        job(PROJECT, "promote", conf=new)
        print("trained and promoted the demo's recipe, the ensemble registered", flush=True)

        # 2. ingest and score by size; the baseline commit's jobs at 142,404 and 1,000,000 rows
        sizes = [TINY_ROWS, DAILY_ROWS, *[scale * MILLION for scale in args.scales]]
        days = {size: FIRST_DAY + timedelta(days=2 + n) for n, size in enumerate(sizes)}
        score_runs: dict[int, Run] = {}
        ingest_runs: dict[int, Run] = {}
        for size in sizes:
            day = days[size]
            csv = generate(folder, rows=size, day=day, conf=new)[0]
            ingest_runs[size] = job(PROJECT, "ingest", "--input", str(csv), conf=new)
            base = None
            if size in (DAILY_ROWS, MILLION):
                base = job(base_tree, "ingest", "--input", str(csv), conf=base_ingest)
            table.append(Row(f"ingest {csv.name}", size, ingest_runs[size], "baseline commit's ingest", base))
            score_runs[size] = job(PROJECT, "score", "--date", day.isoformat(), conf=new)
            row = Row(f"score, portable engine ({day})", size, score_runs[size])
            if size in (DAILY_ROWS, MILLION):
                row.baseline_name, row.baseline = "baseline commit's score", job(
                    base_tree, "score", "--date", day.isoformat(), conf=base_score)
                reference_run = job(PROJECT, "score", "--date", day.isoformat(), conf=reference)
                load = log_seconds(score_runs[size].output, r"loaded the portable form of \S+ in ([\d.]+) s")
                spark_load = log_seconds(reference_run.output, r"loaded the Spark ML pipeline of \S+ in ([\d.]+) s")
                row.note = (f"model load {load} s (Spark ML pipeline: {spark_load} s); the same job with "
                            f"[score] engine = \"spark\": {reference_run.seconds:.1f} s")
            table.append(row)
            if size != TINY_ROWS:
                os.remove(csv)  # the big files are not needed again
            print(f"{size:,} rows: ingest {ingest_runs[size].seconds:.1f} s, score {score_runs[size].seconds:.1f} s",
                  flush=True)

        # 3. one warm session on the 1,000,000-row day: both engines to Delta, in-process limit, parity
        warm_run = measure([sys.executable, str(Path(__file__).resolve()), "warm", str(new),
                            days[MILLION].isoformat()])
        found = results(warm_run.output)
        for name in ("delta_spark", "delta_portable", "in_process", "read_floor"):
            value = float(found[name])
            table.append(Row(f"warm session: {name.replace('_', ' ')}", MILLION,
                             Run(value, 0.0, 0.0, 0.0)))
        portable_s, spark_s, limit_s = (float(found[k]) for k in ("delta_portable", "delta_spark", "in_process"))
        table[-3].baseline_name, table[-3].baseline = "Spark ML transform -> Delta", Run(spark_s, 0, 0, 0)

        # 4. the search on the real sample: new against the baseline commit
        if not args.skip_train:
            searches = {}
            for label, tree in (("new", PROJECT), ("baseline", base_tree)):
                train_conf = conf_file(folder, f"train-{label}", lake=folder / f"train-{label}-lake",
                                       store=folder / f"train-{label}-store", recipe=None, normal_weight="57.79",
                                       engine="portable" if tree == PROJECT else None, tree=tree)
                job(tree, "ingest", "--input", str(SAMPLE), conf=train_conf)
                searches[label] = job(tree, "train", conf=train_conf)
            chosen = {label: _chosen(run.output) for label, run in searches.items()}
            points = {label: _points(run.output) for label, run in searches.items()}
            agree = points["new"] == points["baseline"] and chosen["new"] == chosen["baseline"]
            same = "the same" if agree else "DIFFERENT"
            table.append(Row("train: full search, real sample", 5412, searches["new"], "baseline commit's train",
                             searches["baseline"],
                             note=f"chose {chosen['new']}; baseline chose {chosen['baseline']}; {len(points['new'])} "
                                  f"search points' validation AUC-PR (4 decimals): {same}"))
        if args.train_rows:
            big_conf = conf_file(folder, "train-big", lake=folder / "train-big-lake", store=folder / "train-big-store",
                                 recipe=None)
            per_day = args.train_rows // 2
            for file in generate(folder, rows=per_day, day=FIRST_DAY, conf=big_conf, days=2):
                job(PROJECT, "ingest", "--input", str(file), conf=big_conf)
            table.append(Row(f"train: full search, {args.train_rows:,} generated rows", args.train_rows,
                             job(PROJECT, "train", conf=big_conf),
                             note="baseline 82.7 min (issue #12; not rerun: it takes over an hour)"))

        print()
        print_table(table)
        print()
        print(f"score target, 1,000,000 rows to Delta in one warm session: portable {MILLION / portable_s:,.0f} rows/s "
              f"= {spark_s / portable_s:.2f}x Spark ML's transform (target >= 4x), "
              f"{portable_s / limit_s:.2f}x the same scorer in one process (target <= 2x)")
        print(f"parity on every row: {found['parity_rows']} rows, largest difference {found['parity_largest']}, "
              f"{found['parity_decisions_apart']} decisions apart, {found['parity_unmatched']} unmatched "
              f"(target <= 1e-9)")
        fixed_score, fixed_ingest = score_runs[TINY_ROWS].seconds, ingest_runs[TINY_ROWS].seconds
        for name, runs, fixed in (("score", score_runs, fixed_score), ("ingest", ingest_runs, fixed_ingest)):
            one = runs[MILLION].seconds - fixed
            growth = ", ".join(
                f"{scale}x: {(runs[scale * MILLION].seconds - fixed) / one:.2f}x variable time, driver JVM "
                f"{runs[scale * MILLION].peak_jvm_mb:.0f} MB, Python {runs[scale * MILLION].peak_python_mb:.0f} MB"
                for scale in args.scales)
            print(f"{name} growth (variable time = wall - wall of a {TINY_ROWS:,}-row day, {fixed:.1f} s): {growth}")
    finally:
        subprocess.run(["git", "-C", str(PROJECT), "worktree", "remove", "--force", str(base_tree)],
                       capture_output=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "warm":
        warm(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "train-ensemble":
        train_ensemble(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
