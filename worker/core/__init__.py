"""The pure core: fold, snapshot, triggers, window rules, batch planning.

Standard library and `schemas` only: no I/O, no clock (tests/unit/test_import_rules.py).
"""
