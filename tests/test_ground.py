"""Road users placed on a flat road (models/cues/ground.py), from synthetic boxes of a known camera."""
import numpy as np

from models.cues.ground import GroundSpec, Horizon, fit_horizon, fused_ttc, place

F = 1.1            # focal length, in frame heights
HORIZON = 0.42     # row of the horizon
CAM_H = 1.3        # camera height (m)
CAR_H, CAR_W = 1.5, 1.8
ASPECT = 16 / 9


def car_box(z: float, x: float) -> np.ndarray:
    """The box of a car whose centre line is x metres right of the camera's axis, z metres ahead."""
    bottom = HORIZON + F * CAM_H / z
    top = bottom - F * CAR_H / z
    cx, half = 0.5 + F * x / z / ASPECT, F * CAR_W / 2 / z / ASPECT
    return np.array([cx - half, top, cx + half, bottom])


def test_the_horizon_ground_distance_and_lateral_offset_of_a_known_camera():
    rng = np.random.default_rng(0)
    zs, xs = rng.uniform(8, 60, 80), rng.uniform(-6, 6, 80)
    boxes = np.stack([car_box(z, x) for z, x in zip(zs, xs)])
    boxes += rng.normal(0, 0.002, boxes.shape)                     # a pixel or so of detector jitter at 720 px
    boxes[:5, 3] += 0.08                                           # a few bad boxes the robust fit must ignore
    h = fit_horizon(boxes, np.array(["car"] * len(boxes)))
    assert abs(h.y - HORIZON) < 0.01 and abs(h.ratio - CAM_H / CAR_H) < 0.1 and h.boxes > 60
    clean = np.stack([car_box(z, x) for z, x in zip(zs, xs)])
    g = place(np.arange(80) * 0.1, clean, Horizon(HORIZON, CAM_H / CAR_H, 80), ASPECT)
    metres = g.distance * F * CAM_H                                # relative distance times the scale
    assert np.allclose(metres, zs, rtol=1e-6)
    assert np.allclose(g.lateral * CAM_H, xs, atol=1e-6)           # camera heights -> metres
    assert np.allclose(g.half_width * CAM_H, CAR_W / 2, rtol=1e-6)
    in_path = g.in_path(GroundSpec(path_half_width=1.6 / CAM_H))   # a 3.2 m wide path
    assert (in_path == (np.abs(xs) - CAR_W / 2 <= 1.6 + 1e-9)).all()


def test_too_few_cars_fall_back_to_the_default_horizon():
    boxes = np.stack([car_box(z, 0.0) for z in (10, 20, 30)])
    assert fit_horizon(boxes, np.array(["car"] * 3)) == Horizon(GroundSpec().default_horizon, 1.0, 0)
    people = np.stack([car_box(z, 1.0) for z in np.linspace(8, 40, 30)])
    assert fit_horizon(people, np.array(["person"] * 30)).boxes == 0


def test_an_approaching_car_has_the_true_ground_ttc_and_a_car_cut_by_the_frame_none():
    t = np.arange(0, 3, 0.1)
    z = 30 - 8.0 * t                                               # 8 m/s closing from 30 m
    boxes = np.stack([car_box(zi, 0.5) for zi in z])
    g = place(t, boxes, Horizon(HORIZON, CAM_H / CAR_H, 50), ASPECT)
    ok = np.isfinite(g.rate)
    assert ok.sum() > 15
    # a trailing 1 s line fit of ln(1/Z) gives the rate at its window's centre, half a second back (as the
    # box-scale fit does)
    centre = 8.0 / (30 - 8.0 * np.clip(t - 0.5, 0, None))
    assert np.allclose(g.rate[ok], centre[ok], rtol=0.08)
    cut = boxes.copy()
    cut[:, 3] = 1.0                                                # the bottom cut by the frame
    assert np.isnan(place(t, cut, Horizon(HORIZON, 1.0, 50), ASPECT).rate).all()


def test_two_ttcs_must_agree_or_one_must_be_tight():
    spec = GroundSpec(z=2.0, tight=0.35)
    # agreeing: the inverse-variance mean is tighter than either alone, so the TTC is shorter than each's
    ttc, which = fused_ttc(np.array([0.8]), np.array([0.3]), np.array([0.9]), np.array([0.3]), spec)
    alone = 1 / (0.8 - 2 * 0.3)
    assert which[0] == 3 and ttc[0] < alone
    # disagreeing and both loose (jitter on a steady car): no conflict
    ttc, which = fused_ttc(np.array([1.2]), np.array([0.5]), np.array([-0.9]), np.array([0.4]), spec)
    assert which[0] == 0 and np.isinf(ttc[0])
    # disagreeing, the ground one tight: it stands alone
    ttc, which = fused_ttc(np.array([1.2]), np.array([0.5]), np.array([-0.9]), np.array([0.1]), spec)
    assert which[0] == 2 and np.isinf(ttc[0])                     # tight and receding: surely no conflict
    ttc, which = fused_ttc(np.array([0.0]), np.array([0.05]), np.array([2.0]), np.array([0.2]), spec)
    assert which[0] == 2 and abs(ttc[0] - 1 / (2.0 - 0.4)) < 1e-9
    # no ground estimate (the box's bottom cut by the frame): the box-scale TTC as before
    ttc, which = fused_ttc(np.array([1.0]), np.array([0.2]), np.array([np.nan]), np.array([np.nan]), spec)
    assert which[0] == 1 and abs(ttc[0] - 1 / 0.6) < 1e-9
