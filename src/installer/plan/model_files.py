"""What a model download does with a file already at its place: never lose a user's file.

[`decide_existing_model`][installer.plan.model_files.decide_existing_model] is the rule,
[`ModelFilePolicy`][installer.plan.model_files.ModelFilePolicy] hands it to the downloader
(which asks it before any transfer, then again with the verified download's sha256 before
that takes the final name). Pure: it decides from the manifest entry and the two hashes; the
renaming and the transfers are done by [`installer.edges.download`][installer.edges.download].

| file there | entry | `--replace` | what happens |
|---|---|---|---|
| the entry's sha256 | sha256 | any | nothing: it is the right file |
| another sha256 | sha256 | any | download, verify, move the old file aside, put the new one in |
| another size | size, no sha256 | no | conflict before any transfer: the file stays |
| any | no sha256 | any | download to compare (nothing else tells them apart) |
| the download's bytes | no sha256 | any | nothing: the download is dropped |
| other bytes | no sha256 | no | conflict: the file stays, the download is dropped |
| other bytes | no sha256 | yes | move the old file aside, put the new one in |

Moved aside means renamed in its folder to `NAME.replaced-YYYYmmddTHHMMSS.EXT` (with the
extension kept, so ComfyUI still lists it); nothing is ever deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from installer.core.downloads import ASIDE_MARK, DownloadRequest, ExistingDecision, FoundFile


def conflict_hint(replace_how: str) -> str:
    """Return what a user can do about a name conflict.

    Args:
        replace_how: How to ask for the move aside in the command at hand, e.g.
            `pass --replace`.

    Returns:
        The hint: a sha256 in the manifest, another `filename`, or the move aside.
    """
    return (
        "Your file was kept. Add the entry's sha256 to the manifest (a file that does not match "
        f'it is then moved aside), give the entry another "filename", or {replace_how} to move '
        f"your file aside as NAME.{ASIDE_MARK}-<date>.EXT (renamed, never deleted)."
    )


def decide_existing_model(
    request: DownloadRequest,
    found: FoundFile,
    downloaded: str | None,
    *,
    replace: bool = False,
    replace_how: str = "pass --replace",
) -> ExistingDecision:
    """Decide what a model download does with a file already at its place (see the table above).

    Args:
        request: The download (its sha256 and size come from the manifest entry).
        found: The file at the download's final place, with its sha256 and size.
        downloaded: None before any transfer; the verified download's sha256 when it
            is about to take the final name.
        replace: `--replace` was given: a file that differs from an entry without a
            sha256 is moved aside instead of stopping the download.
        replace_how: How the user asks for ``replace`` in this command (for the hint).

    Returns:
        `keep`, `fetch` or `conflict` before a transfer; `keep`, `move-aside` or
        `conflict` with the download's sha256. Never `overwrite`.
    """
    expected = request.sha256.strip().lower() if request.sha256 else None
    name = found.path.name
    if downloaded is None:
        if expected is not None:
            if found.sha256 == expected and request.size in (None, found.size):
                return ExistingDecision("keep", f"{name} already present, checksum ok")
            return ExistingDecision(
                "fetch",
                f"{name} exists but its sha256 is {found.sha256}, not the manifest's {expected}; "
                "it will be moved aside once the right file is downloaded",
            )
        if request.size is not None and request.size != found.size and not replace:
            return ExistingDecision(
                "conflict",
                f"{found.path} already exists with {found.size} bytes, but the manifest's file "
                f"has {request.size} bytes, and no sha256 says which one is right; nothing was "
                "downloaded over it.",
                conflict_hint(replace_how),
            )
        return ExistingDecision(
            "fetch",
            f"{name} exists and the manifest gives no sha256: downloading to compare",
        )
    if downloaded == found.sha256:
        return ExistingDecision(
            "keep", f"{name} already present, the same file as the download (no sha256 given)"
        )
    if expected is not None or replace:
        why = "does not match the manifest's sha256" if expected else "differs (--replace)"
        return ExistingDecision("move-aside", f"the {name} that was there {why}")
    return ExistingDecision(
        "conflict",
        f"{found.path} already exists and is not the file at the manifest's URL "
        f"(sha256 {found.sha256} on disk, {downloaded} downloaded), and no sha256 in the manifest "
        "says which one is right; nothing was downloaded over it.",
        conflict_hint(replace_how),
    )


@dataclass(frozen=True)
class ModelFilePolicy:
    """The rule of `decide_existing_model`, in the shape the downloader asks it.

    An [`ExistingFilePolicy`][installer.core.downloads.ExistingFilePolicy].

    Attributes:
        replace: `--replace` was given.
        replace_how: How the user asks for ``replace`` in this command (for the hint).
    """

    replace: bool = False
    replace_how: str = "pass --replace"

    def __call__(
        self, request: DownloadRequest, found: FoundFile, downloaded: str | None
    ) -> ExistingDecision:
        """Return what to do with ``found``; see `decide_existing_model`.

        Args:
            request: The download.
            found: The file at its final place.
            downloaded: None before a transfer, else the verified download's sha256.
        """
        return decide_existing_model(
            request, found, downloaded, replace=self.replace, replace_how=self.replace_how
        )
