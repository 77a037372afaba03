"""Many runs as one: a member of a population computes what its run computes alone (the same
batches in the same order, its own SAM step, GCSCoOp regime and learning rate), so a record
made by a population is the record of its run."""
import pytest
import torch

from gcscoop_lib import evaluation, population
from gcscoop_lib.tasks import prepare_task
from gcscoop_lib.training import TrainConfig, train, train_population

SMALL = dict(dataset="shapes", shots=4, epochs=3, batch_size=4)
KNOBS = {"gcscoop": {"rho": 0.2, "beta_low": 0.4, "beta_up": 0.6}}


def configs(method: str, **extra) -> list[TrainConfig]:
    """Three seeds, one of them at another learning rate (a recipe grid's members)."""
    recipe = dict(SMALL, **extra)
    return [TrainConfig(method=method, seed=seed, lr=lr, knobs=KNOBS.get(method, {}), **recipe)
            for seed, lr in ((1, 0.01), (2, 0.01), (3, 0.02))]


@pytest.fixture(scope="module")
def tasks(clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("splits")
    return {seed: prepare_task(clip, "shapes", 4, seed, split_dir=folder) for seed in (1, 2, 3)}


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.params])


@pytest.mark.parametrize("method,extra", [("coop", {}), ("kgcoop", {}), ("sam", {}), ("gcscoop", {}),
                                          ("cocoop", {"epochs": 2, "batch_size": 1})])
def test_a_member_is_its_solo_run(clip, tasks, method, extra):
    runs = [c.resolve() for c in configs(method, **extra)]
    together = train_population(runs, clip, [tasks[r.config.seed] for r in runs])
    for run, member in zip(runs, together):
        alone = train(run, clip, tasks[run.config.seed])
        assert torch.allclose(flat(member.model), flat(alone.model), rtol=1e-5, atol=1e-7), run.config.seed
        assert [s["epoch"] for s in member.steps] == [s["epoch"] for s in alone.steps]
        assert [s["loss"] for s in member.steps] == pytest.approx([s["loss"] for s in alone.steps], rel=1e-5)
        if method == "gcscoop":   # each member takes its own regime, step by step
            assert [s["regime"] for s in member.steps] == [s["regime"] for s in alone.steps]
        task = tasks[run.config.seed]
        ours, theirs = (evaluation.evaluate_prompt(m.model, task) for m in (member, alone))
        assert (round(ours["base"], 1), round(ours["new"], 1)) == (round(theirs["base"], 1), round(theirs["new"], 1))
    assert len({tuple(flat(m.model)[:8].tolist()) for m in together}) == 3   # three different runs


def test_prograd_members_agree_with_their_solo_runs_in_distribution(clip, tasks):
    """ProGrad's general gradient is a difference of nearly equal softmaxes, so rounding can
    flip a conflict decision late in a run: members and solo runs agree closely, not bit for bit."""
    runs = [c.resolve() for c in configs("prograd")]
    together = train_population(runs, clip, [tasks[r.config.seed] for r in runs])
    for run, member in zip(runs, together):
        alone = train(run, clip, tasks[run.config.seed])
        assert [s["conflict"] for s in member.steps[:10]] == [s["conflict"] for s in alone.steps[:10]]
        assert torch.allclose(flat(member.model), flat(alone.model), rtol=1e-3, atol=1e-5)


def test_runs_group_into_populations_by_what_they_share():
    a, b, c = (TrainConfig(method="coop", seed=s, **SMALL).resolve() for s in (1, 2, 3))
    other_knobs = TrainConfig(method="sam", seed=1, **SMALL).resolve()
    other_lr = TrainConfig(method="coop", seed=4, lr=0.5, **SMALL).resolve()
    groups = population.populations([a, other_knobs, b, c, other_lr], size=3)
    assert groups == [[a, b], [c, other_lr], [other_knobs]]   # a learning rate is a member's own
    assert population.populations([a, b, c, other_lr, other_knobs], size=4) == [[a, b, c, other_lr], [other_knobs]]


def test_a_population_refuses_members_with_other_numbers_of_classes(clip, tasks):
    coop = configs("coop")[0].resolve()
    from gcscoop_lib.training import build_model
    one = build_model(clip, coop, tasks[1].base_names)
    other = build_model(clip, coop, tasks[1].base_names[:-1])
    with pytest.raises(ValueError, match="as many classes"):
        population.Population([one, other])


def test_runs_on_tasks_of_as_many_classes_share_a_population():
    def run(dataset, **extra):
        return TrainConfig(method="coop", seed=1, **dict(SMALL, dataset=dataset, **extra)).resolve()

    shapes, digits, fashion = run("shapes"), run("digits"), run("fashion")
    coloured = run("coloured_shapes")                         # ten base classes, not five
    everything = run("coloured_shapes", partition="all")      # twenty classes
    pets = run("oxford_pets")                                 # not embedded: only with itself
    groups = population.populations([shapes, coloured, digits, pets, everything, fashion], size=16)
    assert groups == [[shapes, digits, fashion], [coloured], [pets], [everything]]


@pytest.mark.parametrize("method,extra", [("coop", {}), ("kgcoop", {}), ("gcscoop", {}),
                                          ("cocoop", {"epochs": 2, "batch_size": 1})])
def test_a_member_among_other_tasks_is_its_solo_run(clip, tmp_path, method, extra):
    """Members on different tasks: each its own class names, end-of-text positions, images and
    hand-written prompt's features (KgCoOp's pull, GCSCoOp's regimes), as alone."""
    runs = [TrainConfig(method=method, seed=1, knobs=KNOBS.get(method, {}),
                        **dict(SMALL, dataset=d, **extra)).resolve() for d in ("shapes", "textures", "fashion")]
    assert population.populations(runs, size=16) == [runs]
    tasks = [prepare_task(clip, r.config.dataset, 4, 1, split_dir=tmp_path) for r in runs]
    assert len({len(t.base_names) for t in tasks}) == 1 and len({tuple(t.base_names) for t in tasks}) == 3
    together = train_population(runs, clip, tasks)
    for run, task, member in zip(runs, tasks, together):
        alone = train(run, clip, task)
        # a prompt padded to a longer task's names sums its attention over more (masked) positions,
        # so it may round differently: the same to 1e-5 of its norm, not bit for bit
        difference = (flat(member.model) - flat(alone.model)).norm() / flat(alone.model).norm()
        assert difference < 1e-5, (run.config.dataset, difference)
        assert [s["loss"] for s in member.steps] == pytest.approx([s["loss"] for s in alone.steps], rel=1e-4)
        if method == "gcscoop":
            assert [s["regime"] for s in member.steps] == [s["regime"] for s in alone.steps]


def test_a_sweep_trains_populations_and_stores_one_record_per_run(tmp_path):
    from gcscoop_lib import sweeps
    from gcscoop_lib.runs import Runner

    runner = Runner(tmp_path, device="cpu")
    wanted = configs("sam") + [TrainConfig(method="zeroshot", **SMALL)]
    done = runner.run_many(wanted)
    assert [r["key"] for r in done] == [c.resolve().key for c in wanted]
    assert [r.get("population") for r in done] == [3, 3, 3, 1]
    alone = Runner(tmp_path, device="cpu")               # a reader's single run finds its record and solution
    assert alone.run(wanted[1]) == done[1] and not alone.solution(wanted[1]).trained_now and alone.trained == []
    assert alone.run_many(wanted) == done and alone.trained == []
    runs = [c.resolve() for c in configs("coop") + configs("sam") + configs("coop", epochs=6)]
    chunks = sweeps.share(runs, 2)                        # whole populations to a job, the work balanced
    assert sorted(len(c) for c in chunks) == [3, 6]
    assert {r.key for c in chunks for r in c} == {r.key for r in runs}


def test_a_tracked_member_records_the_curves_of_its_solo_run(clip, tasks):
    runs = [c.resolve() for c in configs("coop", epochs=2)]
    together = train_population(runs, clip, [tasks[r.config.seed] for r in runs], track=True)
    for run, member in zip(runs, together):
        alone = train(run, clip, tasks[run.config.seed], track=True)
        for ours, theirs in zip(member.history, alone.history, strict=True):
            assert set(ours) == set(theirs) >= {"base", "new", "val_base", "val_new", "kl", "distance", "text_cos"}
            assert all(ours[k] == pytest.approx(theirs[k], rel=1e-4, abs=0.15) for k in ours)


@pytest.mark.parametrize("method,grid", [
    ("sam", [{"rho": 0.02}, {"rho": 0.2}, {"rho": 0.5}]),
    ("gcscoop", [{"rho": 0.05, "beta_low": 0.0}, {"rho": 0.2, "beta_low": 0.4, "beta_up": 0.6},
                 {"rho": 0.5, "beta_low": 0.5, "beta_up": 0.95}]),
])
def test_a_knob_grid_trains_as_one_population_and_each_member_is_its_solo_run(clip, tasks, method, grid):
    runs = [TrainConfig(method=method, seed=1 + i % 2, knobs=knobs, **SMALL).resolve() for i, knobs in enumerate(grid)]
    assert population.populations(runs, size=16) == [runs]
    together = train_population(runs, clip, [tasks[r.config.seed] for r in runs])
    for run, member in zip(runs, together):
        alone = train(run, clip, tasks[run.config.seed])
        assert torch.allclose(flat(member.model), flat(alone.model), rtol=1e-5, atol=1e-7), run.config.knobs
        if method == "gcscoop":
            assert [s["regime"] for s in member.steps] == [s["regime"] for s in alone.steps]
    if method == "gcscoop":   # the grid's members take different regimes
        assert len({tuple(s["regime"] for s in m.steps) for m in together}) == 3


def test_prograd_weights_grid_members_by_their_own_lam(clip, tasks):
    runs = [TrainConfig(method="prograd", seed=1, knobs={"lam": lam}, **SMALL).resolve() for lam in (0.0, 1.0)]
    assert population.populations(runs, size=16) == [runs]
    together = train_population(runs, clip, [tasks[1]] * 2)
    for run, member in zip(runs, together):
        alone = train(run, clip, tasks[1])
        assert [s["conflict"] for s in member.steps[:10]] == [s["conflict"] for s in alone.steps[:10]]
        assert torch.allclose(flat(member.model), flat(alone.model), rtol=1e-3, atol=1e-5)
    coop = train(TrainConfig(method="coop", seed=1, **SMALL).resolve(), clip, tasks[1])
    assert torch.allclose(flat(together[0].model), flat(coop.model), rtol=1e-5, atol=1e-7)   # lam = 0 is CoOp


def test_knobs_a_method_uses_as_a_whole_keep_their_runs_apart():
    runs = [TrainConfig(method="kgcoop", seed=1, knobs={"lam": lam}, **SMALL).resolve() for lam in (2.0, 8.0)]
    assert population.populations(runs, size=16) == [[runs[0]], [runs[1]]]
    with pytest.raises(ValueError, match="differ in lam, which its update uses as a whole"):
        population.member_knobs(runs)


def test_five_populations_share_two_jobs_evenly_by_halving_one():
    from gcscoop_lib import sweeps

    grid = [TrainConfig(method=m, seed=s, lr=lr, knobs=KNOBS.get(m, {}), **SMALL).resolve()
            for m in ("coop", "kgcoop", "prograd", "sam", "gcscoop") for s in (1, 2, 3)
            for lr in (0.002, 0.01, 0.05, 0.2)]
    assert sorted(map(len, population.populations(grid, 16))) == [12] * 5
    chunks = sweeps.share(grid, 2)
    assert sorted(len(c) for c in chunks) == [30, 30]
    assert sorted(r.key for c in chunks for r in c) == sorted(r.key for r in grid)


def test_a_population_weighs_its_steps_so_cocoops_batches_of_one_image_fill_a_job_of_their_own():
    from gcscoop_lib import sweeps

    cocoop = [TrainConfig(method="cocoop", seed=s, shots=16, epochs=10, batch_size=1, partition="all").resolve()
              for s in (1, 2, 3)]
    coop = [TrainConfig(method="coop", seed=s, shots=16, epochs=100, batch_size=32, partition="all",
                        dataset=d).resolve() for d in ("shapes", "digits", "textures", "fashion") for s in (1, 2, 3)]
    assert sweeps.steps(cocoop[0].config) == 10 * 160 and sweeps.steps(coop[0].config) == 100 * 5
    chunks = sweeps.share(cocoop + coop, 2)
    assert sorted(len(c) for c in chunks) == [3, 12] and {r.config.method for r in min(chunks, key=len)} == {"cocoop"}
