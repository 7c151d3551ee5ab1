"""`tune --workflow`: the tuning checked end to end on the user's own workflows (issue 30).

[`run`][installer.workflows.run] carries out the pure plan of
[`installer.plan.workflow_check`][installer.plan.workflow_check]: each variant (stock,
tuned, tuned plus one lever) in a fresh ComfyUI started through
[`installer.launch`][installer.launch] on a free port, each workflow posted to its HTTP
API ([`client`][installer.workflows.client]), the outputs compared with stock's by a
small script in DIR's venv ([`distance`][installer.workflows.distance]: Pillow and
numpy are ComfyUI's, not ours), and the figures turned into levers.json's record
([`results`][installer.workflows.results]). May import: [`installer.launch`][installer.launch],
[`installer.attention.files`][installer.attention.files], the planner, the
[edges][installer.edges] and [`installer.core`][installer.core]; never the benchmark,
the commands or the CLI.
"""
