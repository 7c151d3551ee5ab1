"""`comfy-install pins check`: how old each pin is, and what a bump would touch.

A maintainer's tool. It reads the pins of `dependencies.json` (the ComfyUI tag and
commit, the torch trio, the release of each step-10 package for the pinned torch, the
SageAttention fallback and source commit), asks each pin's source what it offers now
(the package index's JSON API, `git ls-remote`) through
[`installer.edges.pin_sources`][installer.edges.pin_sources], and says what is newer, how
old the pinned release is, and which other pins and files a bump would touch. It
changes nothing.

What lives here: [`specs`][installer.pins.specs] (the pins as data, pure),
[`compare`][installer.pins.compare] (findings from the pins and the sources' answers,
pure) and [`check`][installer.pins.check] (asks the sources, one thread each).
May import: the edges and [`installer.core`][installer.core]; never another feature,
the steps, the commands or the CLI.
"""
