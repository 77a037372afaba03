"""Command line: the same calls as the notebooks.

    python -m gcscoop_lib eval --dataset fashion [--ensemble]
    python -m gcscoop_lib train --method gcscoop --dataset fashion --seed 1 [--knob rho=0.1]
    python -m gcscoop_lib tune
    python -m gcscoop_lib benchmark
    python -m gcscoop_lib protocol fewshot --jobs 2          # also: domains, transfer, saliency, stopping, all
    python -m gcscoop_lib sweep --methods coop gcscoop --executor local --jobs 2
    python -m gcscoop_lib prepare oxford_pets dtd       # the papers' datasets: what is there, what to fetch
    python -m gcscoop_lib prepare --download dtd        # fetch it with torchvision's downloader
    python -m gcscoop_lib prune [--dry-run]              # drop (or list) what the current units would not produce

Every command writes to --results (default $GCSCOOP_RESULTS, else ~/gcscoop_runs) and says
where; the book's own records are read, never written, unless --results names their folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from . import (datasets, evaluation, methods, paper_data, protocol, protocols, reports, runs, settings, staleness,
               sweeps, tuning, world)
from .prompts import ENSEMBLE_TEMPLATES
from .training import TrainConfig

def _common(parser):
    parser.add_argument("--model", default="tiny", help="'tiny' (offline) or an open_clip name, e.g. ViT-B-16")
    parser.add_argument("--pretrained", default=None, help="open_clip pretrained tag, e.g. openai")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--results", default=None,
                        help="folder your runs are written to (default: $GCSCOOP_RESULTS or ~/gcscoop_runs); "
                             "the book's records are read as well")


def _print_scores(label: str, scores: dict) -> None:
    print(f"{label}: base {scores['base']:.1f}  new {scores['new']:.1f}  H {scores['H']:.1f}")


def cmd_eval(args) -> None:
    runner = runs.Runner(args.results, args.device)
    config = TrainConfig(method="zeroshot", dataset=args.dataset, model=args.model, pretrained=args.pretrained,
                         shots=args.shots, seed=args.seed)
    clip, task = runner.clip(config), runner.task(config)
    templates = ENSEMBLE_TEMPLATES if args.ensemble else [args.template or task.template]
    _print_scores(f"zero-shot ({len(templates)} template{'s' * (len(templates) > 1)}) on {args.dataset}",
                  evaluation.evaluate_zero_shot(clip, task, templates))


def _tuning_for(args) -> dict:
    """--tuning if given; else for the tiny CLIP the tuned recipe (the results folder's
    tuning.json, else the book's), for any other CLIP GCSCoOp's recipe with default knobs."""
    if args.tuning:
        return tuning.load_tuning(args.tuning)
    if args.model != "tiny":
        return {"recipe": dict(protocol.PAPER_RECIPE), "knobs": {}}
    own = Path(settings.pick(args.results, "results")) / "tuning.json"
    return tuning.load_tuning(own if own.exists() else settings.current().book_results / "tuning.json")


def _recipe(args, tuned: dict) -> dict:
    return {**tuned["recipe"], **{k: getattr(args, k) for k in protocol.PAPER_RECIPE if getattr(args, k) is not None}}


def _knobs(method: str, pairs: list[str]) -> dict:
    """--knob NAME=VALUE pairs, checked against the method (one clear error if wrong)."""
    knobs = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--knob takes NAME=VALUE, got {pair!r} (e.g. --knob rho=0.1)")
        knobs[name.strip()] = value.strip()
    methods.get(method).knobs(knobs)
    return knobs


def cmd_train(args) -> None:
    tuned = _tuning_for(args)
    knobs = {**tuned["knobs"].get(args.method, {}), **_knobs(args.method, args.knob)}
    run = TrainConfig(method=args.method, dataset=args.dataset, seed=args.seed, model=args.model,
                      pretrained=args.pretrained, shots=args.shots, views=args.views, knobs=knobs,
                      **_recipe(args, tuned)).resolve()
    runner = runs.Runner(args.results, args.device, progress=True)
    found = None if args.force else runner.current(run)
    record = runner.run(run, force=args.force)
    _print_scores(f"{run.method.label} on {args.dataset}, seed {args.seed} [run {run.key}]", record)
    if found is not None:
        print(f"loaded from a stored record in {found[1] / 'runs.jsonl'}: nothing was trained (--force trains again)")
    else:
        print(f"{'trained' if run.method.trains else 'evaluated'} now; record written to {runner.path}")


def cmd_tune(args) -> None:
    runner = runs.Runner(args.results, args.device, records_file="tuning_runs.jsonl")
    out = runner.dir / "tuning.json"
    if args.if_stale and out.exists():
        stale = tuning.stale_choices(tuning.load_tuning(out))
        if not stale:
            print(f"{out}: every choice is current, nothing to tune")
            return
        print(f"{out}: {', '.join(stale)} no longer current: tuning again (current runs are loaded, not redone)")
    def prefetch(configs):   # a grid's runs in --jobs processes, as populations
        sweeps.sweep(configs, runner.dir, "local", args.jobs, args.device, records_file="tuning_runs.jsonl")
        runner.refresh()

    tuned = tuning.tune(args.datasets, runner, log=lambda line: print(line, flush=True),
                        prefetch=prefetch if args.jobs > 1 else None)
    out.write_text(json.dumps(tuned, indent=2) + "\n")
    runner.prune()
    print(f"recipe {tuned['recipe']}; knobs {tuned['knobs']} -> {out} (runs in {runner.path})")


def cmd_benchmark(args) -> None:
    start = time.time()
    tuned = _tuning_for(args)
    configs = [TrainConfig(method=m, dataset=d, seed=s, model=args.model, pretrained=args.pretrained,
                           partition=args.partition, knobs=tuned["knobs"].get(m, {}), **tuned["recipe"])
               for m in args.methods for d in args.datasets for s in args.seeds]
    runner = runs.Runner(args.results, args.device, progress=True, borrow_from=("tuning_runs.jsonl",))
    if args.jobs > 1 and not args.force:   # train in parallel first: single-threaded runs come out alike
        todo = [c for c in configs if runner.needs(c.resolve(), args.track)]   # a tuning run lacks its curves
        sweeps.sweep(todo, args.results, "local", args.jobs, args.device, track=args.track)
        runner = runs.Runner(args.results, args.device, progress=True, borrow_from=("tuning_runs.jsonl",))
    done = [runner.run(c, force=True) for c in configs] if args.force else runner.run_many(configs, args.track)
    table = reports.summarise(done)
    order = [m for m in methods.METHODS if m in args.methods]
    report = reports.markdown_report(table, order, args.datasets)
    if "zeroshot" in order and args.partition == "coop" and list(args.seeds) == list(protocol.SEEDS):
        report += ("\n## Against zero-shot CLIP, next to the papers\n\nChange from zero-shot CLIP in points; the "
                   "papers' numbers are ViT-B/16 averages over 11 datasets (gcscoop_lib/published.json).\n\n"
                   + reports.papers_comparison(table, order) + "\n")
    runner.prune()
    (runner.dir / f"{args.name}.md").write_text(report)
    (runner.dir / f"{args.name}.json").write_text(json.dumps(
        {"table": table, "tuning": {"recipe": tuned["recipe"], "knobs": tuned["knobs"]},
         "seeds": list(args.seeds), "datasets": args.datasets, "partition": args.partition}, indent=2) + "\n")
    print(report)
    print(f"benchmark: {len(args.methods)} methods x {len(args.datasets)} datasets x {len(args.seeds)} seeds "
          f"in {time.time() - start:.0f}s -> {runner.dir / (args.name + '.md')}, {runner.dir / (args.name + '.json')} "
          f"(runs in {runner.path})")


def cmd_protocol(args) -> None:
    if args.model != "tiny":
        raise ValueError("the protocols run on the embedded world (--model tiny); for another CLIP, train its "
                         "runs with `train` or `sweep`")
    start = time.time()
    tuned = _tuning_for(args)
    names = list(protocols.PROTOCOLS) if args.name == "all" else [args.name]
    arguments = {name: protocols.arguments(name, args.datasets, args.seeds, args.shots, args.styles)
                 for name in names}
    if args.jobs > 1:   # train the runs first, in parallel: each is single-threaded, so records come out alike
        configs = protocols.protocol_configs(tuned, args.datasets, args.shots or protocols.FEW_SHOTS,
                                             args.seeds or protocol.SEEDS)
        sweeps.sweep(configs, args.results, "local", args.jobs, args.device)
        if "stopping" in names:
            stopping = protocols.stopping_configs(tuned, args.datasets, args.seeds or protocols.STOPPING_SEEDS)
            sweeps.sweep(stopping, args.results, "local", args.jobs, args.device, track=True)
        # then the protocols' own work (probes, shifted test sets, saliency), one protocol a process
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            list(pool.map(_protocol_rows, names, [args.results] * len(names), [args.device] * len(names),
                          [tuned] * len(names), [arguments[name] for name in names]))
    runner = runs.Runner(args.results, args.device)
    for name in names:
        rows = protocols.results(name, runner, tuned, **arguments[name])
        print(f"## {protocols.TITLES[name]}\n\n{protocols.table(name, rows)}\n")
    report = protocols.report(runner, tuned)
    (runner.dir / "protocols.md").write_text(report)
    print(f"{', '.join(names)} in {time.time() - start:.0f}s -> {runner.dir / protocols.STORE}, "
          f"{runner.dir / 'protocols.md'} (runs in {runner.path})")


def _protocol_rows(name: str, results, device: str, tuned: dict, arguments: dict) -> None:
    """Compute and store one protocol's rows (a process of `protocol --jobs`)."""
    protocols.results(name, runs.Runner(results, device), tuned, **arguments)


def cmd_sweep(args) -> None:
    tuned = _tuning_for(args)
    configs = [TrainConfig(method=m, dataset=d, seed=s, model=args.model, pretrained=args.pretrained,
                           knobs=tuned["knobs"].get(m, {}), **_recipe(args, tuned))
               for m in args.methods for d in args.datasets for s in args.seeds]
    done = sweeps.sweep(configs, args.results, args.executor, args.jobs, args.device, args.records,
                        {"slurm_partition": args.partition} if args.partition else None)
    table = reports.summarise(done)
    out = Path(settings.pick(args.results, "results"))
    stem = Path(args.records).stem
    (out / f"{stem}.md").write_text(reports.markdown_report(table, args.methods, args.datasets))
    (out / f"{stem}.csv").write_text(reports.csv_table(table, args.methods, args.datasets))
    print(reports.markdown_table(table, args.methods))
    print(f"{len(done)} runs -> {out / args.records}, {out / (stem + '.md')}, {out / (stem + '.csv')}")


def cmd_prune(args) -> None:
    folder = Path(settings.pick(args.results, "results"))
    tuned = _tuning_for(args) if (folder / protocols.STORE).exists() else None
    if args.dry_run:
        print(f"what {folder} would recompute now, by the change that makes it stale (nothing is changed):")
        for line in staleness.explain(staleness.stale_results(folder, tuned)):
            print(line)
        return
    for path in sorted(folder.glob("*.jsonl")):
        dropped = runs.Runner(folder, args.device, path.name).prune()
        print(f"{path}: {dropped} record{'s' * (dropped != 1)} no longer current, dropped")
    dropped = runs.prune_solutions(folder)
    print(f"{folder / 'solutions'}: {dropped} solution{'s' * (dropped != 1)} without a current record, deleted")
    if tuned is not None:
        dropped = protocols.prune(folder, tuned)
        print(f"{folder / protocols.STORE}: {len(dropped)} protocol{'s' * (len(dropped) != 1)} no longer current, "
              f"dropped{': ' + ', '.join(dropped) if dropped else ''}")
    if (folder / "tuning.json").exists():
        stale = tuning.stale_choices(tuning.load_tuning(folder / "tuning.json"))
        if stale:
            print(f"{folder / 'tuning.json'}: {', '.join(stale)} no longer current (kept): "
                  f"`python -m gcscoop_lib tune --results {folder} --if-stale` chooses them again")


def cmd_prepare(args) -> None:
    unknown = [d for d in args.datasets if d not in paper_data.REGISTRY]
    if unknown:
        raise ValueError(f"unknown paper dataset {unknown[0]!r}: choose from {sorted(paper_data.REGISTRY)}")
    args.datasets = args.datasets or sorted(paper_data.REGISTRY)
    print(f"data root: {args.root or paper_data.data_root()}")
    if args.download:
        for name in args.datasets:
            for line in paper_data.download(name, args.root, large=args.large):
                print(line)
    for line in paper_data.prepare(args.datasets, args.root):
        print(line)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gcscoop_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="zero-shot accuracy on base and new classes")
    _common(p)
    p.add_argument("--dataset", required=True, choices=datasets.all_dataset_names())
    p.add_argument("--template", default=None, help="default: the dataset's own hand-written template")
    p.add_argument("--ensemble", action="store_true", help="average the embedded prompt ensemble")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train one method on one dataset and seed, and record it")
    _common(p)
    p.add_argument("--method", required=True, choices=list(methods.METHODS))
    p.add_argument("--dataset", required=True, choices=datasets.all_dataset_names())
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--views", type=int, default=1, help="augmented views cached per training image")
    p.add_argument("--epochs", type=int, help="default: the tuned recipe's (tiny) or GCSCoOp's (other CLIPs)")
    p.add_argument("--lr", type=float, help="default: as --epochs")
    p.add_argument("--batch-size", type=int, help="default: as --epochs")
    p.add_argument("--knob", action="append", metavar="NAME=VALUE",
                   help="set one of the method's knobs (repeatable); the knobs and their defaults: " +
                        "; ".join(f"{m.name}: {m.describe_knobs()}" for m in methods.METHODS.values() if m.trains))
    p.add_argument("--tuning", type=Path, default=None,
                   help="recipe and knobs to start from (default: RESULTS/tuning.json for tiny, GCSCoOp's "
                        "recipe for other models; flags override)")
    p.add_argument("--force", action="store_true", help="re-run even if a record with this config exists")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="choose the recipe (CoOp base val) and each method's knob (val H)")
    _common(p)
    p.add_argument("--datasets", nargs="+", default=datasets.dataset_names(), choices=datasets.dataset_names())
    p.add_argument("--if-stale", action="store_true", help="tune only when RESULTS/tuning.json is missing or a "
                                                         "choice in it is no longer current")
    p.add_argument("--jobs", type=int, default=1, help="train each grid's runs in this many processes first")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("benchmark", help="every dataset x method x seed; writes results/benchmark.md")
    _common(p)
    p.add_argument("--datasets", nargs="+", default=datasets.dataset_names(), choices=datasets.dataset_names())
    p.add_argument("--methods", nargs="+", default=list(methods.METHODS), choices=list(methods.METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(protocol.SEEDS))
    p.add_argument("--partition", default="coop", choices=["coop", "reversed"],
                   help="which classes are base: CoOp's rule, or the same rule on the labels in reverse order")
    p.add_argument("--name", default="benchmark", help="the report's file name in the results folder (NAME.md, .json)")
    p.add_argument("--jobs", type=int, default=1, help="train the missing runs in this many processes first")
    p.add_argument("--tuning", type=Path, default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--track", action="store_true", help="train the runs tracked: per-epoch accuracies and drift "
                                                       "stored with their solutions (the stopping protocol reads them)")
    p.set_defaults(func=cmd_benchmark)
    p = sub.add_parser("protocol", help="few-shot learning, domain shift, cross-task transfer, saliency or "
                                        "stopping by validation on the embedded tasks; writes "
                                        "results/protocols.md")
    _common(p)
    p.add_argument("name", choices=[*protocols.PROTOCOLS, "all"])
    p.add_argument("--datasets", nargs="+", choices=datasets.dataset_names(),
                   help="tasks (default: all; transfer: the sources and targets)")
    p.add_argument("--seeds", nargs="+", type=int, help="default: 1 2 3 (stopping: 1 to 10)")
    p.add_argument("--shots", nargs="+", type=int, help="fewshot: shots per class (default: 1 2 4 8 16)")
    p.add_argument("--styles", nargs="+", help=f"domains: styles to evaluate in (default: all of {', '.join(world.STYLES)})")
    p.add_argument("--tuning", type=Path, default=None)
    p.add_argument("--jobs", type=int, default=1, help="train the protocols' runs in this many processes first")
    p.set_defaults(func=cmd_protocol)

    p = sub.add_parser("sweep", help="methods x datasets x seeds, skipping finished runs, inline or via submitit")
    _common(p)
    p.add_argument("--methods", nargs="+", default=list(methods.METHODS), choices=list(methods.METHODS))
    p.add_argument("--datasets", nargs="+", default=datasets.dataset_names(), choices=datasets.all_dataset_names())
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--tuning", type=Path, default=None)
    p.add_argument("--executor", default="inline", choices=sweeps.EXECUTORS,
                   help="inline (this process), local (submitit processes) or slurm (submitit)")
    p.add_argument("--jobs", type=int, default=1, help="jobs to split the runs into (local, slurm)")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--records", default="sweep.jsonl", help="records file inside the results folder")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("prepare", help="check the papers' datasets on disk and say what to fetch by hand")
    p.add_argument("datasets", nargs="*", help=f"any of {', '.join(sorted(paper_data.REGISTRY))} (default: all)")
    p.add_argument("--root", type=Path, default=None, help="data root (default: $GCSCOOP_DATA or ~/data)")
    p.add_argument("--download", action="store_true", help="fetch the named datasets with torchvision's downloaders")
    p.add_argument("--large", action="store_true", help="with --download: allow SUN397 (37 GB)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("prune", help="drop records the current code and weights would not produce")
    _common(p)
    p.add_argument("--tuning", type=Path, default=None, help="the tuned recipe the stored protocols were run with "
                                                           "(default: RESULTS/tuning.json, else the book's)")
    p.add_argument("--dry-run", action="store_true",
                   help="list what is stale, grouped by the change that caused it, with its CPU seconds; change nothing")
    p.set_defaults(func=cmd_prune)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
