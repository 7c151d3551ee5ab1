"""Every command's whole job, below its command-line parsing: one module per verb.

As in pipx's `src/pipx/commands/`, each verb lives in `commands/<verb>.py`:
[`install`][installer.commands.install] (the plan, `--dry-run`, the run and the
measuring of attention the plan decides on), [`doctor`][installer.commands.doctor],
[`status`][installer.commands.status], [`lock`][installer.commands.lock] (the pool of
resolutions, scratch folders and the failures gathered), [`models`][installer.commands.models],
[`tune`][installer.commands.tune], `launch --gpus` with the fleet side of `stop`
([`launch_fleet`][installer.commands.launch_fleet]), and the day-two verbs
[`update`][installer.commands.update] and [`rollback`][installer.commands.rollback] over the
generations an install keeps ([`generations`][installer.commands.generations]: build, verify,
switch, prune; the API every command that changes an install uses). Beside them, two shared
helpers: the executor that runs a plan step by step ([`executor`][installer.commands.executor])
and the gathering of detected facts into a plan ([`planning`][installer.commands.planning]).
They return data; parsing and rendering are the CLI's. Verb modules do not import each other
(an import-linter contract).
May import: the steps, the feature packages, the planner, the edges and the core; never
[`installer.cli`][installer.cli].
"""
