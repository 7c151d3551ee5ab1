"""Custom nodes after install: their files, their record, resolving and installing them held.

What lives here, the effectful half of `comfy-install nodes`: [`files`][installer.nodes.files]
(a node's requirement files, read as ComfyUI-Manager reads them), [`record`][installer.nodes.record]
(`DIR/.comfy-install/nodes.json`), [`resolve`][installer.nodes.resolve] (ComfyUI's, every
node's and the new node's requirements resolved together by `uv pip compile`, torch and the
accelerators held) and [`install`][installer.nodes.install] (installing a resolution held,
proving torch unchanged byte for byte, removing packages, a node's `install.py`). Step 9
installs the configured nodes through the same
[`install_node_requirements`][installer.nodes.install.install_node_requirements].
The decisions are [`installer.plan.nodes`][installer.plan.nodes].
May import: the planner, the edges and the core; never another feature, the steps, the
commands or the CLI.
"""
