"""The planner: pure decisions from configuration, detected facts and options.

What lives here: the compatibility rules ([`compat`][installer.plan.compat]: which torch
build, which wheel, which constraint), the plan itself and how it is built
([`build`][installer.plan.build]), ComfyUI's model kinds
([`model_kinds`][installer.plan.model_kinds]) and the model downloads of a manifest
([`models`][installer.plan.models]). Inputs are data objects (the configuration models and
the records of [`installer.core.facts`][installer.core.facts]); outputs are data with a
human reason for every choice.
May import: [`installer.core`][installer.core] and the configuration models. Never a
subprocess, the network, the file system or NVML: no module of
[`installer.edges`][installer.edges], `subprocess`, `httpx`, `pynvml` or `socket`.
"""
