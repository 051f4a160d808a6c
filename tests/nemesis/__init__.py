"""The nemesis (issue 16): a seeded random schedule of faults over hundreds of mixed sessions,
then the invariants. ``python -m tests.nemesis --help``; see docs/reliability.md."""
