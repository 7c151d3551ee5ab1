"""The attention rules: the calibration's records and every decision made from them (pure).

[`records`][installer.attention.rules.records] (the calibration file's models, what it was
measured on, the backends' labels), [`tables`][installer.attention.rules.tables] (timings
into route tables, staleness, the tables in words) and
[`routing`][installer.attention.rules.routing] (whether a calibration can be used now, the
routing table made from it).
May import: [`installer.attention.shim.routes`][installer.attention.shim.routes] (the
routes schema), [`installer.core`][installer.core], the standard library and pydantic;
nothing effectful (no edges, subprocess, network or file system helpers: an import-linter
contract, like the planner's).
"""
