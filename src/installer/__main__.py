"""Allow `python -m installer`."""

from installer.entry import main

main()
