"""Benchmark (issue #14): memory and time of a whole report run as the data grows, 20k -> 1M -> 10M customers.

For each size (``--sizes``, default 20000,1000000,10000000) the demo generator's streaming mode writes the data
once into ``build/bench-engine-<n>`` (reused when present and matching: :mod:`generated_data`), then every report
runs through the CLI, DuckDB engine, as a scheduler would:

    python -m helpers.reports run --data build/bench-engine-<n> --out <fresh folder> --as-of <last day>

While it runs, the resident memory (RSS) of ALL its processes is sampled together every ``--interval`` seconds
(default 0.2): the runner, its pool workers, the fork server, every kernel and whatever they start (a Spark JVM);
the process tree of the runner, read with psutil. Printed per size: run time, the peak of the summed RSS (the
target), the peak of the summed PSS (shared copy-on-write pages of forked kernels counted once), and the
largest single process (its role, and for a kernel the report it ran, from the report log its stdout goes to).

Targets (issue #14; exit status 1 when one is missed): the peak at 10M at most 6 GB (6,144 MiB) for all
processes together; the peak at 10M at most 1.5x the peak at 1M. Printed as well: the time ratio 10M / 20k, and
(``--no-spark`` to skip) the seconds of the same run on the 1M data with ``engine: {kind: spark}`` (local mode,
through a temporary copy of params/; a comparison, not a target). The machine is shared: run the 10M size at
most once at a time.

    .venv/bin/python bench/bench_scale.py [--sizes 20000,1000000] [--no-spark] [--workers 2] [--interval 0.2]
    make bench-scale

Measured here (2026-11-30; 2 cores shared with seven other sessions, load average 12-20, so times are
loose; memory is what matters):

- starting point (commit c195a1e, ``--repo`` of it), 1,000,000 customers: 1,575 s; peak of summed RSS 8,362 MiB
  (PSS 7,452 MiB), 9 reports ok; largest process the retention_forecast kernel, 5,078 MiB; then the
  department_billing kernel 3,096 MiB and satisfaction_drivers 2,779 MiB. 20,000 customers (code of ~16:20):
  194 s, peak 1,730 MiB (PSS 1,002 MiB), largest a kernel of 540 MiB.
- the runner's load + validation + snapshot alone at 1M (``load_dataset``, DuckDB): 1,152 MiB with
  ``engine.duckdb.memory_limit`` 1GB, 1,696 MiB with DuckDB's default limit.
- after the issue #14 changes (commit bbdadc4, run through ``--repo`` of it, 20k and 1M in one invocation):
  20,000 customers 173 s, peak 1,709 MiB (PSS 977 MiB), largest kernel department_customer_service 419 MiB;
  1,000,000 customers 571 s, peak 1,984 MiB (PSS 1,216 MiB; 4.2x less than the starting point), largest kernel
  department_customer_service 656 MiB, every other kernel 360-623 MiB, runner 441 MiB, fork server 296 MiB.
  Peak 1M / 20k 1.16x, time 1M / 20k 3.3x.
- 10,000,000 customers (same commit, concurrently with the 1M run): STOPPED by ``--kill-above`` after 1,244 s at
  16,630 MiB summed RSS (target 6,144 MiB: missed), two department kernels at once: department_billing 9,473 MiB
  and department_customer_service 6,251 MiB (at 1M: 590 and 656 MiB, so something in the department page still
  grows with the data); the others: retention_forecast 1,298 MiB, voice_of_customer 946 MiB,
  satisfaction_drivers 410 MiB (about 1.1-2.2x their 1M peaks); the runner (load, validation with the 1GB DuckDB
  limit, spilling, and the snapshot) 874 MiB.
- session 5 (2026-11-30). The 10M stop above: the department page's retention section asked for the joint
  (entry day, exit day) counts, more rows than the engine's result cap at 10M; it fell back to reading the
  department's customers as rows (15 GB). Now it asks for the entry and exit margins (bounded by days), and a
  kernel reads at most 2M rows into pandas (``SATISFACTION_KIT_MAX_FRAME_ROWS``). Measured through ``--repo``
  snapshots on a machine shared with other work (so seconds are loose):
  at 734a166 (memory_limit 1GB): 20k 23 s, 1,695 MiB; 1M 145 s, 1,970 MiB; 10M 883 s, 2,901 MiB (largest kernel
  department_billing 1,421 MiB, runner 871 MiB during the load): 10M/1M 1.47x, all 9 reports ok, no section
  missing. At b0c398e with memory_limit 768MB (then made the default): 1M 92 s, 1,974 MiB; 10M 728 s, 2,666 MiB
  (largest kernel 1,259 MiB): 10M/1M 1.35x, all 9 reports ok, no engine failure or missing section on any page.
- Spark, 1,000,000 customers (local[2] per kernel, code of ~16:53): 4,129 s, every report ok, peak 6,981 MiB
  summed RSS (PSS 6,157 MiB) with up to two JVMs; the largest process a Spark JVM (department_customer_service)
  2,597 MiB; largest kernel retention_forecast 1,488 MiB.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generated_data import ROOT, generated_demo  # noqa: E402

MiB = 1024 * 1024
TARGET_PEAK_10M_MIB = 6 * 1024
TARGET_PEAK_RATIO = 1.5
MIN_AVAILABLE = 1536 * MiB  # a run that leaves the shared machine less than this is stopped (--kill-above too)
DEFAULT_SIZES = (20_000, 1_000_000, 10_000_000)

@dataclass
class ProcessPeak:
    pid: int
    role: str
    report: str = ""  # for a kernel (and its Spark JVM): the report it ran
    peak_rss: int = 0


@dataclass
class TreeSampler:
    """Samples the summed RSS (and PSS) of a process and all its descendants in a background thread."""

    root_pid: int
    interval: float = 0.2
    pss_every: int = 5  # PSS (smaps_rollup) is dearer to read: every 5th sample
    peak_rss: int = 0
    peak_pss: int = 0
    peak_processes: int = 0
    samples: int = 0
    kill_above: int = 0  # bytes of summed RSS (0: never), or when the machine has less than min_available left
    min_available: int = 0
    on_kill: object = None  # called before the runner is stopped (it removes its folder, logs included)
    killed: str = ""  # why the run was stopped
    processes: dict[int, ProcessPeak] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "TreeSampler":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        procs = self._tree()
        with_pss = self.samples % self.pss_every == 0
        total_rss = total_pss = 0
        for p in procs:
            try:
                if with_pss:
                    info = p.memory_full_info()
                    rss, pss = info.rss, getattr(info, "pss", info.rss)
                else:
                    rss, pss = p.memory_info().rss, 0
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total_rss += rss
            total_pss += pss
            seen = self.processes.get(p.pid)
            if seen is None:
                seen = self.processes[p.pid] = ProcessPeak(p.pid, _role(p, self.root_pid))
            seen.peak_rss = max(seen.peak_rss, rss)
        self._name_reports(procs)
        self.samples += 1
        if not self.killed and procs:
            available = psutil.virtual_memory().available
            if self.kill_above and total_rss > self.kill_above:
                self.killed = f"summed RSS {_mib(total_rss)} above --kill-above {_mib(self.kill_above)}"
            elif available < (self.min_available or MIN_AVAILABLE):
                self.killed = f"the machine had {_mib(available)} available (RSS of the run {_mib(total_rss)})"
            if self.killed:  # the runner stops its workers, kernels and fork server on SIGTERM
                if callable(self.on_kill):
                    self.on_kill()
                procs[0].terminate()
        self.peak_rss = max(self.peak_rss, total_rss)
        if with_pss:
            self.peak_pss = max(self.peak_pss, total_pss)
        self.peak_processes = max(self.peak_processes, len(procs))

    def _name_reports(self, procs: list[psutil.Process]) -> None:
        """The report each kernel runs: its kernel client (same stdin pipe) writes to ``logs/<report>.log``; a
        Spark JVM's is its kernel's."""
        if not any(self.processes[p.pid].role in ("kernel", "spark jvm") and not self.processes[p.pid].report
                   for p in procs if p.pid in self.processes):
            return
        by_stdin: dict[str, str] = {}
        for p in procs:
            seen = self.processes.get(p.pid)
            if seen is not None and seen.role == "kernel client":
                report = _log_report(p.pid)
                if report:
                    seen.report = seen.report or report
                    by_stdin[_fd(p.pid, 0)] = report
        for p in procs:
            seen = self.processes.get(p.pid)
            if seen is None or seen.report:
                continue
            if seen.role == "kernel":  # a warm kernel (forked by the server) or a cold one (the worker's child)
                seen.report = by_stdin.get(_fd(p.pid, 0), "") or _log_report(p.ppid())
            elif seen.role == "spark jvm":
                try:
                    parents = p.parents()
                except (psutil.NoSuchProcess, psutil.ZombieProcess):
                    continue
                seen.report = next((self.processes[a.pid].report for a in parents if a.pid in self.processes
                                    and self.processes[a.pid].role == "kernel"), "")


def _fd(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return ""


def _log_report(pid: int) -> str:
    out = _fd(pid, 1)
    return Path(out).stem if out.endswith(".log") and "/logs/" in out else ""


def _role(p: psutil.Process, root_pid: int) -> str:
    """The role of a process of the run's tree."""
    try:
        cmd = " ".join(p.cmdline())
        parent = psutil.Process(p.ppid())
        parent_cmd = " ".join(parent.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "gone"
    if p.pid == root_pid:
        return "runner"
    if Path(cmd.split(" ")[0]).name == "java" or "org.apache.spark" in cmd:
        return "spark jvm"
    if "helpers.reports.warm_kernels" in cmd:
        return "kernel" if "helpers.reports.warm_kernels" in parent_cmd else "fork server"
    if "fork_kernel_client" in cmd:
        return "kernel client"
    if "ipykernel" in cmd:
        return "kernel"
    if parent.pid == root_pid and "helpers.reports" in cmd:
        return "pool worker"
    return Path(cmd.split(" ")[0]).name or "process"


@dataclass
class RunResult:
    customers: int
    engine: str
    seconds: float
    returncode: int
    peak_rss: int
    peak_pss: int
    processes: list[ProcessPeak]
    samples: int
    reports: dict[str, int]  # status -> count
    tail: str = ""

    @property
    def largest(self) -> ProcessPeak | None:
        return max(self.processes, key=lambda p: p.peak_rss, default=None)


def _last_day(data: Path) -> str:
    return str(json.loads((data / "ground_truth.json").read_text())["end"])[:10]


def _spark_params(workdir: Path, repo: Path = ROOT) -> Path:
    """A copy of params/ whose report.yaml selects ``engine: {kind: spark}`` (local mode)."""
    import yaml  # noqa: PLC0415

    params = workdir / "params"
    shutil.copytree(repo / "params", params)
    config = yaml.safe_load((params / "report.yaml").read_text(encoding="utf-8")) or {}
    engine = dict(config.get("engine") or {})
    engine["kind"] = "spark"
    engine.setdefault("spark", {"master": "local[2]", "conf": {"spark.driver.memory": "2g"}})
    config["engine"] = engine
    (params / "report.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                        encoding="utf-8")
    return params


def run_reports(data: Path, customers: int, *, engine: str = "duckdb", workers: int = 2,
                interval: float = 0.2, keep_output: Path | None = None, repo: Path = ROOT,
                kill_above_mib: float = 0, min_available_mib: float = 0) -> RunResult:
    """One full report run over ``data`` through the CLI, its process tree's memory sampled meanwhile.
    ``repo``: the checkout whose code, notebooks and params run (another one: a baseline commit)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{customers}-", dir=ROOT / "build") as tmp:
        out = Path(tmp) / "reports"
        cmd = [sys.executable, "-m", "helpers.reports", "run", "--data", str(data), "--out", str(out),
               "--workers", str(workers), "--as-of", _last_day(data)]
        if engine == "spark":
            cmd += ["--params", str(_spark_params(Path(tmp), repo))]
        env = dict(os.environ)
        if repo != ROOT:  # its src/ before the installed (editable) kit; its notebooks and params from its folder
            env["PYTHONPATH"] = os.pathsep.join([str(repo / "src"), *filter(None, [env.get("PYTHONPATH")])])
        log = Path(tmp) / "run.log"
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, cwd=repo, stdout=fh, stderr=subprocess.STDOUT, env=env)
            kept_logs = Path(tmp) / "logs-of-the-stopped-run"

            def keep_logs() -> None:  # which cell each report was in when the run was stopped
                for folder in out.glob(".tmp-*/logs"):
                    shutil.copytree(folder, kept_logs, dirs_exist_ok=True)

            sampler = TreeSampler(proc.pid, interval=interval, kill_above=int(kill_above_mib * MiB),
                                  min_available=int(min_available_mib * MiB), on_kill=keep_logs).start()
            rc = proc.wait()
            sampler.stop()
        seconds = time.perf_counter() - t0
        reports: dict[str, int] = {}
        manifests = sorted(out.glob("*/manifest.json"))
        if manifests:
            for r in json.loads(manifests[-1].read_text()).get("reports", []):
                reports[r.get("status", "?")] = reports.get(r.get("status", "?"), 0) + 1
        tail = "" if rc == 0 else log.read_text(errors="replace")[-3000:]
        if sampler.killed:
            tail = f"STOPPED: {sampler.killed}\n{tail}"
        if keep_output is not None and manifests:
            shutil.copytree(manifests[-1].parent, keep_output, dirs_exist_ok=True)
        if keep_output is not None and kept_logs.is_dir():
            shutil.copytree(kept_logs, keep_output / kept_logs.name, dirs_exist_ok=True)
    result = RunResult(customers, engine, seconds, rc, sampler.peak_rss, sampler.peak_pss,
                       sorted(sampler.processes.values(), key=lambda p: -p.peak_rss), sampler.samples, reports, tail)
    if keep_output is not None:
        keep_output.mkdir(parents=True, exist_ok=True)
        (keep_output / "bench_scale.json").write_text(json.dumps(dataclasses.asdict(result), indent=1))
    return result


def _mib(n: int) -> str:
    return f"{n / MiB:,.0f} MiB"


def describe(r: RunResult) -> str:
    big = r.largest
    by_role: dict[str, int] = {}
    for p in r.processes:
        by_role[p.role] = by_role.get(p.role, 0) + 1
    lines = [f"{r.customers:>10,} customers, {r.engine}: {r.seconds:7.1f} s, exit {r.returncode}, reports "
             f"{json.dumps(r.reports)}; peak of summed RSS {_mib(r.peak_rss)}, of summed PSS {_mib(r.peak_pss)} "
             f"({r.samples} samples; processes {json.dumps(by_role)})"]
    if big is not None:
        lines.append(f"{'':>12}largest process: {big.role}{f' ({big.report})' if big.report else ''} "
                     f"{_mib(big.peak_rss)}")
        kernels = [p for p in r.processes if p.role in ("kernel", "spark jvm")]
        if kernels:
            lines.append(f"{'':>12}per report (kernel peak RSS): " + ", ".join(
                f"{p.report or p.pid}{' jvm' if p.role == 'spark jvm' else ''} {_mib(p.peak_rss)}" for p in kernels))
        others = [p for p in r.processes if p.role not in ("kernel", "spark jvm", "kernel client")]
        lines.append(f"{'':>12}other processes: " + ", ".join(f"{p.role} {_mib(p.peak_rss)}" for p in others))
    if r.returncode != 0:
        lines.append(r.tail)
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                    help="customers per run, comma-separated (default 20000,1000000,10000000)")
    ap.add_argument("--no-spark", action="store_true", help="skip the Spark run on the 1M data")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples")
    ap.add_argument("--generate-only", action="store_true", help="generate the data of --sizes, run nothing")
    ap.add_argument("--keep-output", type=Path, default=None, help="copy each run folder into this folder")
    ap.add_argument("--kill-above", type=float, default=16384, metavar="MIB",
                    help="stop a run whose summed RSS passes this (default 16384; 0: never); a run that leaves the "
                         "machine less than --min-available is stopped too")
    ap.add_argument("--min-available", type=float, default=MIN_AVAILABLE / MiB, metavar="MIB",
                    help="stop a run when the machine has less memory available than this (default 1536)")
    ap.add_argument("--repo", type=Path, default=ROOT,
                    help="run the code, notebooks and params of this checkout (e.g. a baseline commit unpacked "
                         "with git archive); the data stays in this repository's build/")
    args = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    folders = {n: generated_demo(n, nice=10) for n in sizes}
    if args.generate_only:
        return 0
    results: dict[int, RunResult] = {}
    for n in sizes:
        keep = args.keep_output / f"duckdb-{n}" if args.keep_output else None
        results[n] = run_reports(folders[n], n, workers=args.workers, interval=args.interval, keep_output=keep,
                                 repo=args.repo.resolve(), kill_above_mib=args.kill_above,
                                 min_available_mib=args.min_available)
        print(describe(results[n]), flush=True)
    spark = None
    if not args.no_spark:
        from helpers.engine.spark_engine import spark_unavailable_reason  # noqa: PLC0415

        reason = spark_unavailable_reason()
        if reason:
            print(f"spark run skipped: {reason}")
        else:
            n = 1_000_000
            keep = args.keep_output / f"spark-{n}" if args.keep_output else None
            spark = run_reports(generated_demo(n, nice=10), n, engine="spark", workers=args.workers,
                                interval=args.interval, keep_output=keep, repo=args.repo.resolve(),
                                kill_above_mib=args.kill_above, min_available_mib=args.min_available)
            print(describe(spark), flush=True)
    ok = all(r.returncode == 0 for r in results.values())
    small, mid, big = results.get(20_000), results.get(1_000_000), results.get(10_000_000)
    if small and big:
        print(f"time 10M / 20k: {big.seconds / small.seconds:.1f}x ({big.seconds:.0f} s / {small.seconds:.0f} s)")
    if big:
        met = big.peak_rss <= TARGET_PEAK_10M_MIB * MiB
        ok &= met
        print(f"peak at 10M (all processes, RSS): {_mib(big.peak_rss)} (target <= {TARGET_PEAK_10M_MIB:,} MiB: "
              f"{'met' if met else 'MISSED'})")
    if mid and big:
        ratio = big.peak_rss / mid.peak_rss
        met = ratio <= TARGET_PEAK_RATIO
        ok &= met
        print(f"peak 10M / 1M: {ratio:.2f}x (target <= {TARGET_PEAK_RATIO}: {'met' if met else 'MISSED'})")
    if mid and small:
        print(f"peak 1M / 20k: {mid.peak_rss / small.peak_rss:.2f}x; time 1M / 20k: "
              f"{mid.seconds / small.seconds:.1f}x")
    if spark is not None:
        print(f"spark run on 1M: {spark.seconds:.0f} s (exit {spark.returncode})"
              + (f"; DuckDB {mid.seconds:.0f} s: {spark.seconds / mid.seconds:.1f}x" if mid else ""))
    if big is None:
        print("the targets are checked with the 10M size (and 1M for the ratio)" if ok else "a run failed")
    else:
        print("all targets met" if ok else "targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
