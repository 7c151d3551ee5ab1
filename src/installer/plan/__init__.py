"""The planner: pure decisions from configuration, detected facts and options.

What lives here: the compatibility rules ([`compat`][installer.plan.compat]: which torch
build, which wheel, which constraint), the choice of step 10's packages
([`optimizations`][installer.plan.optimizations], with SageAttention's source builds in
[`sage_sources`][installer.plan.sage_sources] and the torch build reconsidered for the
CUDA toolkit in [`toolkit_torch`][installer.plan.toolkit_torch]), the accelerator proof's
verdicts and actions ([`proof`][installer.plan.proof]) and of the lock
([`lock`][installer.plan.lock]), the plan as data ([`model`][installer.plan.model]) and
how it is built ([`build`][installer.plan.build] from step
[`drafts`][installer.plan.drafts] and the [`decide`][installer.plan.decide] rules),
ComfyUI's model kinds ([`model_kinds`][installer.plan.model_kinds]) and a manifest's model
downloads ([`models`][installer.plan.models]), and the launch's tunings
([`launch`][installer.plan.launch] with its settings, tunings and attention decisions),
and the day-two plans: a generation's switch, rollback and pruning
([`generations`][installer.plan.generations]) and what an update changes
([`update`][installer.plan.update]).
Inputs are data objects (the configuration models and the records of
[`installer.core.facts`][installer.core.facts]); outputs are data with a human reason for
every choice.
May import: [`installer.core`][installer.core] and the configuration models. Never a
subprocess, the network, the file system or NVML: no module of
[`installer.edges`][installer.edges], `subprocess`, `httpx`, `pynvml` or `socket`.
"""
