"""The configuration files' schema: pydantic models with checks that name what is wrong.

Three files drive the installer, each described by a pydantic model here:

* `dependencies.json` ([`Dependencies`][installer.core.config.Dependencies]): what to
  install — the ComfyUI pin, the torch trio and its CUDA variants, custom
  nodes, the optimization packages of step 10 and the SageAttention wheels.
* `tools_manifest.json` ([`ToolsManifest`][installer.core.config.ToolsManifest]): the
  sha256 (and size) every downloaded artifact must have, keyed by file name.
* a model manifest ([`ModelManifest`][installer.core.config_files.ModelManifest]): model
  files to download into `ComfyUI/models/<kind>/`.

Reading them (the shipped files or `--config FILE` / `--tools-manifest FILE`) lives in
[`installer.core.config_files`][installer.core.config_files]. Unknown keys are errors, version specs
must be PEP 440, and a bad file raises
[`ConfigError`][installer.core.errors.ConfigError] naming the file, the JSON path of
the fault (`optimizations.packages[2].torch_constraints`) and what was
expected — never a pydantic traceback.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from installer.core.git_arguments import GitArgument
from installer.core.uv_options import IndexOptions as IndexOptions  # re-exported
from installer.core.uv_options import RetryOptions as RetryOptions  # re-exported

SCHEMA_VERSION = 1
PLATFORMS = ("linux", "windows")
Platform = Literal["linux", "windows"]


def _specifier(value: str) -> str:
    if any(not clause.strip() for clause in value.split(",")):
        raise ValueError(
            f"{value!r} is not a PEP 440 version specifier (an empty clause between commas)"
        )
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise ValueError(
            f"{value!r} is not a PEP 440 version specifier (like '>=2.9,<2.10')"
        ) from None
    return value


def _requirement(value: str) -> str:
    try:
        Requirement(value)
    except InvalidRequirement:
        raise ValueError(f"{value!r} is not a PEP 508 requirement (like 'torch==2.9.1')") from None
    return value


def _version(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a version (like '12.8')") from None
    return value


def _requires_term(value: str) -> str:
    if value in ("nvidia", "cpu", *PLATFORMS):
        return value
    match = re.fullmatch(r"(?:(linux|windows):)?cc\s*([<>=!~]=?.*)", value)
    if match:
        _specifier(match.group(2).strip())
        return value
    raise ValueError(
        f"{value!r} is not a requires term: use nvidia, cpu, linux, windows, cc>=X.Y "
        "or PLATFORM:cc>=X.Y (a compute capability needed on that platform only)"
    )


def _kernel_arch(value: str) -> str:
    if not re.fullmatch(r"[0-9]+\.[0-9]+a?", value):
        raise ValueError(
            f"{value!r} is not a compute capability a kernel is built for (like '8.0' or '9.0a')"
        )
    return value


def _commit(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{40}", value):
        raise ValueError(f"{value!r} is not a full 40-character git commit hash")
    return value


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("expected 64 lowercase hex characters (a sha256 digest)")
    return value


Specifier = Annotated[str, AfterValidator(_specifier)]
RequirementSpec = Annotated[str, AfterValidator(_requirement)]
VersionText = Annotated[str, AfterValidator(_version)]
RequiresTerm = Annotated[str, AfterValidator(_requires_term)]
KernelArch = Annotated[str, AfterValidator(_kernel_arch)]
CommitHash = Annotated[str, AfterValidator(_commit)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PythonConfig(_Strict):
    """Which Python the venv uses."""

    default: VersionText = Field(description="Python version for the venv, e.g. '3.12'.")
    supported: Specifier = Field(description="Python versions ComfyUI and the pins support.")

    @property
    def supported_specifier(self) -> SpecifierSet:
        """`supported` as a specifier set."""
        return SpecifierSet(self.supported, prereleases=True)

    def supported_contains(self, version: Version | str) -> bool:
        """Return True when ``version`` (e.g. 3.12 or 3.12.1) is in `supported`.

        Args:
            version: A Python version, `X.Y` or `X.Y.Z`.

        Raises:
            InvalidVersion: ``version`` is not a PEP 440 version (e.g. a path).
        """
        return self.supported_specifier.contains(Version(str(version)))


class ComfyUIConfig(_Strict):
    """The ComfyUI source to install, pinned to one commit."""

    url: GitArgument = Field(description="Git URL (or local path/bundle) of ComfyUI.")
    ref: GitArgument = Field(description="Tag or branch the commit belongs to, for humans.")
    commit: CommitHash = Field(description="The exact commit checked out and verified.")


def _all_platforms() -> list[Platform]:
    return ["linux", "windows"]


class TorchVariant(_Strict):
    """One build of torch (CUDA version or CPU) and where it is published."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9]+$")] = Field(
        description="Variant name, e.g. 'cu128' or 'cpu'."
    )
    index_url: NonEmptyStr = Field(description="Package index holding this build.")
    min_cuda_driver: VersionText | None = Field(
        default=None,
        description="Oldest CUDA version the NVIDIA driver must report; absent for CPU builds.",
    )
    cc: Specifier | None = Field(
        default=None, description="Compute capabilities the build has kernels for, e.g. '>=7.5'."
    )
    platforms: list[Platform] = Field(
        default_factory=_all_platforms,
        description="Operating systems it exists for.",
    )
    driver_versions: dict[Platform, VersionText] = Field(
        default_factory=dict,
        description="The oldest NVIDIA driver release that supports min_cuda_driver, per "
        "platform (NVIDIA's CUDA release notes, Table 3); named in messages that say which "
        "driver to install.",
    )

    @property
    def is_cuda(self) -> bool:
        """True for a CUDA build (one that needs an NVIDIA driver)."""
        return self.min_cuda_driver is not None


class TorchConfig(_Strict):
    """The torch trio and the builds it may come from."""

    packages: list[RequirementSpec] = Field(
        min_length=1, description="Pinned torch, torchvision and torchaudio requirements."
    )
    variants: list[TorchVariant] = Field(
        min_length=1, description="Builds in order of preference (newest CUDA first)."
    )
    default_index_builds: dict[Platform, Annotated[str, Field(pattern=r"^(cu[0-9]+|cpu)$")]] = (
        Field(
            default_factory=dict,
            description="The build the default index (PyPI) serves for this torch, per "
            "platform (used with --torch-index default).",
        )
    )

    @field_validator("packages")
    @classmethod
    def _torch_is_pinned(cls, packages: list[str]) -> list[str]:
        names = {Requirement(p).name.lower(): Requirement(p) for p in packages}
        torch = names.get("torch")
        if torch is None:
            raise ValueError("the list must contain a 'torch==X.Y.Z' requirement")
        pins = [s for s in torch.specifier if s.operator == "=="]
        if len(pins) != 1 or "*" in pins[0].version:
            raise ValueError("torch must be pinned exactly, like 'torch==2.9.1'")
        return packages

    @property
    def torch_version(self) -> Version:
        """The exact torch version the trio pins."""
        for package in self.packages:
            requirement = Requirement(package)
            if requirement.name.lower() == "torch":
                return Version(next(iter(requirement.specifier)).version)
        raise AssertionError("validated: torch is always pinned")


class CustomNode(_Strict):
    """A custom node repository cloned into `ComfyUI/custom_nodes/`."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] = Field(
        description="Folder name under custom_nodes/."
    )
    url: GitArgument = Field(description="Git URL of the node.")
    commit: CommitHash = Field(description="Pinned commit.")
    requirements: bool = Field(default=True, description="Install its requirements.txt.")


class TorchConstraint(_Strict):
    """Which release of a package goes with which torch."""

    torch: Specifier = Field(description="Torch versions this entry applies to.")
    spec: NonEmptyStr = Field(
        description="A requirement ('xformers==0.0.33.post2') or a bare specifier ('<3.6')."
    )

    @field_validator("spec")
    @classmethod
    def _spec_is_pep440(cls, value: str) -> str:
        if value[0] in "<>=!~":
            return _specifier(value)
        return _requirement(value)


class PypiBuild(_Strict):
    """What the package's build on the default index (PyPI) was compiled with."""

    cuda: VersionText = Field(
        description="The CUDA version it was built with, e.g. '12.8'. Its major must be the "
        "torch build's: a CUDA 12 build needs libcudart.so.12, which a cu130 torch lacks."
    )
    sass: list[KernelArch] = Field(
        default_factory=list,
        description="Compute capabilities it has compiled kernels (SASS) for, e.g. "
        "['7.5', '8.0', '9.0a']; other GPUs run its PTX, which the driver compiles and "
        "which needs a driver supporting `cuda`. Empty: not known.",
    )


class OptimizationPackage(_Strict):
    """A package of step 10, installed through uv with torch held."""

    name: NonEmptyStr = Field(description="Name shown in the plan.")
    requires: list[RequiresTerm] = Field(
        default_factory=list,
        description="Terms that must all hold: nvidia, linux, cc>=8.0, windows:cc>=8.0, ...",
    )
    requires_notes: dict[str, str] = Field(
        default_factory=dict,
        description="Why a `requires` term is there, by term; shown when it is not met.",
    )
    pypi_package: NonEmptyStr | dict[Platform, NonEmptyStr] = Field(
        description="Distribution name, or one per platform."
    )
    torch_constraints: list[TorchConstraint] = Field(
        default_factory=list, description="First entry matching the torch version wins."
    )
    install_options: list[str] = Field(
        default_factory=list, description="Extra `uv pip install` options, e.g. --no-deps."
    )
    retry_options: RetryOptions = Field(default_factory=RetryOptions)
    index: Literal["default", "torch"] = Field(
        default="default",
        description="'torch': also look on the torch variant's index (for CUDA builds).",
    )
    import_name: str | None = Field(default=None, description="Module verified by step 13.")
    required: bool = Field(default=False, description="Fail the install when this fails.")
    pypi_build: PypiBuild | None = Field(
        default=None,
        description="The CUDA version and kernels of its build on the default index; a torch "
        "of another CUDA major skips it unless `index: torch` takes it from the torch's index.",
    )
    jit_compiler: bool = Field(
        default=False,
        description="It compiles GPU kernels at run time with its own bundled ptxas (Triton). "
        "Skipped, with SageAttention, when torch runs on an older driver of its CUDA major "
        "(minor-version compatibility).",
    )
    description: str = ""

    @field_validator("requires_notes")
    @classmethod
    def _notes_name_terms(cls, notes: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        terms = info.data.get("requires", [])
        unknown = [term for term in notes if term not in terms]
        if unknown:
            raise ValueError(f"notes for terms that are not in requires: {', '.join(unknown)}")
        return notes

    def package_for(self, platform: str) -> str | None:
        """Return the distribution name for ``platform``, or None if not published there.

        Args:
            platform: The target OS, `linux` or `windows`.
        """
        if isinstance(self.pypi_package, str):
            return self.pypi_package
        return self.pypi_package.get(platform)  # type: ignore[call-overload, no-any-return]


class OptimizationsConfig(_Strict):
    """Step 10's list of accelerator packages."""

    packages: list[OptimizationPackage] = Field(default_factory=list)


class SageAttentionWheel(_Strict):
    """A prebuilt SageAttention wheel and the machines it fits."""

    name: NonEmptyStr = Field(description="e.g. 'sageattention2'.")
    cc: Specifier = Field(description="Compute capabilities its kernels support.")
    torch: Specifier = Field(description="Torch versions it was built against.")
    cuda: list[Annotated[str, Field(pattern=r"^cu[0-9]+$")]] = Field(
        min_length=1, description="Torch CUDA builds it works with, e.g. ['cu128', 'cu129']."
    )
    python: Specifier = Field(description="Python versions (cp39-abi3 wheels: '>=3.9').")
    platform: Platform
    url: Annotated[str, Field(pattern=r"^https?://")]
    import_name: str = Field(default="sageattention", description="Module it provides.")

    @field_validator("cuda", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _names_a_wheel_file(cls, value: str) -> str:
        from urllib.parse import unquote, urlsplit

        name = unquote(urlsplit(value).path.rsplit("/", 1)[-1])
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+!-]*\.whl", name) or ".." in name:
            raise ValueError(
                f"the URL must end in a plain wheel file name (like 'name-1.0-py3-none-any.whl'), "
                f"not {name!r}"
            )
        return value

    @property
    def filename(self) -> str:
        """The wheel's file name (last URL segment, URL-decoded)."""
        from urllib.parse import unquote, urlsplit

        return unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])


class SageAttentionFallback(_Strict):
    """What to install when no prebuilt SageAttention wheel fits."""

    spec: RequirementSpec = Field(
        description="Requirement to install, e.g. 'sageattention==1.0.6'."
    )
    build: Literal["wheel", "source"] = Field(
        description="'source' compiles (needs a C++ compiler and the CUDA toolkit)."
    )
    cc: Specifier | None = Field(default=None, description="GPUs it supports.")
    import_name: str = "sageattention"
    description: str = ""


def _pinned_commit(value: str) -> str:
    if re.fullmatch(r"[0-9a-f]{40}", value):
        return value
    if re.fullmatch(r"[0-9A-Fa-f]{40}", value):
        raise ValueError(f"{value!r}: write the commit hash in lowercase")
    if re.fullmatch(r"[0-9a-f]{4,39}", value):
        raise ValueError(
            f"{value!r} is an abbreviated hash; the full 40-character commit is required "
            "(it is what the checkout is verified against)"
        )
    raise ValueError(
        f"{value!r} is a moving ref (a branch or tag can point elsewhere tomorrow); pin the full "
        "40-character commit hash instead, and put the tag or branch in 'ref'"
    )


def _relative_folder(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "\\")) or ":" in value or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{value!r} must be a plain relative folder inside the repository")
    return value


PinnedCommit = Annotated[str, AfterValidator(_pinned_commit)]
CapabilityKey = Annotated[str, Field(pattern=r"^(default|[0-9]+\.[0-9]+)$")]
RelativeFolder = Annotated[str, AfterValidator(_relative_folder)]


class BuildTime(_Strict):
    """A measured build, from which the plan estimates the build time on other machines."""

    seconds: Annotated[float, Field(gt=0)] = Field(description="Wall time of the measured build.")
    cores: Annotated[int, Field(ge=1)] = Field(description="CPU cores of the machine it ran on.")
    archs: Annotated[int, Field(ge=1)] = Field(
        default=1, description="How many architectures that build compiled for."
    )
    measured: str = Field(default="", description="Where and how it was measured, for people.")


class SageAttentionSource(_Strict):
    """SageAttention pinned to a git commit, built on this machine when no prebuilt wheel fits."""

    name: NonEmptyStr = Field(description="Name shown in the plan, e.g. 'sageattention2'.")
    url: GitArgument = Field(description="Git URL (or local path / bundle) of the source.")
    ref: str = Field(default="", description="Tag or branch the commit belongs to, for humans.")
    commit: PinnedCommit = Field(
        description="The full commit checked out and verified; the integrity anchor of the build."
    )
    subdirectory: RelativeFolder | None = Field(
        default=None, description="Folder of the package inside the repository (SageAttention 3)."
    )
    distribution: NonEmptyStr = Field(description="Distribution name of the built wheel.")
    import_name: NonEmptyStr = Field(
        description="Module it provides; routes are chosen per module."
    )
    cc: Specifier = Field(description="Compute capabilities its kernels are dispatched for.")
    cc_note: str = Field(default="", description="Why the range is what it is, for the plan.")
    min_nvcc: dict[CapabilityKey, VersionText] = Field(
        description="Oldest nvcc per compute capability ('9.0': '12.3'), 'default' for the rest."
    )
    python: Specifier = Field(description="Python versions it builds and runs on.")
    torch: Specifier = Field(description="Torch versions it builds against.")
    platforms: list[Platform] = Field(default_factory=_all_platforms)
    arch_source: Literal["arch_list", "local_gpu"] = Field(
        default="arch_list",
        description="'arch_list': compiles for TORCH_CUDA_ARCH_LIST (set from the GPUs); "
        "'local_gpu': compiles only for the GPU it sees while building.",
    )
    build_requires: list[RequirementSpec] = Field(
        default_factory=list,
        description="Build requirements installed beside the venv's torch for the build "
        "(from its pyproject.toml at that commit, plus ninja).",
    )
    extensions_in_parallel: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None, description="How many extensions its setup.py builds at once (EXT_PARALLEL)."
    )
    memory_per_job_gib: Annotated[float, Field(gt=0)] = Field(
        default=3.0, description="Memory one compile job (one nvcc) may need, per architecture."
    )
    build_time: BuildTime | None = Field(default=None, description="A measured build.")
    fetches_during_build: list[str] = Field(
        default_factory=list,
        description="What its build downloads by itself (it then needs the network).",
    )
    description: str = ""

    def min_nvcc_for(self, cc: str) -> Version:
        """Return the oldest nvcc that can compile for compute capability ``cc``.

        Args:
            cc: A compute capability like `9.0`.
        """
        return Version(self.min_nvcc.get(cc, self.min_nvcc.get("default", "0")))


class PipPackages(_Strict):
    """Packages installed from files rather than resolved from an index."""

    sageattention_wheels: list[SageAttentionWheel] = Field(default_factory=list)
    sageattention_sources: list[SageAttentionSource] = Field(
        default_factory=list,
        description="Pinned sources built on this machine when no prebuilt wheel fits.",
    )
    sageattention_fallback: SageAttentionFallback | None = None

    @field_validator("sageattention_sources")
    @classmethod
    def _one_source_per_module(
        cls, sources: list[SageAttentionSource]
    ) -> list[SageAttentionSource]:
        seen: dict[str, str] = {}
        for source in sources:
            if source.import_name in seen:
                raise ValueError(
                    f"{source.name!r} and {seen[source.import_name]!r} both provide the module "
                    f"{source.import_name!r}; keep one source per module"
                )
            seen[source.import_name] = source.name
        return sources


class PreflightConfig(_Strict):
    """Checks made before anything is written."""

    min_free_gb: Annotated[float, Field(ge=0)] = Field(
        default=15.0, description="Free disk space DIR needs, in GiB."
    )


class ModelEntry(_Strict):
    """One model file to download."""

    url: Annotated[str, Field(pattern=r"^https?://")]
    kind: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")] = Field(
        description="Folder under ComfyUI/models/, e.g. checkpoints, loras, vae."
    )
    filename: str | None = Field(default=None, description="Name to save as (default: from URL).")
    sha256: Sha256 | None = None
    size: Annotated[int, Field(ge=0)] | None = None


class Dependencies(_Strict):
    """`dependencies.json`: everything the installer installs."""

    schema_version: Literal[1]
    python: PythonConfig
    comfyui: ComfyUIConfig
    torch: TorchConfig
    custom_nodes: list[CustomNode] = Field(default_factory=list)
    extra_requirements: list[RequirementSpec] = Field(
        default_factory=list,
        description="Packages ComfyUI imports but does not declare in requirements.txt.",
    )
    optimizations: OptimizationsConfig = Field(default_factory=OptimizationsConfig)
    pip_packages: PipPackages = Field(default_factory=PipPackages)
    preflight: PreflightConfig = Field(default_factory=PreflightConfig)
    models: list[ModelEntry] = Field(default_factory=list)


class ManifestFile(_Strict):
    """The checksum (and size) one artifact must have."""

    sha256: Sha256
    size: Annotated[int, Field(ge=0)] | None = None


class ToolsManifest(_Strict):
    """`tools_manifest.json`: checksums of downloadable artifacts, by file name."""

    schema_version: Literal[1]
    files: dict[str, ManifestFile] = Field(default_factory=dict)


class ModelManifest(_Strict):
    """A model manifest: files to download into `ComfyUI/models/<kind>/`."""

    schema_version: Literal[1]
    models: list[ModelEntry] = Field(default_factory=list)
