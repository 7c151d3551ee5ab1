"""OCI images of a planned install: `comfy-install image context`, `image build`, `image kube`.

What lives here: [`containerfile`][installer.image.containerfile] turns a target
(GPU, driver, Python) and the summary of the install plan made for it into the
Containerfile text and the list of build context files; it is pure (no I/O), so the
same inputs give the same bytes. [`context`][installer.image.context] writes that
list into a folder atomically (sorted, fixed modes and times) and gathers the
tool's pinned requirements; [`own_wheel`][installer.image.own_wheel] finds the tool's own
wheel (built from its source, or repacked from its installed files);
[`engine`][installer.image.engine] finds
`docker buildx`, `podman` or `buildah` and runs the build, streaming its output;
[`runtime_files`][installer.image.runtime_files] writes what the image reads when it
runs (`extra_model_paths.yaml`, the start script that keeps the attention calibration on
a volume);
[`kube_manifests`][installer.image.kube_manifests] turns the image into Kubernetes
manifests (pure) and [`kube`][installer.image.kube] writes them beside the context
(`image kube`: the verb's job lives here, beside the image constants it needs, as
`image`'s other verbs do);
[`prepare`][installer.image.prepare] plans the install for the target with
[`installer.commands.planning`][installer.commands.planning] and ties the rest together.
May import: [`installer.commands`][installer.commands] and every layer below it. Only
the CLI ([`installer.cli.image`][installer.cli.image]) imports it.
"""
