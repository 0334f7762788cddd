# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see LICENSE)
"""The options every kvmbox.host module shares (module_utils/kvmbox.py's COMMON_ARGS), and the
attributes they share (each module says its own diff_mode support)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  binary:
    description: The kvmbox binary (a name looked up in PATH, or a path).
    type: str
    default: kvmbox
  root:
    description: The system under this directory (C(--root)).
    type: path
  target:
    description: Persistent configuration goes to this installed system (C(--target)).
    type: path
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Check mode is kvmbox's own plan (C(--plan), C(--dry-run)), from the code the run uses;
        C(changed), C(changes) and C(reboot_required) are what the run then reports.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
"""
