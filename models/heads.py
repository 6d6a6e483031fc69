"""Every head module, imported once so that each registers itself; then ask the registry.

Import order is registration order, which is the order heads are trained in: fusion combines
the newest recognition and motion3d versions, so it comes after them."""
from models import temporal, motion3d, fusion, zeroshot, ttc, conflict  # noqa: F401,E401  (registration)
from models.head_registry import HeadInfo, get_head, head_from_payload, list_heads  # noqa: F401
