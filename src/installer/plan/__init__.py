"""The planner: pure decisions from configuration, detected facts and options.

What lives here: the compatibility rules ([`compat`][installer.plan.compat]: which torch
build, which wheel, which constraint), the choice of step 10's packages
([`optimizations`][installer.plan.optimizations], its records in
[`optimization_records`][installer.plan.optimization_records], SageAttention's routes as
strategies in [`sage_routes`][installer.plan.sage_routes], its source builds in
[`sage_sources`][installer.plan.sage_sources] and the torch build reconsidered for the
CUDA toolkit in [`toolkit_torch`][installer.plan.toolkit_torch]), the accelerator proof's
verdicts and actions ([`proof`][installer.plan.proof]) and of the lock
([`lock`][installer.plan.lock]), the plan as data ([`records`][installer.plan.records]) and
how it is built ([`build`][installer.plan.build] from step
[`drafts`][installer.plan.drafts] and the [`decide`][installer.plan.decide] rules),
ComfyUI's model kinds ([`model_kinds`][installer.plan.model_kinds]) and a manifest's model
downloads ([`model_downloads`][installer.plan.model_downloads]), the inputs an install
recorded and how a re-run reuses them ([`inputs`][installer.plan.inputs]), the launch's tunings
([`launch`][installer.plan.launch] with its settings, tunings and attention decisions),
the set of one ComfyUI per GPU ([`fleet`][installer.plan.fleet]), and the day-two plans: a
generation's switch, rollback and pruning ([`generations`][installer.plan.generations]) and
what an update changes ([`update`][installer.plan.update]).
Inputs are data objects (the configuration models and the records of
[`installer.core.facts`][installer.core.facts]); outputs are data with a human reason for
every choice.
May import: [`installer.core`][installer.core] and the configuration models. Never a
subprocess, the network, the file system or NVML: no module of
[`installer.edges`][installer.edges], `subprocess`, `httpx`, `pynvml` or `socket`.
"""
