"""`comfy-install benchmark`: what the attention optimizations buy on this GPU (a feature package).

What lives here: the measuring, in two parts that `tune` can reuse without the report —
[`attention_module`][installer.bench.attention_module] (the script that times the attention
backends inside the install's venv, standard library and torch only) and
[`attention`][installer.bench.attention] (runs it with the venv's Python and reads its
document back), which [`proof`][installer.bench.proof] (the accelerator proof of step 10 and
verify) reuses too; and the benchmark itself — [`results`][installer.bench.results] (the run
record, statistics, tolerances and verdicts on correctness),
[`compare`][installer.bench.compare] (regressions between two runs),
[`store`][installer.bench.store] (saved runs in `DIR/.comfy-install/benchmarks/`),
[`headline`][installer.bench.headline] (the one line the doctor shows),
[`comfyui`][installer.bench.comfyui] (timing a real ComfyUI start-up and workflow),
[`options`][installer.bench.options] and [`run`][installer.bench.run] (the command's
options and orchestration) and [`render`][installer.bench.render] (the rich report).
May import: [`installer.launch`][installer.launch] and the features below it, the
[edges][installer.edges] and [`installer.core`][installer.core]; never the commands or the CLI.
"""
