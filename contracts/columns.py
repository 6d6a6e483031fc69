"""The per-frame motion columns of `motion_features`, in the order heads read them. One place: the
motion stage computes them, the catalog stores and checks them, the heads index them."""
from __future__ import annotations

EGO_COLUMNS = ("ego_speed", "ego_yaw", "ego_pitch", "residual_rms")   # MotionFeatures.ego's columns
MOTION_SCALARS = EGO_COLUMNS + ("looming",)                           # one number per frame
MOTION_GRIDS = ("fg_energy", "fg_area", "fg_expansion")               # one value per grid cell per frame
