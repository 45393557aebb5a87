"""What several test modules share: servers, the gateway under test, expected answers, clocks.

Fixtures live in tests/conftest.py and reach tests through pytest; plain classes and
functions live here and are imported. No test module imports another test module.
"""
