"""The edges: every side effect the installer has, each behind one small module.

What lives here: running uv ([`uv`][installer.edges.uv], its output read by
[`uv_output`][installer.edges.uv_output]) and git
([`git`][installer.edges.git]), subprocesses ([`proc`][installer.edges.proc]), NVML and
nvidia-smi ([`gpu`][installer.edges.gpu]), questions to the operating system
([`environment`][installer.edges.environment]), the state file and the install lock
([`state`][installer.edges.state]), and a cheap look into an existing install
([`probe`][installer.edges.probe]), a custom node's dependency files
([`node_files`][installer.edges.node_files]), an install's generations on disk: the registry,
the pointer and its one-rename switch ([`generations`][installer.edges.generations]),
and verified, resumable downloads
([`download`][installer.edges.download]). Each returns the plain records of
[`installer.core`][installer.core], so the layers above can be tested with data.
May import: [`installer.core`][installer.core] (and the configuration models); never the
planner, the steps, the commands or the CLI.
"""
