"""
Claim: in the HSIC plane, layers fit first and compress later (PyGlow)
======================================================================

The information bottleneck reading of training (Shwartz-Ziv and Tishby,
2017) says that a layer H first *fits*, gaining information about the labels
Y (and about the input X), and then *compresses*, shedding information
about X while keeping what it knows about Y. PyGlow draws this in the HSIC
plane, ``(HSIC(H, X), HSIC(H, Y))`` in place of mutual information: the
later layers first move up, then left, the turn being expected with longer
training or a narrow layer (a bottleneck). The gallery's
:ref:`sphx_glr_auto_examples_plot_information_plane_training.py` shows the
first phase and a small turn on one seed in 40 epochs; this example asks
whether the turn holds over seeds, in longer training, with and without a
bottleneck.

- **Set-up.** 64-64-w-10 ReLU networks: w = 32 ("wide", the other
  example's network) and w = 4 ("bottleneck"); plain SGD (learning rate
  0.02, mini-batches of 32) for 150 epochs on 1,257 training digits. Five
  seeds here (20 in the full run); a seed fixes the initialisation and the
  order of the mini-batches of both arms.
- **Measured.** Every 5 epochs, :class:`infoscope.Monitor` records
  :class:`infoscope.HSICPlane` (Gaussian kernels at each variable's median
  distance, one-hot labels with a linear kernel) and its normalised form
  (CKA) of the two hidden layers (``1``, ``3``) and the logits (``4``) on
  400 held-out digits, and their accuracy.
- **Read off.** Per seed and layer: the epoch by which HSIC(H, Y) has made
  90% of its rise (fitting); the epoch at which HSIC(H, X) peaks, and its
  fall from that peak to epoch 150 in percent of the peak (compression);
  HSIC(H, Y) at epoch 150 in percent of its highest value (kept, if
  compression is the bottleneck's kind); and the fall of CKA(H, X), which
  divides out the spread of the layer's own kernel.

The study is ``hsic_plane_study`` in ``examples/claims.py``.
"""

# %%
# Run the study
# -------------
# ``summarize_hsic`` gives, per arm and layer, the read-offs above as mean ±
# standard deviation over the seeds.

import importlib.util
from pathlib import Path

from matplotlib.figure import Figure

try:
    here = Path(__file__).parent
except NameError:  # sphinx-gallery runs the example in its folder, without __file__
    here = Path.cwd()
spec = importlib.util.spec_from_file_location("claims", here / "claims.py")
claims = importlib.util.module_from_spec(spec)
spec.loader.exec_module(claims)

frame = claims.hsic_plane_study(seeds=range(5))
print(claims.format_table(claims.HSIC_COLUMNS, claims.summarize_hsic(frame)))

# %%
# The figure
# ----------
# One row per arm. Left: each layer's trajectory in the HSIC plane, the mean
# over the seeds (thick, a dot every 10 epochs, the square at epoch 0) and
# each seed (thin). Then HSIC(H, X), HSIC(H, Y) and CKA(H, X) against the
# epoch: means over the seeds with bands of one standard deviation. HSIC
# values are multiplied by 1,000.

LAYERS = ("1", "3", "4")
fig = Figure(figsize=(17, 8), layout="constrained")
axes = fig.subplots(2, 4)
for row, arm in zip(axes, claims.HSIC_ARMS, strict=True):
    arm_frame = frame[frame["arm"] == arm]
    plane = row[0]
    for i, layer in enumerate(LAYERS):
        rows = arm_frame[arm_frame["layer"] == layer]
        wide = rows.pivot_table(
            index=["seed", "epoch"], columns="measure", values="value"
        )
        for _, seed_rows in wide.groupby(level="seed"):
            plane.plot(
                1000 * seed_rows["hsic_x"],
                1000 * seed_rows["hsic_y"],
                color=f"C{i}",
                alpha=0.3,
                linewidth=0.7,
            )
        mean = wide.groupby(level="epoch").mean()
        plane.plot(
            1000 * mean["hsic_x"],
            1000 * mean["hsic_y"],
            color=f"C{i}",
            linewidth=2,
            marker="o",
            markersize=3,
            markevery=2,
            label=f"layer {layer}",
        )
        plane.plot(
            1000 * mean["hsic_x"].iloc[0],
            1000 * mean["hsic_y"].iloc[0],
            marker="s",
            color=f"C{i}",
        )
    plane.set_xlabel("HSIC(H, X) x 1000")
    plane.set_ylabel("HSIC(H, Y) x 1000")
    plane.set_title(f"{arm}: the HSIC plane", fontsize="medium")
    plane.legend(fontsize="small")
    for ax, measure, title, scale in (
        (row[1], "hsic_x", "HSIC(H, X) x 1000", 1000),
        (row[2], "hsic_y", "HSIC(H, Y) x 1000", 1000),
        (row[3], "cka_x", "CKA(H, X)", 1),
    ):
        for i, layer in enumerate(LAYERS):
            claims.bands(
                ax,
                arm_frame,
                measure,
                layer=layer,
                colors=[f"C{i}"],
                scale=scale,
                label=f"layer {layer}",
            )
        ax.set_title(f"{arm}: {title}", fontsize="medium")
    row[1].legend(fontsize="small")

# %%
# The full run
# ------------
# ``python examples/claims.py hsic`` runs seeds 0 to 19 (about N minutes on
# two busy CPU cores) and prints:
#
# FULL-RUN-TABLE
#
# What the numbers say
# --------------------
# VERDICT
