"""Locked installs: one resolved, hash-pinned dependency set per platform, torch build and Python.

Without a lock, every install resolves ComfyUI's loose `requirements.txt`
against whatever the package index serves that day. A lock file
(`locks/<platform>-<variant>-py<XY>.txt`, shipped inside the wheel) holds the
answer instead: the output of `uv pip compile --generate-hashes` for ComfyUI's
requirements at the pinned commit, the custom nodes' requirements,
`extra_requirements` and the index packages of step 10, with the planned torch
trio as a constraint, for one target platform and Python. Every package is
pinned to one version and to the sha256 of its files.

The file is split into three sections. `requirements` is what step 8 installs
(`uv pip install --require-hashes --no-deps`: no resolution, every file
checked). `optimizations` and `torch` are only read as constraints: step 10
and step 7 pass the whole lock with `-c`, which pins the packages they install
to the locked versions and makes uv check their hashes, while torch itself
still comes from the planned index and is never touched by step 8.

The first line records a hash of everything the lock was made from
(`# comfy-install lock v1 inputs-sha256=<hex>`); further `# key: value` lines
record the inputs one by one, and `config-sha256`, the part of that hash the
planner can compute without ComfyUI's `requirements.txt` at hand. The planner
uses a lock only when its `config-sha256` matches
([`choose_lock`][installer.plan.lock.choose_lock], pure, over headers read by
[`read_lock_headers`][installer.lock.files.read_lock_headers]); step 8 then compares
the cloned `requirements.txt` with the recorded sha256
([`lock_sources_mismatch`][installer.lock.check.lock_sources_mismatch]), and
`comfy-install lock --check` recomputes the whole hash to find stale locks.

What lives here, the effectful half: [`files`][installer.lock.files] (finding, reading and
writing lock files), [`sources`][installer.lock.sources] (reading the requirement files at
their pinned commits with git), [`compile`][installer.lock.compile] (resolving a target with
`uv pip compile`), [`check`][installer.lock.check] (is a lock still what the configuration
and the checkout make) and [`install`][installer.lock.install] (step 8 from a lock). The file
format is [`installer.core.lockfile`][installer.core.lockfile]; the pure choice of a lock is
[`installer.plan.lock`][installer.plan.lock].
May import: the planner, the edges, [`installer.core`][installer.core] and the configuration
models; never another feature, the steps, the commands or the CLI.
"""
