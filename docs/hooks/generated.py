"""MkDocs hook: the parts of the docs that are computed from the code, so they cannot drift.

A page asks for a generated section with a marker on a line of its own:

    <!-- generate: NAME [ARGUMENT] -->

and `on_page_markdown` replaces the marker with the Markdown that
`GENERATORS[NAME](ARGUMENT)` returns, before the page is rendered. An unknown
name fails the build. The generators read the installed `installer` package
(uv installs the project editable into the docs environment) and nothing
else: no network, no GPU, no files outside the repository.

Generators (name, argument: what it renders, from where):

- `errors`: every error the tool can print, with cause, fix and exit code
  (`installer.core.errors.error_catalogue()`).
- `exit-codes`: the exit codes and the errors that end with each (`ExitCode`).
- `config-schema KIND`: field tables and the raw JSON Schema of a configuration
  file (`installer.core.config_files.json_schema(KIND)`).
- `plan-schema`: the same for the plan of `install --dry-run --json`
  (`installer.plan.records.Plan`).
- `envelope`: the keys of the `--json` envelope and a real error envelope.
- `steps`: the 13 step ids, titles and dependencies (`STEPS`, `DEPENDS`).
- `compat PLATFORM`: compute capability x driver CUDA -> torch build, packages,
  SageAttention, by running `installer.plan.compat` and `installer.plan.optimizations`
  on the shipped configuration.
- `config-matrix`: the torch variants, package pins and SageAttention wheels
  the shipped configuration encodes.
- `launch-values`, `launch-example [compile]`: the values the launch variables
  accept, and `launch --print-env` for the reference H100 install
  (`installer.plan.launch.plan_launch`).
- `model-kinds`, `shared-section`: ComfyUI's model folders and their aliases,
  and the `extra_model_paths.yaml` section for a shared store
  (`installer.plan.model_kinds`, `installer.models.extra_paths`).
"""

from __future__ import annotations

import html
import importlib
import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = re.compile(
    r"^<!--[ \t]*generate:[ \t]*([a-z-]+)(?:[ \t]+(\S+))?[ \t]*-->[ \t]*$", re.MULTILINE
)

COMPAT_CCS = ("5.2", "6.1", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0")
COMPAT_DRIVERS = ("11.8", "12.2", "12.4", "12.6", "12.8", "13.0")
GPU_NAMES = {
    "5.2": "Maxwell: GTX 9xx, M40",
    "6.1": "Pascal: GTX 10xx, P40",
    "7.0": "Volta: V100",
    "7.5": "Turing: RTX 20xx, GTX 16xx, T4",
    "8.0": "Ampere: A100",
    "8.6": "Ampere: RTX 30xx, A10, A40",
    "8.9": "Ada: RTX 40xx, L4, L40S",
    "9.0": "Hopper: H100, H200",
    "10.0": "Blackwell: B200, GB200",
    "12.0": "Blackwell: RTX 50xx, RTX PRO 6000",
}
EXIT_MEANINGS = {
    "OK": "Success.",
    "STEP_FAILED": "A step failed; the message names it and what to do. Run the command "
    "again after fixing the cause: finished steps are not repeated.",
    "USAGE": "Bad usage or a bad configuration file (or no valid plan for it).",
    "ENVIRONMENT": "The machine cannot support the request: no git, unsupported OS, "
    "disk full, DIR not writable, DIR locked by another run.",
    "INTEGRITY": "A checksum or integrity failure: a file does not hash to its manifest entry.",
    "REGRESSION": "`benchmark --fail-on-regression` found a slower or wrong backend.",
    "INTERRUPTED": "Interrupted (Ctrl-C or SIGTERM); the same command continues.",
}


# --- small Markdown helpers ----------------------------------------------------------


def cell(text: object) -> str:
    """Make ``text`` safe inside a Markdown table cell (one line, pipes escaped)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: object) -> str:
    """Return ``text`` as inline code that is safe in a table cell."""
    value = " ".join(str(text).split())
    fence = "``" if "`" in value else "`"
    return f"{fence}{value}{fence}".replace("|", "\\|")


def attr(text: object) -> str:
    """Make ``text`` safe as an HTML attribute value inside a table cell."""
    return html.escape(" ".join(str(text).split()), quote=True).replace("|", "&#124;")


def table(header: list[str], rows: list[list[str]]) -> str:
    """Return a Markdown table (cells must already be cell-safe)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def collapsible(title: str, body: str, language: str = "json") -> str:
    """Return a closed `???` block (pymdownx.details) holding a fenced code block."""
    indented = "\n".join(("    " + line) if line else "" for line in body.splitlines())
    return f'??? note "{title}"\n\n    ```{language}\n{indented}\n    ```\n'


def slug(*parts: str) -> str:
    """Return an HTML id made of ``parts`` (lower case, dashes)."""
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


# --- errors and exit codes -----------------------------------------------------------


def gen_errors(_: str | None = None) -> str:
    """Render the error catalogue: one section per error class."""
    from installer.core.errors import error_catalogue

    out: list[str] = []
    entries = error_catalogue()
    out.append(
        table(
            ["error", "code in `--json`", "exit code", "what happened"],
            [
                [
                    f"[{e.name}](#{slug('error', e.name)})",
                    code(e.code),
                    str(e.exit_code),
                    cell(e.summary),
                ]
                for e in entries
            ],
        )
    )
    for entry in entries:
        out.append(f"\n### {entry.name} {{#{slug('error', entry.name)}}}\n")
        out.append(f"{entry.summary}\n")
        out.append(f"Exit code **{entry.exit_code}** · JSON error code `{entry.code}`\n")
        out.append(f"**Cause.** {entry.cause}\n")
        out.append(f"**Fix.** {entry.fix}\n")
    return "\n".join(out)


def gen_exit_codes(_: str | None = None) -> str:
    """Render the exit codes with their meaning and the errors that end with each."""
    from installer.core.errors import ExitCode, error_catalogue

    by_code: dict[int, list[str]] = {}
    for entry in error_catalogue():
        by_code.setdefault(entry.exit_code, []).append(
            f"[{entry.name}](#{slug('error', entry.name)})"
        )
    rows = []
    for member in ExitCode:
        meaning = EXIT_MEANINGS.get(member.name, member.name.replace("_", " ").capitalize() + ".")
        rows.append(
            [
                f"`{int(member)}`",
                code(member.name),
                cell(meaning),
                ", ".join(by_code.get(int(member), [])) or "—",
            ]
        )
    return table(["exit code", "name", "meaning", "raised by"], rows)


# --- JSON Schema tables --------------------------------------------------------------


def _ref(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def schema_type(schema: dict[str, Any], prefix: str) -> str:
    """Describe a JSON Schema type in a few words, linking `$ref`s to their table."""
    name = _ref(schema)
    if name:
        return f"[{name}](#{slug(prefix, name)})"
    if "const" in schema:
        return code(json.dumps(schema["const"]))
    if "enum" in schema:
        return " or ".join(code(json.dumps(v)) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(schema_type(s, prefix) for s in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        return f"list of {schema_type(schema.get('items', {}), prefix)}"
    if kind == "object":
        values = schema.get("additionalProperties")
        keys = schema.get("propertyNames", {})
        if isinstance(values, dict):
            key_text = schema_type(keys, prefix) if keys else "string"
            return f"map {key_text} → {schema_type(values, prefix)}"
        return "object"
    return str(kind) if kind else "any"


def _constraints(schema: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key, label in (
        ("pattern", "pattern"),
        ("minLength", "min length"),
        ("minItems", "min items"),
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("exclusiveMinimum", ">"),
        ("exclusiveMaximum", "<"),
    ):
        if key in schema:
            found.append(f"{label} {code(schema[key])}")
    for sub in schema.get("anyOf", []):
        found.extend(_constraints(sub))
    items = schema.get("items")
    if isinstance(items, dict) and "$ref" not in items:
        found.extend(f"items: {c}" for c in _constraints(items))
    return found


def _model_classes(root: type) -> dict[str, type]:
    """Map class name → pydantic model class for ``root`` and every model it contains."""
    from pydantic import BaseModel

    found: dict[str, type] = {}

    def visit(annotation: Any) -> None:
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            if annotation.__name__ in found:
                return
            found[annotation.__name__] = annotation
            for field in annotation.model_fields.values():
                visit(field.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)
        if isinstance(annotation, types.UnionType):
            for arg in annotation.__args__:
                visit(arg)

    visit(root)
    return found


def _default(prop: dict[str, Any], required: bool, model: type | None, field: str) -> str:
    if required:
        return "*required*"
    if "default" in prop:
        return code(json.dumps(prop["default"]))
    if model is not None and field in getattr(model, "model_fields", {}):
        value = model.model_fields[field].get_default(call_default_factory=True)
        dumped = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        return code(json.dumps(dumped))
    return "optional"


def schema_tables(schema: dict[str, Any], prefix: str, root_model: type | None = None) -> str:
    """Render one field table per object of a JSON Schema, the root first."""
    defs: dict[str, Any] = schema.get("$defs", {})
    models = _model_classes(root_model) if root_model is not None else {}
    order: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            name = _ref(node)
            if name and name not in order:
                order.append(name)
                collect(defs.get(name, {}))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    root_title = schema.get("title", prefix)
    collect({k: v for k, v in schema.items() if k != "$defs"})
    order += [name for name in defs if name not in order]
    out: list[str] = []
    for name, node in [(root_title, schema), *((n, defs[n]) for n in order)]:
        out.append(f"#### `{name}` {{#{slug(prefix, name)}}}\n")
        if node.get("description"):
            out.append(" ".join(node["description"].split()) + "\n")
        props: dict[str, Any] = node.get("properties", {})
        if not props:
            out.append(f"Type: {schema_type(node, prefix)}.\n")
            continue
        required = set(node.get("required", []))
        rows = []
        for field, prop in props.items():
            constraints = _constraints(prop)
            description = cell(prop.get("description", ""))
            if constraints:
                description += ("<br>" if description else "") + "; ".join(constraints)
            rows.append(
                [
                    code(field),
                    schema_type(prop, prefix),
                    _default(prop, field in required, models.get(name), field),
                    description or "—",
                ]
            )
        out.append(table(["field", "type", "default", "description"], rows) + "\n")
    return "\n".join(out)


def gen_config_schema(kind: str | None) -> str:
    """Render the field tables and the raw schema of one configuration file kind."""
    from installer.core.config_files import SCHEMAS, json_schema

    if kind not in SCHEMAS:
        raise PluginError(f"config-schema: unknown kind {kind!r} (known: {', '.join(SCHEMAS)})")
    schema = json_schema(kind)
    tables = schema_tables(schema, kind, SCHEMAS[kind])
    raw = collapsible(
        f"Raw JSON Schema (`comfy-install config schema {kind}`)", json.dumps(schema, indent=2)
    )
    return f"{tables}\n{raw}"


def gen_plan_schema(_: str | None = None) -> str:
    """Render the field tables and the raw schema of the plan."""
    from installer.plan.records import Plan

    schema = Plan.model_json_schema(mode="serialization")
    return f"{schema_tables(schema, 'plan', Plan)}\n" + collapsible(
        "Raw JSON Schema of the plan", json.dumps(schema, indent=2)
    )


def gen_envelope(_: str | None = None) -> str:
    """Render the envelope keys and a real error envelope."""
    from installer.core.envelope import ENVELOPE_KEYS, ENVELOPE_SCHEMA_VERSION, dumps, envelope
    from installer.core.errors import UsageError

    meaning = {
        "schema_version": f"Version of the envelope format (now {ENVELOPE_SCHEMA_VERSION}).",
        "command": 'The command words and arguments, e.g. `["install", "DIR", "--dry-run"]`.',
        "status": "`ok` or `error`.",
        "exit_code": "The process exit code (see [exit codes](troubleshooting.md#exit-codes)).",
        "data": "The command's own result: the plan, the install result, the doctor report, ... "
        "(`{}` when there is none).",
        "errors": "Empty on success; else one object with `code`, `message` and `hint`.",
    }
    rows = [[code(key), cell(meaning.get(key, ""))] for key in ENVELOPE_KEYS]
    example = envelope(
        ["install", "/srv/comfy", "--dry-run"],
        error=UsageError(
            "--cuda-driver needs --gpu CC.", "Pass the target GPU too, e.g. --gpu 8.9."
        ),
    )
    return (
        table(["key", "meaning"], rows)
        + "\n\nAn error, as `installer.core.envelope` prints it:\n\n```json\n"
        + dumps(example)
        + "\n```\n"
    )


# --- steps ---------------------------------------------------------------------------


def gen_steps(_: str | None = None) -> str:
    """Render the step ids, titles and what each waits for."""
    from installer.plan.records import DEPENDS, STEPS

    rows = [
        [
            str(n),
            code(step_id),
            cell(title),
            ", ".join(code(d) for d in DEPENDS.get(step_id, ())) or "—",
        ]
        for n, (step_id, title) in enumerate(STEPS, start=1)
    ]
    return table(
        ["#", "id", "title (as the plan shows it)", "redone when one of these reruns"], rows
    )


# --- compatibility -------------------------------------------------------------------


def _package_cell(entry: Any) -> str:
    if entry is None:
        return "—"
    if entry.action == "install":
        spec = (entry.requirement or entry.distribution or entry.name).removeprefix(
            entry.distribution or ""
        )
        name = entry.distribution or entry.name
        return f"✓ {code(name + spec)}"
    return f"— <small>{cell(entry.reason)}</small>"


def _sage_cell(entries: list[Any]) -> str:
    wheels = [e for e in entries if e.kind == "wheel" and e.action == "install"]
    if wheels:
        return "<br>".join(
            f'✓ SA2 wheel <abbr title="{attr(e.wheel.filename if e.wheel else e.name)}">'
            f"{cell(e.name)}</abbr>"
            for e in wheels
        )
    fallback = next((e for e in entries if e.kind == "fallback"), None)
    if fallback is not None and fallback.action == "install":
        return f"✓ {code(fallback.requirement)} <small>(fallback: SageAttention 1, Triton)</small>"
    if fallback is not None:
        return f"— <small>{cell(fallback.reason)}</small>"
    reasons = {e.reason for e in entries}
    return f"— <small>{cell('; '.join(sorted(reasons)))}</small>" if reasons else "—"


def compat_rows(platform: str) -> list[dict[str, str]]:
    """Compute the compatibility cells for ``platform`` from the shipped configuration."""
    from installer.core.config_files import load_dependencies, load_tools_manifest
    from installer.core.errors import PlanError
    from installer.core.facts import gpu_override
    from installer.plan.compat import select_torch
    from installer.plan.optimizations import plan_optimizations

    deps = load_dependencies()
    manifest = load_tools_manifest()
    builds = {str(k): v for k, v in deps.torch.default_index_builds.items()}
    names = [p.name for p in deps.optimizations.packages]
    rows: list[dict[str, str]] = []
    for cc in COMPAT_CCS:
        for driver in COMPAT_DRIVERS:
            gpu = gpu_override(cc, driver)
            row = {"cc": cc, "driver": driver}
            try:
                selection = select_torch(gpu, deps.torch, platform, "auto", builds)
            except PlanError as error:
                row["torch"] = f"no plan: <small>{cell(error.message)}</small>"
                rows.append(row)
                continue
            row["torch"] = code(selection.variant)
            if selection.driver_limit is not None:
                row["torch"] += " <small>minor-version compat.</small>"
            row["torch_reason"] = selection.reason
            planned = plan_optimizations(
                deps,
                manifest,
                platform=platform,
                gpu=gpu,
                torch_version=deps.torch.torch_version,
                torch_cuda=selection.cuda,
                torch_index_url=selection.index_url,
                python_version=deps.python.default,
            )
            packages = {p.name: p for p in planned if p.kind == "package"}
            for name in names:
                row[name] = _package_cell(packages.get(name))
            row["sageattention"] = _sage_cell([p for p in planned if p.kind != "package"])
            rows.append(row)
    return rows


def gen_compat(platform: str | None) -> str:
    """Render the compatibility table of one platform."""
    from installer.core.config_files import load_dependencies

    if platform not in ("linux", "windows"):
        raise PluginError(f"compat: platform must be linux or windows, not {platform!r}")
    deps = load_dependencies()
    names = [p.name for p in deps.optimizations.packages]
    header = ["GPU (compute capability)", "driver's CUDA", "torch build", *names, "SageAttention"]
    body: list[list[str]] = []
    previous = None
    for row in compat_rows(platform):
        first = row["cc"] != previous
        previous = row["cc"]
        gpu = f"**{row['cc']}** <small>{GPU_NAMES.get(row['cc'], '')}</small>" if first else ""
        torch = row["torch"]
        if "torch_reason" in row:
            torch = f'<abbr title="{attr(row["torch_reason"])}">{torch}</abbr>'
        body.append(
            [
                gpu,
                row["driver"],
                torch,
                *(row.get(n, "—") for n in names),
                row.get("sageattention", "—"),
            ]
        )
    torch_version = deps.torch.torch_version
    return (
        f"torch {torch_version}, Python {deps.python.default}, `--torch-index auto`; "
        "hover a torch build for the planner's reason. *minor-version compat.*: the driver is "
        "older than the build's CUDA but of its major; it runs with the "
        "[limits below](#minor-version-compatibility).\n\n" + table(header, body)
    )


def gen_config_matrix(_: str | None = None) -> str:
    """Render what the shipped configuration encodes: variants, pins and wheels."""
    from installer.core.config_files import load_dependencies, load_tools_manifest

    deps = load_dependencies()
    manifest = load_tools_manifest()
    out = ["#### Torch builds (`torch.variants`, in order of preference)\n"]
    out.append(
        table(
            [
                "build",
                "index",
                "driver's CUDA at least",
                "driver release",
                "compute capability",
                "platforms",
            ],
            [
                [
                    code(v.name),
                    cell(v.index_url),
                    code(v.min_cuda_driver) if v.min_cuda_driver else "—",
                    ", ".join(f"{k} ≥ {code(r)}" for k, r in v.driver_versions.items()) or "—",
                    code(v.cc) if v.cc else "any",
                    ", ".join(v.platforms),
                ]
                for v in deps.torch.variants
            ],
        )
    )
    out.append(
        f"\nTrio: {', '.join(code(p) for p in deps.torch.packages)}. "
        "`--torch-index default` means the default index serves: "
        + ", ".join(f"{k} → {code(v)}" for k, v in deps.torch.default_index_builds.items())
        + ".\n"
    )
    out.append("#### Step 10 packages (`optimizations.packages`)\n")
    rows = []
    for package in deps.optimizations.packages:
        dist = (
            package.pypi_package
            if isinstance(package.pypi_package, str)
            else ", ".join(f"{k}: {v}" for k, v in package.pypi_package.items())
        )
        pins = "<br>".join(
            f"torch {code(c.torch)} → {code(c.spec)}" for c in package.torch_constraints
        )
        build = package.pypi_build
        kernels = (
            f"CUDA {code(build.cuda)}" + (f", SASS {', '.join(build.sass)}" if build.sass else "")
            if build is not None
            else ("compiles at run time (Triton)" if package.jit_compiler else "—")
        )
        rows.append(
            [
                code(package.name),
                cell(dist),
                ", ".join(code(r) for r in package.requires) or "—",
                pins or "—",
                kernels,
                cell(package.description) or "—",
            ]
        )
    out.append(
        table(
            ["package", "distribution", "requires", "torch → release", "PyPI build", "what it is"],
            rows,
        )
    )
    out.append("\n#### SageAttention wheels (`pip_packages.sageattention_wheels`)\n")
    rows = []
    for wheel in deps.pip_packages.sageattention_wheels:
        entry = manifest.files.get(wheel.filename)
        sha = (
            code(entry.sha256[:16] + "…")
            if entry
            else "**none** (refused without `--allow-unverified`)"
        )
        rows.append(
            [
                f"[{cell(wheel.name)}]({wheel.url})",
                code(wheel.cc),
                code(wheel.torch),
                ", ".join(wheel.cuda),
                code(wheel.python),
                wheel.platform,
                sha,
            ]
        )
    out.append(
        table(
            ["wheel", "cc", "torch", "CUDA build", "Python", "platform", "sha256 (manifest)"], rows
        )
    )
    fallback = deps.pip_packages.sageattention_fallback
    if fallback is not None:
        out.append(
            f"\nWhen no wheel fits: {code(fallback.spec)} ({fallback.build}, cc "
            f"{code(fallback.cc or 'any')}): {cell(fallback.description)}\n"
        )
    return "\n".join(out)


# --- launch and models ---------------------------------------------------------------


def _optional_module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            return None
        raise


def gen_launch_values(_: str | None = None) -> str:
    """Render the values the launch variables accept, from `installer.plan.launch_settings`."""
    launch = _optional_module("installer.plan.launch_settings")
    if launch is None:
        return '!!! warning "`installer.plan.launch_settings` is not in this build"\n'
    rows = [
        [
            ", ".join(code(v) for v in launch.BOOL_VARIABLES if v != launch.MARKER_ENV)
            + f", {code(launch.WARMUP_ENV)}",
            ", ".join(code(v) for v in launch.BOOL_VALUES),
        ],
        [code("MATMUL_PRECISION"), ", ".join(code(v) for v in launch.MATMUL_PRECISIONS)],
        [code("TORCH_COMPILE_MODE"), ", ".join(code(v) for v in launch.COMPILE_MODES)],
        [code("TORCH_COMPILE_DYNAMIC"), ", ".join(code(v) for v in launch.DYNAMIC_VALUES)],
        [
            code("TORCH_COMPILE_BACKEND"),
            "a backend name, e.g. " + ", ".join(code(v) for v in launch.COMMON_BACKENDS),
        ],
    ]
    routes = _optional_module("installer.attention.shim.routes")
    if routes is not None and hasattr(routes, "ROUTES_OFF"):
        rows.append(
            [
                code(routes.ROUTES_ENV),
                "a routing table's file, or "
                + ", ".join(code(v) for v in routes.ROUTES_OFF)
                + " (the attention router off)",
            ]
        )
    return table(["variable", "accepted values (any case)"], rows)


H200_SAGE2 = {
    (128, "fp16"): (0.35, 0.48, 0.72, 0.90, 1.20, 1.28, 1.46),
    (128, "bf16"): (0.35, 0.46, 0.70, 0.94, 1.13, 1.25, 1.42),
    (64, "fp16"): (0.40, 0.54, 0.67, 0.86, 1.01, 1.16, 1.37),
    (64, "bf16"): (0.40, 0.53, 0.67, 0.86, 0.98, 1.14, 1.32),
}
"""SageAttention 2.2.0 over SDPA on the real H200 (shared/reference/h200-attention.md)."""


def _h200_calibration(path: Any) -> Any:
    """The calibration `tune` writes on the H200 (its measured speedups), as launch reads it."""
    from installer.attention.rules.records import (
        BackendRecord,
        Calibration,
        CalibrationPoint,
        MeasuredOn,
    )
    from installer.attention.rules.tables import MARGIN, build_tables
    from installer.attention.rules.routing import CalibrationRead

    points = []
    for (dim, dtype), ratios in H200_SAGE2.items():
        batch, heads = (1, 24) if dim == 128 else (2, 10)
        for tokens, ratio in zip(
            (1024, 2048, 4096, 8192, 16384, 32768, 75600), ratios, strict=True
        ):
            shape = {"tokens": tokens, "head_dim": dim, "dtype": dtype, "batch": batch,
                     "heads": heads}  # fmt: skip
            points.append(CalibrationPoint(backend="sdpa", status="ok", speedup=1.0, **shape))
            points.append(
                CalibrationPoint(backend="sageattention", status="ok", speedup=ratio, **shape)
            )
    versions = {"torch": "2.11.0+cu130", "xformers": "0.0.35", "sageattention": "2.2.0",
                "sageattn3": None, "comfy-kitchen": "0.2.31", "triton": "3.6.0"}  # fmt: skip
    calibration = Calibration(
        tool_version="docs",
        measured_on=MeasuredOn(
            gpu_name="NVIDIA H200",
            gpu_cc="9.0",
            driver="580.159.04",
            torch="2.11.0+cu130",
            torch_cuda="13.0",
            versions=versions,
            measured_at="2026-11-30T12:00:00+00:00",
            budget_s=60.0,
        ),
        margin=MARGIN,
        backends=[
            BackendRecord(name="sageattention", status="working", version="2.2.0"),
            BackendRecord(
                name="xformers",
                status="broken",
                version="0.0.35",
                reason="error: xFormers wasn't build with CUDA support",
            ),
        ],
        tables=build_tables(points),
        points=points,
    )
    return CalibrationRead(path, calibration), versions


def gen_launch_example(variant: str | None) -> str:
    """Render `launch --print-env` for an H100 install (torch 2.9.1+cu128, SageAttention).

    ``variant`` `compile` adds `ENABLE_TORCH_COMPILE=1` and `MATMUL_PRECISION=highest`
    set by the user; `calibrated` is the H200 with torch 2.11 after `tune`. The facts
    are the reference machines'; nothing is probed.
    """
    from pathlib import PurePosixPath

    launch = _optional_module("installer.plan.launch")
    if launch is None:
        return '!!! warning "`installer.plan.launch` is not in this build"\n'
    from installer.core.facts import GpuInfo, GpuReport, TorchInstalled
    from installer.attention.rules.routing import AttentionProbe

    root = PurePosixPath("/home/me/ComfyUI-install")
    gpu = GpuReport(
        "nvml",
        "detected by NVML (driver 580.159.04, CUDA 13.0)",
        (GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0", vram_total_bytes=85520809984),),
        "580.159.04",
        "13.0",
    )
    torch = TorchInstalled("2.9.1+cu128", "12.8")
    packages = {"torch": "2.9.1+cu128", "sageattention": "2.2.0", "triton": "3.5.1"}
    calibration = None
    if variant == "calibrated":
        gpu = GpuReport(
            "nvml",
            "detected by NVML (driver 580.159.04, CUDA 13.0)",
            (GpuInfo(0, "NVIDIA H200", "9.0", vram_total_bytes=150754820096),),
            "580.159.04",
            "13.0",
        )
        torch = TorchInstalled("2.11.0+cu130", "13.0")
        calibration, packages = _h200_calibration(root / ".comfy-install/calibration.json")
    facts = launch.LaunchFacts(
        platform="linux",
        venv_python=root / "venv/bin/python",
        comfyui_dir=root / "ComfyUI",
        gpu=gpu,
        torch=torch,
        attention=AttentionProbe(packages),
        calibration=calibration,
        shim="current",
        site_packages=root / "venv/lib/python3.12/site-packages",
    )
    environ = (
        {"ENABLE_TORCH_COMPILE": "1", "MATMUL_PRECISION": "highest"} if variant == "compile" else {}
    )
    request = launch.LaunchRequest(install_dir=root)
    plan = launch.plan_launch(request, facts, environ)
    return "```bash\n" + launch.render_print_env(plan, facts) + "```\n"


def gen_model_kinds(_: str | None = None) -> str:
    """Render ComfyUI's model kinds and the legacy names that map to them."""
    models = _optional_module("installer.plan.model_kinds")
    if models is None:
        return '!!! warning "`installer.plan.model_kinds` is not in this build"\n'
    aliases: dict[str, list[str]] = {}
    for alias, kind in models.KIND_ALIASES.items():
        aliases.setdefault(kind, []).append(alias)
    rows = [
        [
            code(kind),
            code(f"ComfyUI/models/{kind}/"),
            ", ".join(code(a) for a in aliases.get(kind, [])) or "—",
        ]
        for kind in models.MODEL_KINDS
    ]
    return table(["kind", "folder", "also accepted as"], rows)


def gen_shared_section(_: str | None = None) -> str:
    """Render the `extra_model_paths.yaml` section written for a store at `/mnt/models`."""
    from pathlib import Path

    models = _optional_module("installer.models.extra_paths")
    if models is None:
        return '!!! warning "`installer.models.extra_paths` is not in this build"\n'
    return "```yaml\n" + models.shared_config_section(Path("/mnt/models")) + "```\n"


GENERATORS: dict[str, Callable[[str | None], str]] = {
    "errors": gen_errors,
    "exit-codes": gen_exit_codes,
    "config-schema": gen_config_schema,
    "plan-schema": gen_plan_schema,
    "envelope": gen_envelope,
    "steps": gen_steps,
    "compat": gen_compat,
    "config-matrix": gen_config_matrix,
    "launch-values": gen_launch_values,
    "launch-example": gen_launch_example,
    "model-kinds": gen_model_kinds,
    "shared-section": gen_shared_section,
}


def expand(markdown: str, where: str = "") -> str:
    """Replace every `<!-- generate: ... -->` marker of ``markdown`` by its section."""

    def replace(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2)
        generator = GENERATORS.get(name)
        if generator is None:
            raise PluginError(f"{where}: unknown generated section {name!r}")
        return generator(argument).rstrip("\n") + "\n"

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Expand the generated sections of a page."""
    return expand(markdown, page.file.src_uri)
