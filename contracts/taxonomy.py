"""The near-miss taxonomy (NIDB's four classes), and how a COCO detector's classes map onto it. One place."""
from __future__ import annotations

CLASSES = ("bicycle", "pedestrian", "vehicle", "background")
ROAD_USERS = CLASSES[:-1]            # the other party of a near-miss; background is "none"

# Motorcycles count as vehicles: they share the road and speeds of cars, and the real accident
# clips (DAD) label motorbike and scooter parties as vehicles. A person riding a bicycle or a
# motorcycle is its rider (pipeline/objects.py), so RIDDEN says which class a rider takes.
COCO_TO_CLASS = {"person": "pedestrian", "bicycle": "bicycle", "car": "vehicle", "motorcycle": "vehicle",
                 "motorbike": "vehicle", "bus": "vehicle", "truck": "vehicle"}
RIDDEN = {"bicycle": "bicycle", "motorcycle": "vehicle", "motorbike": "vehicle"}
