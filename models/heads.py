"""Every head module, imported once so that each registers itself; then ask the registry."""
from models import fusion, motion3d, temporal, ttc, zeroshot  # noqa: F401  (registration)
from models.head_registry import HeadInfo, get_head, head_from_payload, list_heads  # noqa: F401
