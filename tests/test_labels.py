import pytest

from pipeline.labels import LabelEntry, LabelsError, check_event_within, read_labels


def _write(tmp_path, body):
    p = tmp_path / "labels.csv"
    p.write_text("path,class,event_start_s,event_end_s\n" + body)
    return p


def test_valid_labels_parse(tmp_path):
    entries = read_labels(_write(tmp_path, "a.mp4,bicycle,1.0,2.5\nb.mp4,Background,,\n"))
    assert [(e.path, e.cls, e.event_start_s, e.event_end_s, e.row) for e in entries] == [
        ("a.mp4", "bicycle", 1.0, 2.5, 2), ("b.mp4", "background", None, None, 3)]


@pytest.mark.parametrize("row, message", [
    ("a.mp4,truck,1,2", "line 2 (a.mp4): unknown class 'truck'"),
    ("a.mp4,vehicle,3,2", "line 2 (a.mp4): event ends (2s) before it starts (3s)"),
    ("a.mp4,vehicle,abc,2", "line 2 (a.mp4): event_start_s 'abc' is not a number"),
    ("a.mp4,vehicle,-1,2", "must be a time in seconds >= 0"),
    ("a.mp4,vehicle,1,", "give both event_start_s and event_end_s"),
    ("a.mp4,background,1,2", "a background clip has no near-miss event"),
    (",vehicle,1,2", "line 2: the path column is empty"),
])
def test_bad_rows_are_named(tmp_path, row, message):
    with pytest.raises(LabelsError) as exc:
        read_labels(_write(tmp_path, "ok.mp4,pedestrian,0.5,1\n" * 0 + row + "\n"))
    assert message in str(exc.value)


def test_every_bad_row_is_reported(tmp_path):
    with pytest.raises(LabelsError) as exc:
        read_labels(_write(tmp_path, "a.mp4,car,1,2\nb.mp4,vehicle,1,2\nc.mp4,vehicle,5,1\na.mp4,vehicle,1,2\n"))
    text = str(exc.value)
    assert "3 bad row(s)" in text and "line 2" in text and "line 4" in text and "already labelled on line 2" in text


def test_missing_columns(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("name,label\na.mp4,vehicle\n")
    with pytest.raises(LabelsError, match="not a labels CSV"):
        read_labels(p)


def test_event_past_the_end_of_the_clip():
    e = LabelEntry(7, "a.mp4", "vehicle", 4.0, 9.0)
    check_event_within(e, 9.02, "labels.csv")
    with pytest.raises(LabelsError, match=r"labels.csv line 7 \(a.mp4\): event ends at 9s, past the clip's end \(6.00s\)"):
        check_event_within(e, 6.0, "labels.csv")


def test_optional_peak_time_is_read_and_checked(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("path,class,event_start_s,event_end_s,event_peak_s\na.mp4,vehicle,1,3,2.5\nb.mp4,background,,,\n")
    assert [e.event_peak_s for e in read_labels(p)] == [2.5, None]
    p.write_text("path,class,event_start_s,event_end_s,event_peak_s\na.mp4,vehicle,1,3,4\n")
    with pytest.raises(LabelsError, match="line 2 .*event_peak_s .4s. must lie within the event"):
        read_labels(p)


def test_labels_match_clips_by_path_or_by_unambiguous_file_name(tmp_path):
    from pipeline.labels import LabelEntry, match_labels
    labels = tmp_path / "labels.csv"
    index = [(str(tmp_path / "a.mp4"), "ida", "ok"), (str(tmp_path / "x" / "b.mp4"), "idb", "ok"),
             (str(tmp_path / "y" / "b.mp4"), "idb2", "ok"), (str(tmp_path / "bad.mp4"), "idc", "failed")]
    entries = [LabelEntry(i, p, "vehicle", None, None) for i, p in enumerate(
        ["a.mp4", "x/b.mp4", "b.mp4", "bad.mp4", "missing.mp4"], start=2)]
    matched, errors = match_labels(entries, labels, index, "labels.csv")
    assert [(e.path, cid) for e, cid in matched] == [("a.mp4", "ida"), ("x/b.mp4", "idb")]
    assert len(errors) == 3
    assert "matches 2 different clips" in errors[0] and "failed to ingest" in errors[1] and "no ingested clip" in errors[2]
