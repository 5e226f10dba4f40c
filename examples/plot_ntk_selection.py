"""
NTK-entropy data selection, at gallery size
===========================================

Which 30 digits should a small network be trained on? ZnNL's
*ApproximateMaximumEntropy* recipe picks the points whose empirical neural
tangent kernel (NTK) at initialisation has the largest von Neumann entropy:
points whose gradients spread over many directions with even weight. This
example runs the study :ref:`example-ntk-data-selection` with a few seeds:
for each seed one 64-64-10 tanh network is initialised, the NTK of the
1,078-digit training pool is computed once, and three rules choose 30 points
from it:

- *max-entropy*: :class:`infoscope.selection.MaxEntropySelector`, the best of
  500 random candidate subsets;
- *greedy*: :class:`infoscope.selection.GreedyEntropySelector`, one point at a
  time, each maximising the entropy of the subset so far;
- *random*: :class:`infoscope.selection.RandomSelector`, the baseline, which
  with the same seed draws the max-entropy selector's first candidate.

A copy of the initial network is then trained on each choice (300 full-batch
Adam steps) and tested on the 719 held-out digits. The user guide's
:doc:`/user_guide/selection` page describes the selectors.
"""

# %%
# Run the study
# -------------
# The study lives in ``examples/ntk_data_selection.py`` (the full run,
# 20 seeds, is its command line); here it is imported from that file and run
# with 4 seeds and its default settings. ``run_study`` returns one row per
# method and seed: the NTK entropy of the chosen points before and after
# training (bits), the test accuracy, how many of the 10 classes the 30
# points cover, and their atypicality, the mean Euclidean distance of each
# chosen digit to the mean image of its class in the pool.

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

# sphinx_gallery_start_ignore
# The gallery is built on small, shared machines: one BLAS thread is as fast
# for these small matrices and does not wait on busy cores.
__import__("threadpoolctl").threadpool_limits(1)
# sphinx_gallery_end_ignore

try:
    here = Path(__file__).parent
except NameError:  # sphinx-gallery runs the example in its folder, without __file__
    here = Path.cwd()
spec = importlib.util.spec_from_file_location(
    "ntk_data_selection", here / "ntk_data_selection.py"
)
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)

rows = study.run_study(n_select=30, seeds=range(4), epochs=300, n_candidates=500)
results = pd.DataFrame(rows)
print(results.round(3).to_string(index=False))

# %%
# The summary
# -----------
# Mean ± standard deviation over the seeds; "accuracy - random" is the
# paired difference with the random choice of the same seed (same initial
# network), mean ± its standard error. The NTK entropy of 30 points is at
# most ``log2(30)`` bits.

print(study.format_table(study.summarize(rows)))
print(f"\nmaximum entropy: log2(30) = {math.log2(30):.2f} bits")
accuracy = results.pivot(index="seed", columns="method", values="test_accuracy")
for method in ("max-entropy", "greedy"):
    wins = int((accuracy[method] > accuracy["random"]).sum())
    print(f"{method}: more accurate than random in {wins} of {len(accuracy)} seeds")
for column in ("entropy_before", "entropy_after"):
    entropy = results.pivot(index="seed", columns="method", values=column)
    ordered = (entropy["greedy"] > entropy["max-entropy"]) & (
        entropy["max-entropy"] > entropy["random"]
    )
    print(f"{column}: greedy > max-entropy > random in {ordered.sum()} seeds")

# %%
# The figures
# -----------
# The test accuracy of each seed (grey lines join the three choices of one
# seed, the random baseline first) and the mean over seeds (black bars).

methods = ["random", "max-entropy", "greedy"]  # the baseline first
position = {method: i for i, method in enumerate(methods)}
accuracy_figure = Figure(figsize=(6.4, 4.2), layout="constrained")
ax = accuracy_figure.add_subplot()

for _, seed_rows in results.groupby("seed"):
    seed_rows = seed_rows.set_index("method").loc[methods]
    ax.plot(range(len(methods)), seed_rows["test_accuracy"], color="0.75", zorder=1)
for method, group in results.groupby("method", sort=False):
    x = position[method]
    ax.scatter(np.full(len(group), x), group["test_accuracy"], color="C0", zorder=2)
    ax.hlines(group["test_accuracy"].mean(), x - 0.25, x + 0.25, color="k")
ax.set_xticks(range(len(methods)), methods)
ax.set_ylabel("test accuracy")
ax.set_title("Trained on 30 chosen digits")

# %%
# The NTK entropy of the chosen 30 points, at initialisation and after
# training, mean over seeds, with the seeds' values as dots, and the largest
# possible value, ``log2(30)``.

entropy_figure = Figure(figsize=(6.4, 4.2), layout="constrained")
ax = entropy_figure.add_subplot()
width = 0.38
for offset, column, label in (
    (-width / 2, "entropy_before", "at initialisation"),
    (width / 2, "entropy_after", "after training"),
):
    means = results.groupby("method", sort=False)[column].mean().loc[methods]
    xs = np.arange(len(methods)) + offset
    ax.bar(xs, means, width=width, label=label, alpha=0.8)
    for method, group in results.groupby("method", sort=False):
        ax.scatter(
            np.full(len(group), position[method] + offset),
            group[column],
            color="k",
            s=8,
            zorder=3,
        )
ax.axhline(math.log2(30), color="0.4", linestyle=":", label="log2(30)")
ax.set_xticks(range(len(methods)), methods)
ax.set_ylim(0, 5.8)
ax.set_ylabel("NTK entropy of the 30 points (bits)")
ax.set_title("NTK entropy of the choice")
ax.legend(fontsize="small", loc="upper center", ncols=3)

# %%
# What the numbers say
# --------------------
# - **The selections do what they are built for.** The initial NTK of 30
#   random digits has 1.69 bits of entropy on average, far from the 4.91 bits
#   of 30 equal eigenvalues; keeping the best of 500 random subsets adds 0.20
#   bits, the greedy search 0.70 bits, and the order holds for every seed.
# - **Training raises every choice's entropy** by 1.0 to 1.4 bits, and the
#   order greedy > max-entropy > random is kept after training in all four
#   seeds.
# - **More entropy is not more accuracy.** The max-entropy choice is more
#   accurate than the random one in all four seeds, by 2.9 ± 1.5 points on
#   average (about two standard errors). The greedy choice, with the most
#   entropy, is less accurate than random in three seeds of four (-3.7 ± 4.7
#   points). Both cover nearly all 10 classes; what differs is how typical the
#   chosen digits are: the greedy digits lie 2.15 from the mean image of their
#   class, against 1.55 for random ones and 1.70 for the max-entropy ones.
#   Maximising the entropy hard favours gradient directions few other digits
#   share, and at initialisation those belong to unusual digits.
# - **Four seeds are not twenty.** The full study (20 seeds, table in
#   :ref:`example-ntk-data-selection`) finds the same ordering with a smaller
#   gain for max-entropy (2.0 ± 1.5 points, within 1.3 standard errors of no
#   gain) and a clearer loss for greedy (-2.5 ± 1.5 points). Read the
#   differences above as of the size of their standard errors.
