"""`comfy-install benchmark`: what the attention optimizations buy on this GPU (a feature package).

The measuring itself (the script run in the venv, its runner, the verdicts on correctness)
is [`installer.attention.measure`][installer.attention.measure], shared with `tune` and the
accelerator proof. What lives here is the benchmark around it:
[`compare`][installer.bench.compare] (regressions between two runs),
[`store`][installer.bench.store] (saved runs in `DIR/.comfy-install/benchmarks/`),
[`headline`][installer.bench.headline] (the one line the doctor shows),
[`comfyui`][installer.bench.comfyui] (timing a real ComfyUI start-up and workflow),
[`options`][installer.bench.options] and [`run`][installer.bench.run] (the command's
options and orchestration) and [`render`][installer.bench.render] (the rich report).
May import: [`installer.attention`][installer.attention], [`installer.launch`][installer.launch]
and the features below it, the [edges][installer.edges] and [`installer.core`][installer.core];
never the commands or the CLI.
"""
