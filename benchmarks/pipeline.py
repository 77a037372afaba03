"""Every number of the book from nothing, timed stage by stage on this machine, and one sweep
with and without populations, in the same run (README, book/10_about.md).

    python benchmarks/pipeline.py --regenerate     # or: make pipeline

From nothing means: the venv installed, and no run records, solutions, tuning, protocols, stored
figure data (results/computed.json) or image-feature cache (the few-shot draws in
results/splits/ stay: they are the tasks' data).
The stages are the targets of `make book`: tuning, benchmarks, protocols, chapters, HTML, run
one after another with the Makefile's own commands (both cores: populations of single-threaded
runs in two jobs). --regenerate is required because it deletes the book's stored results and
makes them anew.

Then one sweep (METHOD, ten seeds, the five tasks, the tuned recipe) is trained twice in empty
folders, single-threaded in one process: as populations, and with the population size forced
to 1 (every run alone). Their ratio is `population_speedup`. Both read the feature cache the
pipeline just filled, so neither pays for encoding images.

Writes results/pipeline_cpu.json and results/pipeline_cpu.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
STAGES = ("tuning", "benchmarks", "protocols", "chapters", "html")
SWEEP_METHODS = ("coop", "gcscoop")     # the first one's ratio is the headline
SEEDS = [str(s) for s in range(1, 11)]


def processor() -> dict:
    """The processor's name and widest vector instructions (rounding differs between them)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {"processor": name, "vector": "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "other"}


def start_from_nothing() -> None:
    """Delete what the pipeline makes: records, solutions, tuning, protocols, what the chapters
    computed from solutions, and their tables."""
    for path in [*RESULTS.glob("*.jsonl"), RESULTS / "tuning.json", RESULTS / "protocols.json",
                 RESULTS / "computed.json"]:
        path.unlink(missing_ok=True)
    shutil.rmtree(RESULTS / "solutions", ignore_errors=True)


def timed(command: list[str], env: dict) -> float:
    start = time.time()
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return time.time() - start


def sweep_seconds(method: str, population: int, env: dict) -> float:
    """One method's ten-seed sweep over the five tasks, in an empty folder, one process, one thread."""
    with tempfile.TemporaryDirectory() as folder:
        mine = {**env, "GCSCOOP_RESULTS": folder, "GCSCOOP_BOOK_RESULTS": folder, "GCSCOOP_POPULATION": str(population)}
        return timed([sys.executable, "-m", "gcscoop_lib", "benchmark", "--results", folder, "--methods", method,
                      "--seeds", *SEEDS, "--tuning", str(RESULTS / "tuning.json"), "--name", "sweep"], mine)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regenerate", action="store_true", help="delete the stored results and make them anew")
    args = parser.parse_args(argv)
    if not args.regenerate:
        parser.error("this deletes and regenerates every stored result: pass --regenerate to mean it")
    import torch

    cache = Path(tempfile.mkdtemp(prefix="gcscoop-features-"))
    env = {**os.environ, "GCSCOOP_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    start_from_nothing()
    stages, done = {}, []
    for stage in STAGES:
        print(f"== {stage}", flush=True)
        skip = [flag for target in ["install", "data", *done] for flag in ("-o", target)]
        stages[stage] = round(timed(["make", *skip, stage], env), 1)
        done.append(stage)
    sweeps = {}
    for method in SWEEP_METHODS:
        print(f"== sweep: {method}, ten seeds, five tasks, as populations and alone", flush=True)
        together, alone = sweep_seconds(method, 16, env), sweep_seconds(method, 1, env)
        sweeps[method] = {"population_s": round(together, 1), "solo_s": round(alone, 1),
                          "speedup": round(alone / together, 2)}
    shutil.rmtree(cache, ignore_errors=True)
    out = {"from_nothing_s": round(sum(stages.values()), 1), "stages_s": stages,
           "population_speedup": sweeps[SWEEP_METHODS[0]]["speedup"], "sweeps": sweeps,
           "sweep": f"{SWEEP_METHODS[0]}: seeds 1-10 on the five tasks (50 runs), the tuned recipe",
           "cores": os.cpu_count(), "threads": 1, "jobs": 2, **processor(), "torch": torch.__version__}
    (RESULTS / "pipeline_cpu.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "pipeline_cpu.md").write_text(report(out))
    print(report(out))
    return 0


def report(out: dict) -> str:
    """The measurement as Markdown (results/pipeline_cpu.md)."""
    rows = "\n".join(f"| {stage} | {seconds:.0f} |" for stage, seconds in out["stages_s"].items())
    sweeps = "\n".join(f"| {method} | {s['population_s']:.0f} | {s['solo_s']:.0f} | {s['speedup']:.2f}x |"
                       for method, s in out["sweeps"].items())
    return (f"# The book from nothing on {out['cores']} cores ({out['processor']}, {out['vector']}, torch {out['torch']})\n\n"
            f"Every record, solution, tuning choice, protocol, chapter and the HTML, from no stored results and "
            f"no feature cache: **{out['from_nothing_s']:.0f} s** ({out['from_nothing_s'] / 60:.1f} minutes); "
            f"single-threaded runs in {out['jobs']} jobs.\n\n| stage | seconds |\n|---|---|\n{rows}\n\n"
            f"## One sweep as populations and alone\n\nTen seeds on the five tasks (50 runs), one process, one "
            f"thread, image features cached: seconds of wall time.\n\n| method | populations | alone | speedup |\n"
            f"|---|---|---|---|\n{sweeps}\n")


if __name__ == "__main__":
    sys.exit(main())
