"""`comfy-install launch` and `stop`: start ComfyUI tuned for the GPU, wait for it, stop it.

What lives here is the effectful half of a launch; the decisions (which tunings,
which variables, which command) are pure and live in
[`installer.plan.launch`][installer.plan.launch]. [`facts`][installer.launch.facts]
reads the machine (GPU, torch, SageAttention, the shim's state);
[`shim`][installer.launch.shim] installs the runtime tuning shim, whose source is
[`shim_module`][installer.launch.shim_module] (it runs inside ComfyUI's venv with
the standard library only and is read as text, never imported by the launcher), with
the attention router of [`installer.attention.shim`][installer.attention.shim];
[`ports`][installer.launch.ports] checks the port and names the process holding it;
[`process`][installer.launch.process] keeps the pid file and stops ComfyUI's process
group (SIGINT, then terminate, then kill); [`output`][installer.launch.output] tees
ComfyUI's output to `DIR/.comfy-install/logs/comfyui-<stamp>.log`;
[`ready`][installer.launch.ready] waits for `GET /object_info`; and
[`run`][installer.launch.run] puts it together (`launch()`, foreground or background);
[`fleet`][installer.launch.fleet] starts, waits for, stops and lists one ComfyUI per GPU.
May import: [`installer.attention.files`][installer.attention.files] and the layers below
it ([`installer.plan`][installer.plan], [`installer.edges`][installer.edges],
[`installer.core`][installer.core]); never the CLI, the commands, the benchmark or the
attention measuring.
"""
