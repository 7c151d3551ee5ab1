"""Model files: getting them into the folders ComfyUI reads them from (`models/<kind>/`).

What lives here: the downloads of a model manifest ([`downloads`][installer.models.downloads],
planned by [`installer.plan.model_downloads`][installer.plan.model_downloads] with the kinds of
[`installer.plan.model_kinds`][installer.plan.model_kinds]), the classification of a model file
by manifest, safetensors header or name ([`classify`][installer.models.classify]), organizing
loose files into place ([`organize`][installer.models.organize]), sharing one model store
between installs through `extra_model_paths.yaml` ([`extra_paths`][installer.models.extra_paths])
or per-file links ([`share`][installer.models.share]), and the file helpers they share
([`files`][installer.models.files]). Every decision carries the reason it was made, for the
tables and the JSON output of `comfy-install models`; nothing here prints except through the
logger. May import: the planner, the edges (the downloader, atomic writes) and
[`installer.core`][installer.core]; never the steps, the commands or the CLI.
"""
