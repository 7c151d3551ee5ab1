"""OCI images of a planned install: `comfy-install image context` and `image build`.

`containerfile` turns a target (GPU, driver, Python) and the summary of the
install plan made for it into the Containerfile text and the list of build
context files; it is pure (no I/O) so the same inputs give the same bytes.
`context` writes that list into a folder atomically (sorted, fixed modes and
times); `engine` finds `docker buildx`, `podman` or `buildah` and runs the
build, streaming its output. This package may import from the rest of
`installer` only its errors, logger, version and plan (for the fingerprint);
nothing outside it imports it except the CLI glue in `installer.cli_image`.
"""
