"""Does a recipe change move the dev scores? Each seed's two runs compared.

    python -m bam_tf_experiments.paired_trials \\
      --runs='Single:runs/x/single_cola+runs/x/single_rte,Single bucketed:runs/x/single_cola_bucketed+runs/x/single_rte_bucketed' \\
      --baseline=Single --out_dir=reports/bucketing [--first_trials=3]

The report (bam_tf_experiments.report) asks Table 1's question: does a
method improve over a baseline? A deliberate recipe change (length-bucketed
batches, say) asks another: does it move the scores, either way, beyond what
the seeds already do? When both recipes were trained with the same seeds,
trial with seed s of one is paired with trial with seed s of the other
(which the report cannot do: its methods' trials are not matched), and every
test is two-sided:

- per seed: the paired bootstrap over dev examples of that seed's two runs;
- pooled: the mean over seeds of those deltas, each resample drawing the
  same dev examples for every seed (they share the dev set);
- Mann-Whitney U over the two recipes' trial scores;
- seeds and examples: the pooled test with the seed pairs drawn with
  replacement too, so the difference must survive another draw of seeds
  (shown beside the verdict, not part of it).

Each test is Holm-corrected over its own family (tasks; for the per-seed
test, tasks x seeds). A task is "within noise" where neither the pooled
bootstrap nor Mann-Whitney finds a difference. As a yardstick the same
bootstrap compares the baseline's seeds with each other (one recipe, two
draws): how far apart two runs land, and how often the test calls that a
difference, when nothing was changed. Writes paired.md, paired.csv and
paired.json. --first_trials=N keeps to trials 1-N of every run dir, so a
stage's published comparison stays the same when later seeds land. No
TensorFlow.
"""

import argparse
import itertools
import os
import statistics as pystats
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from bam_tf.common import errors
from bam_tf.common import files
from bam_tf_experiments import report as rp
from bam_tf_experiments import statistics as st

FAMILIES = {
    "pooled": "paired bootstrap of the mean per-seed delta over dev examples "
              "(the same resampled examples for every seed)",
    "per_seed": "paired bootstrap over dev examples, one seed's two runs",
    "mannwhitney": "Mann-Whitney U over trial scores",
    "seeds": "paired bootstrap of the mean per-seed delta over seed pairs "
             "and dev examples (seed pairs drawn with replacement)",
    "same_recipe": "paired bootstrap between two seeds of the baseline "
                   "(nothing changed but the draw)",
}
# The verdict's tests; per-seed bootstraps, the seed-level bootstrap and the
# yardstick are evidence shown beside it (the verdict's rule was fixed
# before the seed-level test existed).
DECIDING = ("pooled", "mannwhitney")


class PairedTrialsError(rp.ReportError):
  """Runs that cannot be paired seed by seed."""


def trials_by_seed(task: str, m: rp.Method) -> Dict[int, int]:
  """{seed: trial} of m's finished trials of task."""
  run = m.task_run[task]
  seeds = {trial: run.seeds[trial] for trial in m.scores(task)}
  unseeded = [t for t, s in seeds.items() if s is None]
  if unseeded:
    raise PairedTrialsError(
        f"{run.path}/results.json: trial(s) {unseeded} record no seed; "
        "pairing by seed needs it")
  by_seed: Dict[int, int] = {}
  for trial, s in sorted(seeds.items()):
    if s in by_seed:  # one of them would be dropped from every test
      raise PairedTrialsError(
          f"{run.path}/results.json: trials {by_seed[s]} and {trial} both "
          f"record seed {s}; pairing by seed needs one trial per seed")
    by_seed[s] = trial
  return by_seed


def seed_pairs(base_seeds: Dict[int, int], other_seeds: Dict[int, int]
               ) -> List[Tuple[int, int, int]]:
  """[(seed, baseline trial, other trial)] for the seeds both have."""
  return [(s, base_seeds[s], other_seeds[s])
          for s in sorted(set(base_seeds) & set(other_seeds))]


def compare_task(task: str, base: rp.Method, other: rp.Method,
                 n_resamples: int, seed: int) -> Dict:
  """Every test of one task, before Holm."""
  base_seeds = trials_by_seed(task, base)
  other_seeds = trials_by_seed(task, other)
  pairs = seed_pairs(base_seeds, other_seeds)
  if not pairs:
    raise PairedTrialsError(
        f"{task}: {base.name} and {other.name} share no seed (seeds "
        f"{sorted(base_seeds)} and {sorted(other_seeds)})")
  spec = other.spec(task)
  scorer = st.batched_metric_for(spec)
  # One resampling seed per task: bootstrap_deltas draws its indices from
  # (seed, number of examples) alone, so every seed's pair is resampled on
  # the same dev examples and the per-resample deltas can be averaged.
  task_seed = st.resample_seed(seed, task)
  per_seed, seed_deltas, first_gold = [], [], None
  for s, ta, tb in pairs:
    gold, pa, pb = rp.aligned_predictions(task, base, other, ta, tb)
    if first_gold is None:
      first_gold = gold
    elif not np.array_equal(gold, first_gold):
      raise PairedTrialsError(f"{task}: the seeds' dev sets differ; pooling "
                              "needs one dev set")
    obs, deltas = st.bootstrap_deltas(scorer, gold, pa, pb, n_resamples,
                                      task_seed)
    seed_deltas.append(deltas)
    per_seed.append({"seed": s, "trials": [ta, tb],
                     "baseline": base.scores(task)[ta],
                     "other": other.scores(task)[tb], "delta": obs,
                     "p_value": st.two_sided_bootstrap_pvalue(deltas)})
  observed = float(np.mean([p["delta"] for p in per_seed]))
  seed_deltas = np.stack(seed_deltas)  # [seeds, resamples]
  pooled = {"delta": observed, "n_seeds": len(pairs),
            "p_value": st.two_sided_bootstrap_pvalue(seed_deltas.mean(0))}
  # Seed pairs drawn with replacement per resample, on the examples that
  # resample drew (hand-written for the same reason as the pooled test).
  draws = np.random.default_rng(st.resample_seed(seed, task + "/seeds")
                                ).integers(0, len(pairs),
                                           size=(n_resamples, len(pairs)))
  seeds_test = {"delta": observed, "n_seeds": len(pairs),
                "p_value": st.two_sided_bootstrap_pvalue(np.take_along_axis(
                    seed_deltas, draws.T, axis=0).mean(0))}
  a = [p["baseline"] for p in per_seed]
  b = [p["other"] for p in per_seed]
  mw = st.mann_whitney_test(a, b, alternative="two-sided")
  mw["smallest_p"] = st.mann_whitney_smallest_p(len(a), len(b), "two-sided")
  # The yardstick uses every seed of the baseline, paired or not.
  same_recipe = []
  for (s1, t1), (s2, t2) in itertools.combinations(
      sorted(base_seeds.items()), 2):
    gold, p1, p2 = rp.aligned_predictions(task, base, base, t1, t2)
    obs, deltas = st.bootstrap_deltas(scorer, gold, p1, p2, n_resamples,
                                      task_seed)
    same_recipe.append({"seeds": [s1, s2], "delta": obs,
                        "p_value": st.two_sided_bootstrap_pvalue(deltas)})
  return {"task": task, "metric": st.headline_metric_name(spec),
          "per_seed": per_seed, "pooled": pooled, "mannwhitney": mw,
          "seeds": seeds_test,
          "same_recipe": same_recipe,
          "unpaired_seeds": {
              base.name: sorted(set(base_seeds) - set(other_seeds)),
              other.name: sorted(set(other_seeds) - set(base_seeds))},
          "baseline_std": pystats.pstdev(a) if len(a) > 1 else 0.0,
          "other_std": pystats.pstdev(b) if len(b) > 1 else 0.0}


def build(methods: Dict[str, List[str]], baseline: str, alpha: float = 0.05,
          n_resamples: int = st.DEFAULT_RESAMPLES,
          seed: int = st.DEFAULT_SEED,
          first_trials: Optional[int] = None,
          out_dir: Optional[str] = None) -> Dict:
  """{baseline, other, tasks: [...], verdict, settings} for two methods;
  first_trials: only trials 0..n-1 of every run dir (a stage's snapshot);
  out_dir: where write() will put them, checked first."""
  rp.check_test_levels(alpha, n_resamples)
  rp.check_out_dir(out_dir,
                   runs=[d for dirs in methods.values() for d in dirs])
  if len(methods) != 2:
    raise PairedTrialsError(f"--runs: give exactly two methods, got "
                            f"{len(methods)} ({', '.join(methods)})")
  if baseline not in methods:
    raise PairedTrialsError(f"--baseline: {baseline!r} is not a method of "
                            f"--runs ({', '.join(methods)})")
  rows = rp.load_methods(methods, first_trials)
  base = rows[baseline]
  other = next(m for name, m in rows.items() if name != baseline)
  tasks = [t for t in rp.table_columns(rows, None)
           if t in base.task_run and t in other.task_run]
  if not tasks:
    raise PairedTrialsError(f"--runs: {base.name} and {other.name} share no "
                            "task")
  results = [compare_task(t, base, other, n_resamples, seed) for t in tasks]
  for family in FAMILIES:
    members = []
    for r in results:
      entry = r[family]
      members += entry if isinstance(entry, list) else [entry]
    rp.holm_correct(members, alpha,
                    rp.p_floor(family, n_resamples, "two-sided"))
  for r in results:
    r["within_noise"] = not any(r[f]["significant"] for f in DECIDING)
  return {"baseline": base.name, "other": other.name, "tasks": results,
          "within_noise_everywhere": all(r["within_noise"] for r in results),
          "families": FAMILIES, "deciding": list(DECIDING),
          "settings": {"alpha": alpha, "n_resamples": n_resamples,
                       "seed": seed, "sides": "two-sided",
                       "first_trials": first_trials},
          "runs": {m.name: {t: r.path for t, r in m.task_run.items()}
                   for m in rows.values()}}


def _p(c: Dict, n_resamples: Optional[int]) -> str:
  """"p (Holm p)"; n_resamples None for Mann-Whitney (no resampling)."""
  p, adjusted = rp.format_p_pair(
      c, n_resamples and st.resampling_floor(n_resamples, "two-sided"))
  return f"{p} ({adjusted})"


def render_markdown(result: Dict) -> str:
  base, other = result["baseline"], result["other"]
  s = result["settings"]
  n = s["n_resamples"]
  yes = lambda c: "yes" if c["significant"] else "no"
  lines = [f"## {other} against {base}, seed by seed (two-sided; p, then "
           f"Holm-corrected p in brackets; a difference where the corrected "
           f"p < {s['alpha']})", ""]
  lines += rp.first_trials_lines(s)
  rows = []
  for r in result["tasks"]:
    head = rp.column_header(r["task"])
    for p in r["per_seed"]:
      rows.append([head, str(p["seed"]), f"{p['baseline']:.2f}",
                   f"{p['other']:.2f}", f"{p['delta']:+.2f}", _p(p, n),
                   yes(p)])
    if len(r["per_seed"]) > 1:
      means = [np.mean([p[k] for p in r["per_seed"]])
               for k in ("baseline", "other")]
      rows.append([head, "mean", f"{means[0]:.2f}", f"{means[1]:.2f}",
                   f"{r['pooled']['delta']:+.2f}", _p(r["pooled"], n),
                   yes(r["pooled"])])
  lines += rp.markdown_table(
      ["Task", "seed", base, other, "delta", "bootstrap p (Holm)",
       "differs"], rows)
  lines += ["", "Rows by seed: " + FAMILIES["per_seed"] + "; mean rows: "
            + FAMILIES["pooled"] + ".", ""]
  lines += [f"## Verdict: is {other} within noise of {base}?", ""]
  rows = []
  for r in result["tasks"]:
    mw = r["mannwhitney"]
    same = r["same_recipe"]
    yardstick = ("-" if not same else
                 f"{max(abs(c['delta']) for c in same):.2f} "
                 f"({sum(c['significant'] for c in same)}/{len(same)})")
    rows.append([rp.column_header(r["task"]), r["metric"],
                 f"{r['pooled']['delta']:+.2f}",
                 (f"{r['baseline_std']:.2f} / {r['other_std']:.2f}"
                  if len(r["per_seed"]) > 1 else "-"),
                 _p(r["pooled"], n), _p(mw, None), yardstick,
                 "within noise" if r["within_noise"] else "differs",
                 _p(r["seeds"], n)])
  lines += rp.markdown_table(
      ["Task", "metric", "mean delta", "seed std (base / other)",
       "pooled bootstrap p (Holm)", "Mann-Whitney p (Holm)",
       "same recipe: largest abs. delta (differs)", "verdict",
       "beside it: seeds and examples p (Holm)"], rows)
  lines.append("")
  lines.append(
      f"Verdict: {other} is "
      + ("within noise of " + base + " on every task." if
         result["within_noise_everywhere"] else
         "not within noise of " + base + " on " + ", ".join(
             rp.column_header(r["task"]) for r in result["tasks"]
             if not r["within_noise"]) + ".")
      + f" Deciding tests: {FAMILIES['pooled']}; {FAMILIES['mannwhitney']}"
      f"; each Holm-corrected over the tasks.")
  smallest = {r["mannwhitney"]["smallest_p"] for r in result["tasks"]}
  if any(p >= s["alpha"] for p in smallest):
    lines.append(
        f"With these trial counts Mann-Whitney's smallest two-sided p is "
        f"{min(smallest):.3g}: it cannot find a difference at "
        f"{s['alpha']} on its own here, so the bootstrap decides.")
  lines.append(f"Beside the verdict: {FAMILIES['seeds']}, Holm over the "
               "tasks.")
  lines.append(f"Yardstick: {FAMILIES['same_recipe']}, every seed of "
               f"{base}; in brackets, how many of those pairs the test (Holm "
               "over all of them) calls different.")
  for r in result["tasks"]:
    for name, seeds in r["unpaired_seeds"].items():
      if seeds:
        lines.append(f"{rp.column_header(r['task'])}: {name}'s seed(s) "
                     f"{', '.join(map(str, seeds))} have no twin on the "
                     "other side; left out of the paired tests.")
  lines.append("")
  return "\n".join(lines)


def csv_rows(result: Dict) -> List[List]:
  rows = [["task", "family", "seeds", "delta", "p_value", "p_adjusted",
           "significant"]]
  for r in result["tasks"]:
    for p in r["per_seed"]:
      rows.append([r["task"], "per_seed", p["seed"], repr(p["delta"]),
                   repr(p["p_value"]), repr(p["p_adjusted"]),
                   p["significant"]])
    for family in ("pooled", "mannwhitney", "seeds"):
      c = r[family]
      rows.append([r["task"], family, "all", repr(c["delta"]),
                   repr(c["p_value"]), repr(c["p_adjusted"]),
                   c["significant"]])
    for c in r["same_recipe"]:
      rows.append([r["task"], "same_recipe",
                   "+".join(str(x) for x in c["seeds"]), repr(c["delta"]),
                   repr(c["p_value"]), repr(c["p_adjusted"]),
                   c["significant"]])
  return rows


def write(result: Dict, out_dir: str):
  """paired.md, paired.csv, paired.json (atomic writes)."""
  files.makedirs(out_dir)
  files.write_text_atomic(os.path.join(out_dir, "paired.md"),
                          result["markdown"])
  files.write_text_atomic(os.path.join(out_dir, "paired.csv"),
                          rp.csv_text(csv_rows(result)))
  files.write_json_atomic(os.path.join(out_dir, "paired.json"),
                          rp.jsonable(result))


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      prog="python -m bam_tf_experiments.paired_trials",
      description="Two recipes trained with the same seeds, compared seed "
                  "by seed, two-sided. Quote --runs.")
  p.add_argument("--runs", action="append", required=True,
                 help="NAME:DIR[+DIR...],NAME:DIR[+DIR...]: two methods")
  p.add_argument("--baseline", required=True,
                 help="the method the other one is a change of")
  p.add_argument("--out_dir", default="", help="where to write the files")
  rp.add_test_flags(p)
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)

  def work() -> int:
    result = build(rp.parse_runs(args.runs), args.baseline, args.alpha,
                   args.n_resamples, args.seed, args.first_trials,
                   args.out_dir or None)
    result["markdown"] = render_markdown(result)
    print(result["markdown"])
    if args.out_dir:
      write(result, args.out_dir)
      print(f"wrote paired.md, paired.csv and paired.json to {args.out_dir}")
    return 0
  return errors.run_command(work)


if __name__ == "__main__":
  sys.exit(main())
