"""Every head module, found and imported once so that each registers itself; then ask the registry.

A head is one module in models/ with a class under `@register_head(...)`: head_modules() finds it by
that decorator in its source, so adding a head touches no list. The registry orders heads so that a
head that combines others (fusion) comes after them."""
from __future__ import annotations

import importlib

from models.head_registry import (HeadInfo, default_report_head, get_head, head_from_payload,  # noqa: F401
                                  head_modules, list_heads)

for _module in head_modules():
    importlib.import_module(_module)
