# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see galaxy.yml)
"""The options every kvmbox.host module shares (module_utils/kvmbox.py's COMMON_ARGS)."""

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
