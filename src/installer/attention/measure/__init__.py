"""Measuring attention in an install's venv: the timing scripts, the verdicts, `tune` and the proof.

[`attention_module`][installer.attention.measure.attention_module] (the script that times
the attention backends inside the install's venv, standard library and torch only, with
[`attention_backends`][installer.attention.measure.attention_backends] and
[`attention_comfyui`][installer.attention.measure.attention_comfyui]);
[`runner`][installer.attention.measure.runner] (runs them with the venv's Python and reads
their document back); [`results`][installer.attention.measure.results] (the run record,
statistics, tolerances and verdicts on correctness); [`tune`][installer.attention.measure.tune]
(the calibration `launch` routes by); [`proof`][installer.attention.measure.proof] (step 10's
and verify's accelerator proof). `benchmark` (its report, ComfyUI timings, comparisons)
builds on these.
May import: [`installer.launch`][installer.launch] and the features below it, the
[edges][installer.edges], the [planner][installer.plan] and [`installer.core`][installer.core];
never the steps, the commands or the CLI.
"""
