"""Step 10: the accelerator packages (xformers, triton, SageAttention), installed with torch held.

`dependencies.json` declares the step (see
[`installer.plan.optimizations`][installer.plan.optimizations] for what each entry says).
The whole step is skipped, with that reason, when there is no NVIDIA GPU (or
torch is a CPU build). Everything it installs carries a constraints file that
pins the torch trio already in the venv, so no package can replace torch: a
package that needs another torch is reported as skipped with uv's reason.

[`plan_optimizations`][installer.plan.optimizations.plan_optimizations] is the pure
part used by the plan (and `--dry-run`);
[`install_optimizations`][installer.optimizations.install_optimizations] runs it
against the torch the venv really has (read from the venv, not from the
config), and [`install_sageattention`][installer.optimizations.install_sageattention]
downloads each chosen wheel (resumable, to the download cache), checks its
sha256 against `tools_manifest.json` before installing it from the local file,
and never downloads or runs a script.

What lives here, the effectful half of the step: [`install`][installer.optimizations.install]
(the run: groups of uv calls, torch held), [`venv`][installer.optimizations.venv] (what
the venv's interpreter reports: its torch, what is present, what got installed),
[`wheels`][installer.optimizations.wheels] (the download cache and checked downloads),
[`build`][installer.optimizations.build] and [`build_cache`][installer.optimizations.build_cache]
(SageAttention built from its pinned source, once per machine),
[`target`][installer.optimizations.target] and [`outcome`][installer.optimizations.outcome]
(the step's input and result records), [`proof`][installer.optimizations.proof] (the
accelerator proof's effects: where each backend lives, uninstalling a broken one).
`install_optimizations` and `install_sageattention` are the public API and stay importable
from here.
May import: the planner, the edges, [`installer.core`][installer.core], the configuration
models and the download module; never another feature, the steps, the commands or the CLI.
"""

from installer.optimizations.install import install_optimizations, install_sageattention

__all__ = ["install_optimizations", "install_sageattention"]
