"""Attention, measured and routed: `tune`'s calibration, its rules, its files and the shim.

One package for one concept, in four layers of its own (each may import only those below
it, and the package itself imports nothing):

- [`measure`][installer.attention.measure]: the measuring. The scripts that time the
  attention backends inside the install's venv, the runner that ships them there, the
  verdicts on correctness, `tune` (the calibration) and step 10's accelerator proof. Sits
  above [`installer.launch`][installer.launch]; the `benchmark` feature and the steps use it.
- [`files`][installer.attention.files]: the calibration and routes files of an install, the
  venv's package versions they are checked against, and the one "missing, stale or fresh"
  check `status`, `doctor` and install's measuring call. Beside the other features.
- [`rules`][installer.attention.rules]: pure. The calibration's records, how timings become
  route tables, when a calibration is stale, and the routing table made from it; the
  planner (`installer.plan.launch_attention`) decides a launch's attention with them.
  Below the planner, above [`installer.core`][installer.core].
- [`shim`][installer.attention.shim]: what runs inside ComfyUI's process, standard library
  only: the routing table's one schema ([`routes`][installer.attention.shim.routes], which
  the planner writes and the router reads), the router and its SDPA back ends. Copied into
  the venv by [`installer.launch.shim`][installer.launch.shim]; the lowest layer.

May import: each layer what its own docstring says (the contracts in `pyproject.toml`:
the layers, "the attention rules are pure", "the shim imports only the standard library");
this `__init__` imports nothing, so importing one layer never loads another.
"""
