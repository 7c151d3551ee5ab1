"""Attention inside ComfyUI's process: the routes schema, the router and its SDPA back ends.

[`routes`][installer.attention.shim.routes] is the routing table's one schema (names,
records, reader and writer); [`router`][installer.attention.shim.router] sends each of
ComfyUI's attention calls to the backend the table names; [`sdpa`][installer.attention.shim.sdpa]
holds torch's SDPA back ends with ComfyUI's signature, [`sage`][installer.attention.shim.sage]
SageAttention 2's per-warp sm90 kernel. `launch` copies the four files into the venv
(`comfy_install_routes.py`, `comfy_install_attention.py`, `comfy_install_sdpa.py`,
`comfy_install_sage.py`)
and `tune` ships them with its measuring package, so they import each other relatively or
by those names.
May import: the standard library only, and each other (torch only inside functions, at call
time); never anything else of `installer` (an import-linter contract).
"""
