"""Shared by every test folder: pytest puts this folder on sys.path, so tests import `hosttools`
(`from hosttools import require_tool`) to name the Debian package of a missing host program."""
