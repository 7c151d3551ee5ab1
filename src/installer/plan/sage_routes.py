"""SageAttention's routes as strategies: a prebuilt wheel, a source build, SageAttention 1, none.

SageAttention is chosen per module (`sageattention` for SageAttention 2, `sageattn3` for
3). Each way of getting it is one [`Route`][installer.plan.sage_routes.Route], with its
rank (the better route wins: a verified prebuilt wheel beats a build of the pinned source,
which beats SageAttention 1 from PyPI, which beats nothing), its label and its plan:

| route | rank | its entries' `kind` | decided by |
|---|---|---|---|
| `WHEEL` | 3 | `wheel` | the wheel's ranges and the manifest's sha256 |
| `SOURCE` | 2 | `source` | `plan_source` and the build host |
| `SAGE1` | 1 | `fallback` | `sageattention_fallback` |
| `NONE` | 0 | (none) | |

[`plan_sageattention`][installer.plan.sage_routes.plan_sageattention] runs the routes in
rank order; a route sees which modules the better routes took, so every route not taken
carries its reason. When a build is planned, SageAttention 1 stands by: the step installs
it only if that build fails. [`module_routes`][installer.plan.sage_routes.module_routes]
reads the route each module got back from a plan (the toolkit hook compares two plans
with it, the step's details show it with
[`route_lines`][installer.plan.sage_routes.route_lines]): one vocabulary for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.version import Version

from installer.core.config import (
    Dependencies,
    SageAttentionFallback,
    SageAttentionSource,
    SageAttentionWheel,
    ToolsManifest,
)
from installer.core.facts import BuildHost, GpuReport
from installer.plan.compat import first_outside, select_sageattention_wheels
from installer.plan.optimization_records import PlannedOptimization, PlannedWheel
from installer.plan.sage_sources import plan_source


@dataclass(frozen=True)
class SageContext:
    """What every route plans from: the configuration, the GPUs, torch, Python, the build host."""

    deps: Dependencies
    manifest: ToolsManifest
    platform: str
    gpu: GpuReport
    torch_version: Version | str
    torch_cuda: str | None
    python_version: Version | str
    build_host: BuildHost | None = None
    allow_unverified: bool = False


@dataclass
class Taken:
    """The modules the better routes took so far, and by which entry."""

    by_wheel: dict[str, str] = field(default_factory=dict)
    by_build: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """One way of getting a SageAttention module; the strategies below fill in its plan.

    Attributes:
        kind: The `kind` of the entries it plans (`wheel`, `source`, `fallback`); `none` for
            the route of no entry.
        rank: Higher is better; a module takes the best route that installs.
        label: The route in a sentence ("a prebuilt wheel").
        title: The route in the step's headline ("prebuilt wheel").
    """

    kind: str
    rank: int
    label: str
    title: str

    def entries(self, context: SageContext) -> list[PlannedOptimization]:
        """Every entry of this route in the configuration, not yet decided (skipped, no reason).

        Args:
            context: What the routes plan from.
        """
        return []

    def plan(self, context: SageContext, taken: Taken) -> list[PlannedOptimization]:
        """Decide each entry of this route, after the better routes took what they took.

        Args:
            context: What the routes plan from.
            taken: The modules taken so far; this route adds those it takes.
        """
        return []

    def skipped(self, context: SageContext, reason: str) -> list[PlannedOptimization]:
        """Every entry of this route, skipped for ``reason`` (no NVIDIA GPU, no Triton...).

        Args:
            context: What the routes plan from.
            reason: Why SageAttention cannot work here at all.
        """
        return [entry.model_copy(update={"reason": reason}) for entry in self.entries(context)]


def _wheel_entry(wheel: SageAttentionWheel, manifest: ToolsManifest) -> PlannedOptimization:
    entry = manifest.files.get(wheel.filename)
    return PlannedOptimization(
        name=wheel.name,
        kind="wheel",
        action="skip",
        reason="",
        import_name=wheel.import_name,
        requirement=wheel.filename,
        wheel=PlannedWheel(
            filename=wheel.filename,
            url=wheel.url,
            sha256=entry.sha256 if entry else None,
            size=entry.size if entry else None,
        ),
    )


def _source_entry(source: SageAttentionSource) -> PlannedOptimization:
    return PlannedOptimization(
        name=f"{source.name} (source)",
        kind="source",
        action="skip",
        reason="",
        distribution=source.distribution,
        requirement=f"{source.distribution} @ git+{source.url}@{source.commit}",
        import_name=source.import_name,
        builds_from_source=True,
    )


def _fallback_entry(fallback: SageAttentionFallback) -> PlannedOptimization:
    return PlannedOptimization(
        name=f"{fallback.spec} (fallback)",
        kind="fallback",
        action="skip",
        reason="",
        requirement=fallback.spec,
        import_name=fallback.import_name,
        builds_from_source=fallback.build == "source",
    )


@dataclass(frozen=True)
class WheelRoute(Route):
    """A prebuilt wheel that fits the GPUs, torch, CUDA, Python and platform, checksum known."""

    def entries(self, context: SageContext) -> list[PlannedOptimization]:
        """Every configured wheel (`pip_packages.sageattention_wheels`).

        Args:
            context: What the routes plan from.
        """
        wheels = context.deps.pip_packages.sageattention_wheels
        return [_wheel_entry(wheel, context.manifest) for wheel in wheels]

    def plan(self, context: SageContext, taken: Taken) -> list[PlannedOptimization]:
        """Install every fitting wheel with a sha256 in the manifest (or `--allow-unverified`).

        Args:
            context: What the routes plan from.
            taken: Gets the modules a wheel installs.
        """
        chosen, rejected = select_sageattention_wheels(
            context.deps.pip_packages.sageattention_wheels,
            context.gpu.ccs,
            context.torch_version,
            context.torch_cuda,
            context.python_version,
            context.platform,
        )
        planned: list[PlannedOptimization] = []
        for choice in chosen:
            entry = _wheel_entry(choice.value, context.manifest)
            verified = entry.wheel is not None and entry.wheel.sha256 is not None
            if not verified and not context.allow_unverified:
                planned.append(
                    entry.model_copy(
                        update={
                            "reason": f"refused: {choice.value.filename} has no sha256 in "
                            "tools_manifest.json (pass --allow-unverified to accept it)"
                        }
                    )
                )
                continue
            note = "" if verified else " (UNVERIFIED: no checksum, --allow-unverified)"
            planned.append(
                entry.model_copy(update={"action": "install", "reason": choice.reason + note})
            )
            taken.by_wheel.setdefault(choice.value.import_name, choice.value.name)
        planned.extend(
            _wheel_entry(choice.value, context.manifest).model_copy(
                update={"reason": choice.reason}
            )
            for choice in rejected
        )
        return planned


@dataclass(frozen=True)
class SourceRoute(Route):
    """A build of the pinned source, where no wheel fits and this machine can build it."""

    def entries(self, context: SageContext) -> list[PlannedOptimization]:
        """Every configured source (`pip_packages.sageattention_sources`).

        Args:
            context: What the routes plan from.
        """
        return [_source_entry(s) for s in context.deps.pip_packages.sageattention_sources]

    def plan(self, context: SageContext, taken: Taken) -> list[PlannedOptimization]:
        """Build each source whose module no wheel took, when the build host can.

        Args:
            context: What the routes plan from.
            taken: Gets the modules a build installs.
        """
        planned: list[PlannedOptimization] = []
        for source in context.deps.pip_packages.sageattention_sources:
            entry = _source_entry(source)
            if source.import_name in taken.by_wheel:
                wheel = taken.by_wheel[source.import_name]
                planned.append(
                    entry.model_copy(update={"reason": f"a prebuilt wheel fits ({wheel})"})
                )
                continue
            build = plan_source(
                source,
                platform=context.platform,
                gpu=context.gpu,
                torch_version=context.torch_version,
                torch_cuda=context.torch_cuda,
                python_version=context.python_version,
                host=context.build_host,
            )
            if build.value is None:
                planned.append(
                    entry.model_copy(
                        update={"reason": f"no prebuilt wheel fits; not built here: {build.reason}"}
                    )
                )
                continue
            planned.append(
                entry.model_copy(
                    update={
                        "action": "install",
                        "source": build.value,
                        "reason": f"no prebuilt wheel fits; {build.reason}",
                    }
                )
            )
            taken.by_build[source.import_name] = entry.name
        return planned


@dataclass(frozen=True)
class Sage1Route(Route):
    """SageAttention 1 from PyPI (`sageattention_fallback`): standing by, or the last resort."""

    def entries(self, context: SageContext) -> list[PlannedOptimization]:
        """The fallback, when one is configured.

        Args:
            context: What the routes plan from.
        """
        fallback = context.deps.pip_packages.sageattention_fallback
        return [] if fallback is None else [_fallback_entry(fallback)]

    def plan(self, context: SageContext, taken: Taken) -> list[PlannedOptimization]:
        """Skip it where a wheel fits, stand it by where a build is planned, else install it.

        Args:
            context: What the routes plan from.
            taken: The modules the wheels and builds took.
        """
        fallback = context.deps.pip_packages.sageattention_fallback
        if fallback is None:
            return []
        return [_plan_fallback(fallback, context.gpu, taken, context.build_host)]


def _plan_fallback(
    fallback: SageAttentionFallback, gpu: GpuReport, taken: Taken, build_host: BuildHost | None
) -> PlannedOptimization:
    entry = _fallback_entry(fallback)
    outside = first_outside(fallback.cc, gpu.ccs) if fallback.cc is not None else None
    if fallback.import_name in taken.by_wheel:
        return entry.model_copy(update={"reason": "a prebuilt SageAttention wheel fits"})
    if outside is not None:
        return entry.model_copy(
            update={"reason": f"supports compute capability {fallback.cc}, GPU is {outside}"}
        )
    tools = (
        (build_host.compiler.ok, build_host.nvcc.ok) if build_host is not None else (False, False)
    )
    if fallback.build == "source" and not all(tools):
        missing = [
            name
            for name, ok in zip(("a C++ compiler", "the CUDA toolkit (nvcc)"), tools, strict=True)
            if not ok
        ]
        return entry.model_copy(
            update={
                "reason": f"no prebuilt wheel fits and building it needs {' and '.join(missing)}"
            }
        )
    if fallback.import_name in taken.by_build:
        name = taken.by_build[fallback.import_name]
        return entry.model_copy(
            update={
                "fallback_for": name,
                "reason": f"stands by: installed only if the {name} build fails",
            }
        )
    how = (
        "will COMPILE from source (--no-build-isolation)"
        if fallback.build == "source"
        else "a prebuilt wheel from the index"
    )
    options = ["--no-build-isolation"] if fallback.build == "source" else []
    text = f"{fallback.description} ({how})" if fallback.description else how
    return entry.model_copy(
        update={
            "action": "install",
            "install_options": options,
            "reason": f"no prebuilt SageAttention 2/3 wheel fits and none is built here; {text}",
        }
    )


WHEEL = WheelRoute("wheel", 3, "a prebuilt wheel", "prebuilt wheel")
SOURCE = SourceRoute("source", 2, "a build from source", "build from source")
SAGE1 = Sage1Route("fallback", 1, "SageAttention 1", "fallback")
NONE = Route("none", 0, "nothing", "none")
ROUTES: tuple[Route, ...] = (WHEEL, SOURCE, SAGE1)
"""The routes with entries, best first: the order they are planned and installed in."""
_BY_KIND = {route.kind: route for route in ROUTES}


def plan_sageattention(context: SageContext, gate_reason: str | None) -> list[PlannedOptimization]:
    """Plan every SageAttention entry, route by route, best first; each carries its reason.

    Args:
        context: What the routes plan from.
        gate_reason: Why SageAttention cannot work here at all (no NVIDIA GPU, a CPU torch,
            Triton cannot run); None when it may.

    Returns:
        The entries of every route, in install order.
    """
    if gate_reason is not None:
        return [entry for route in ROUTES for entry in route.skipped(context, gate_reason)]
    taken = Taken()
    return [entry for route in ROUTES for entry in route.plan(context, taken)]


def route_of(entry: PlannedOptimization) -> Route | None:
    """Return the route an entry of step 10 belongs to (None for an index package).

    Args:
        entry: One entry of step 10's plan.
    """
    return _BY_KIND.get(entry.kind)


def module_routes(planned: list[PlannedOptimization]) -> dict[str, Route]:
    """Return the best route that installs, per SageAttention module ([`NONE`] where none does).

    Args:
        planned: Step 10's entries.

    Returns:
        Module (`sageattention`, `sageattn3`) → its route, in the order the modules appear.
    """
    routes: dict[str, Route] = {}
    for entry in planned:
        route = route_of(entry)
        if route is None or entry.import_name is None:
            continue
        got = route if entry.action == "install" else NONE
        best = routes.get(entry.import_name, NONE)
        routes[entry.import_name] = got if got.rank > best.rank else best
    return routes


def route_lines(planned: list[PlannedOptimization]) -> list[str]:
    """One headline per SageAttention module: the route taken (the step's details follow).

    Args:
        planned: Step 10's entries.
    """
    modules: dict[str, list[PlannedOptimization]] = {}
    for entry in planned:
        if route_of(entry) is not None and entry.import_name:
            modules.setdefault(entry.import_name, []).append(entry)
    lines = []
    for module, entries in modules.items():
        taken = next((e for e in entries if e.action == "install"), None)
        route = None if taken is None else route_of(taken)
        if taken is None or route is None:
            lines.append(f"SageAttention route for `{module}`: none (every route's reason below)")
            continue
        headline = f"{route.title} {taken.name}"
        if taken.source is not None:
            headline += f", {taken.source.estimate}"
            standby = next((e for e in entries if e.fallback_for == taken.name), None)
            if standby is not None:
                headline += f"; if the build fails: {standby.name}"
        lines.append(f"SageAttention route for `{module}`: {headline}")
    return lines
