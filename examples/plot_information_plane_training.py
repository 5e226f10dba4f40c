"""
The HSIC information plane during training
==========================================

The information plane places each layer ``H`` of a network at two
coordinates: how much it depends on the input ``X`` and how much on the
labels ``Y``. Tishby's information bottleneck reading says a layer first
*fits* (both coordinates grow) and may later *compress* (forgets about ``X``
while keeping what it knows about ``Y``). With mutual information hard to
estimate in high dimensions, the HSIC plane uses ``HSIC(H, X)`` and
``HSIC(H, Y)`` instead (as PyGlow does), or their normalised forms, CKA.

This example trains a 64-64-32-10 ReLU network on scikit-learn's digits with
PyTorch and records the plane every other epoch with :class:`infoscope.Monitor`
and :class:`infoscope.HSICPlane`, then draws the layers' trajectories with
:func:`infoscope.plotting.information_plane` and every recorded value against
the epoch with :func:`infoscope.plotting.measure_curves`. The user guide's
:doc:`/user_guide/monitor` and :doc:`/user_guide/hsic` pages say more.
"""

# %%
# Data and network
# ----------------
# A stratified split of the digits (pixels in [0, 1]) into 1,257 training and
# 540 test images. The probe set, on which the monitor measures every layer at
# every record, is 400 test digits.

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from infoscope import HSICPlane, Monitor
from infoscope.plotting import information_plane, measure_curves

# sphinx_gallery_start_ignore
# The gallery is built on small, shared machines: one BLAS thread is as fast
# for these small matrices and does not wait on busy cores.
__import__("threadpoolctl").threadpool_limits(1)
# sphinx_gallery_end_ignore

torch.manual_seed(0)
torch.set_num_threads(1)  # small matrices: one thread is as fast, and never waits

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    (X / 16.0).astype(np.float32), y, test_size=0.3, stratify=y, random_state=0
)
X_probe, y_probe = X_test[:400], y_test[:400]

net = torch.nn.Sequential(
    torch.nn.Linear(64, 64),
    torch.nn.ReLU(),
    torch.nn.Linear(64, 32),
    torch.nn.ReLU(),
    torch.nn.Linear(32, 10),
)

# %%
# The monitor
# -----------
# Two planes side by side: HSIC (Gaussian kernels, each variable's median
# distance as bandwidth; the labels as one-hot codes with a linear kernel)
# and CKA (``normalized=True``). The dict's keys name the measures
# (``hsic_x``, ``hsic_y``, ``cka_x``, ``cka_y``). ``layers`` picks the two
# ReLU outputs and the logits by the names PyTorch gives the modules; a
# metric adds the probe set's accuracy, and :meth:`~infoscope.Monitor.record`
# takes the training loss as a keyword.


def accuracy(model, X, y):
    with torch.no_grad():
        predicted = model(torch.as_tensor(X)).argmax(dim=1).numpy()
    return float((predicted == y).mean())


monitor = Monitor(
    {"hsic": HSICPlane(), "cka": HSICPlane(normalized=True)},
    X_probe,
    y_probe,
    layers=["1", "3", "4"],
    every=2,
    metrics={"accuracy": accuracy},
    progress=False,
)
print(monitor)

# %%
# Train and record
# ----------------
# 40 epochs of plain SGD (learning rate 0.02, mini-batches of 32), slow enough
# that the early epochs can be watched; epoch 0 is the untrained network.

X_t, y_t = torch.from_numpy(X_train), torch.from_numpy(y_train)
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X_t, y_t), batch_size=32, shuffle=True
)
optimizer = torch.optim.SGD(net.parameters(), lr=0.02)
for epoch in range(41):
    if epoch > 0:
        for xb, yb in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(xb), yb).backward()
            optimizer.step()
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(net(X_t), y_t).item()
    monitor.record(epoch, net, loss=loss)
print(f"recorded epochs: {monitor.steps}")

# %%
# The history
# -----------
# :meth:`~infoscope.Monitor.history` is a tidy table, one row per step, layer
# and measure; a pivot makes it wide.

history = monitor.history()
wide = history.pivot_table(index="step", columns=["measure", "layer"], values="value")
print(wide[["hsic_x", "hsic_y"]].iloc[::2].round(4).to_string())
print(wide[["cka_x", "cka_y", "accuracy", "loss"]].iloc[::4].round(3).to_string())

# %%
# For reference, the point of the input itself in each plane: the monitor's
# fitted :class:`infoscope.HSICPlane` copies (``monitor.estimators``) take the
# probe inputs as a layer, as a torch tensor like the activations they were
# fitted with.

for name, fitted in monitor.estimators.items():
    ((to_x, to_y),) = fitted.transform([torch.from_numpy(X_probe)]).tolist()
    print(f"the input X: {name}_x = {to_x:.4f}, {name}_y = {to_y:.4f}")

# %%
# The information plane
# ---------------------
# Each layer's trajectory in the HSIC plane: one line per layer, named in the
# legend (``1`` and ``3`` are the ReLU outputs, ``4`` the logits), through
# points coloured by epoch.

hsic_plane = information_plane(history, step_name="epoch")

# %%
# The same trajectories in the CKA plane.

cka_plane = information_plane(history, x="cka_x", y="cka_y", step_name="epoch")

# %%
# Every measure against the epoch
# --------------------------------

curves = measure_curves(
    history, ["hsic_x", "hsic_y", "loss", "accuracy"], step_name="epoch"
)

# %%
# What the numbers say
# --------------------
# - **Fitting.** Over the first 14 to 20 epochs every layer moves up and to
#   the right in the HSIC plane: the logits' HSIC with the labels goes from
#   0.0119 to 0.0284 by epoch 16 and their HSIC with the input from 0.0047 to
#   0.0139. At initialisation the deeper a layer, the lower it sits on both
#   axes (layer 1 above 3 above 4); at the next record, epoch 2, the order
#   is reversed on both axes and stays so.
# - **A compression-like turn, in the HSIC plane only.** ``HSIC(H, X)`` peaks
#   (the logits at epoch 14, layer 3 at 16, layer 1 at 20) and then falls
#   slowly to epoch 40, by 4% (layer 1) to 7% (the logits), while
#   ``HSIC(H, Y)`` ends within 0.2% of its highest (0.0298 for the logits,
#   reached at epoch 40): the trajectories bend left, the shape of the
#   information bottleneck's compression phase. The CKA plane does not show
#   it: from epoch 16 on, ``CKA(H, X)`` of layers 3 and 4 rises (the logits
#   from 0.730 to 0.776, with steps back of 0.001 at most) and that of layer 1
#   stays between 0.872 and 0.886. The CKA plane's larger leftward moves
#   (0.011 to 0.015 per layer) come earlier, between epochs 6 and 14, while
#   ``HSIC(H, X)`` is still rising. Since
#   ``CKA(H, X) = HSIC(H, X) / sqrt(HSIC(H, H) HSIC(X, X))``
#   and ``HSIC(X, X)`` is fixed, the falling ``HSIC(H, X)`` comes with a
#   faster-falling ``HSIC(H, H)``, the spread of the layer's own kernel: the
#   layers do not lose alignment with the input.
# - **Raw HSIC is not comparable across layers.** After training the logits
#   have twice the pixels' own HSIC with the labels (0.0298 against 0.0147),
#   yet a lower CKA with them (0.527 against the pixels' 0.550). In the CKA
#   plane the first ReLU layer is highest on both axes at every record, at
#   0.885 and 0.579 by epoch 40, above the pixels' own CKA with the labels.
#   Use the CKA coordinates to compare layers; and a change in one layer's
#   raw HSIC may be a change in the spread of its own kernel, as above.
# - The probe accuracy goes from 0.105 to 0.940 and the training loss from
#   2.31 to 0.22; the bend in the HSIC plane starts while the loss is still
#   falling fastest (1.33 at epoch 16, 0.56 at epoch 24). One network, one
#   seed and 400 probe digits: the HSIC changes after the peak are in the
#   fourth decimal, and other seeds and learning rates will move them.
