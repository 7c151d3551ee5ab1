"""The foundation every other layer stands on: errors, logging, the JSON envelope and plain data.

What lives here: [`errors`][installer.core.errors] (the `InstallerError` family and exit
codes), [`log`][installer.core.log] (the terminal and file logger, redaction),
[`envelope`][installer.core.envelope] (the versioned `--json` envelope),
[`config`][installer.core.config] and [`config_files`][installer.core.config_files] (the
configuration files' models and their reading), [`uv_options`][installer.core.uv_options]
(the index, offline and retry options of every uv call),
[`facts`][installer.core.facts] and [`records`][installer.core.records] (what detection
found and what `state.json` holds, as frozen records the planner reads),
[`proof`][installer.core.proof] (the accelerator proof as recorded in the step outputs),
[`lockfile`][installer.core.lockfile] (the lock file format, read by planner and lock feature),
[`downloads`][installer.core.downloads] (a download's request and result),
[`filenames`][installer.core.filenames] (safe file names from untrusted text) and
[`git_arguments`][installer.core.git_arguments] (URLs and refs git can never read as options).
May import: the standard library and third-party libraries only; nothing else of
`installer`.
"""
