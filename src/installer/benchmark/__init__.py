"""`comfy-install benchmark`: what the attention optimizations buy on this GPU (a feature package).

The measuring itself (the script run in the venv, its runner, the verdicts on correctness)
is [`installer.attention.measure`][installer.attention.measure], shared with `tune` and the
accelerator proof. What lives here is the benchmark around it:
[`compare`][installer.benchmark.compare] (regressions between two runs),
[`store`][installer.benchmark.store] (saved runs in `DIR/.comfy-install/benchmarks/`),
[`headline`][installer.benchmark.headline] (the one line the doctor shows),
[`comfyui`][installer.benchmark.comfyui] (timing a real ComfyUI start-up and workflow),
[`options`][installer.benchmark.options] and [`run`][installer.benchmark.run] (the command's
options and orchestration) and [`render`][installer.benchmark.render] (the rich report).
May import: [`installer.attention`][installer.attention], [`installer.launch`][installer.launch]
and the features below it, the [edges][installer.edges] and [`installer.core`][installer.core];
never the commands or the CLI.
"""
