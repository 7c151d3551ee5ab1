"""What each command does, below its command-line parsing: install, doctor, status.

What lives here: the executor that runs a plan step by step
([`executor`][installer.commands.executor]), the gathering of detected facts into a plan
([`planning`][installer.commands.planning]), the checks of `doctor`
([`doctor`][installer.commands.doctor]) and the report of `status`
([`status`][installer.commands.status]), and the day-two verbs: the generations an
install keeps ([`generations`][installer.commands.generations]: build, verify, switch,
prune; the API other commands that change an install use), `update`
([`update`][installer.commands.update]) and `rollback`
([`rollback`][installer.commands.rollback]). They return data; printing is the CLI's.
May import: the steps, the feature packages, the planner, the edges and the core; never
[`installer.cli`][installer.cli].
"""
